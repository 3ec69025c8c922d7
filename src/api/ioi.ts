/**
 * tfl.ioi: the indirect-object-identification task (Wang et al.): templates, names, datasets, the ABC
 * corruption (the authors' rule by default), positions, template groups, logit difference.
 */
export {
  BABA_TEMPLATES,
  ABBA_TEMPLATES,
  ABC_TEMPLATES,
  PLACES,
  OBJECTS,
  NAMES,
  IOI_POSITIONS,
  ABC_FLIPS,
  swapFirstClause,
  singleTokenNames,
  generateIOI,
  ioiCorrupted,
  batchPositions,
  templateGroups,
  logitDiff,
  normalisedMetric,
} from '../data/ioi.js';
export type {
  IOIDataset,
  IOIOptions,
  IOITokenizer,
  IOIPromptType,
  IOITemplateKind,
  IOIPosition,
  IOIFlip,
  IOICorruptionRule,
  LogitDiffResult,
  Padding,
} from '../data/ioi.js';
export { ioiTokenizerOf } from '../circuits/problem.js';
