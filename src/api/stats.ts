/** tfl.stats: bootstrap confidence intervals and the statistics the studies report. */
export * from '../analyses/stats.js';
