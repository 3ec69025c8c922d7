/** tfl.dormant: active-dormant heads (Guo et al.): BOS statistics, zero/BOS ablation tests, entropy dormancy. */
export * from '../analyses/dormant.js';
