/** tfl.stats: seeded bootstrap confidence intervals, mean/std, and averaging results across seeds. */
export { bootstrapCI, withBootstrap, mean, meanStd, acrossSeeds } from '../analyses/stats.js';
export type { Statistic, BootstrapOptions, BootstrapCI, HeadBootstrapOptions, MeanStd } from '../analyses/stats.js';
