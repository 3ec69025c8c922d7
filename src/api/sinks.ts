/**
 * tfl.sinks: column means and entropies, attention sinks (Gu et al.) with residual / key / value norms,
 * hidden sinks (Yu et al., ACT detection), massive activations (Sun et al.) and VAR sink dimensions and
 * sink tokens (Kang et al.).
 */
export { columnMean, rowEntropies, columnEntropies, headEntropies } from '../analyses/attention-stats.js';
export type { ColumnMeanOptions, MaskInput, RunOptions } from '../analyses/attention-stats.js';
export {
  sinkRates,
  sinkScores,
  residualNorms,
  residualStateNames,
  keyValueNorms,
  hiddenSinks,
  hiddenSinksFromPatterns,
  hiddenSinkScores,
} from '../analyses/sinks.js';
export type {
  SinkRateOptions,
  SinkRateResult,
  SinkScoreOptions,
  ResidualStates,
  ResidualNormOptions,
  NormsResult,
  KeyValueNormsResult,
  HiddenSinkOptions,
  HiddenSinkResult,
} from '../analyses/sinks.js';
export { massiveDims, massiveDimsFromResiduals, activationMagnitudes, varSinkTokens, varSinks } from '../analyses/massive.js';
export type { MassiveDim, MassiveDimsResult, MassiveDimsOptions, ActivationMagnitudes, VarSinkOptions, VarSinkResult, VarSinksOptions } from '../analyses/massive.js';
