/** tfl.dormant: active-dormant heads (Guo et al.): BOS statistics, zero / move-to-BOS intervention tests, the entropy detector. */
export { bosStats, dormantTest, entropyDetector, entropyDormancy } from '../analyses/dormant.js';
export type {
  BosStats,
  BosStatsOptions,
  DormantDomain,
  DormantTestOptions,
  DormantStatus,
  DormantRow,
  DormantTestResult,
  EntropyDetectorOptions,
  EntropyDetectorResult,
} from '../analyses/dormant.js';
