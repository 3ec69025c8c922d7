// Public API of src/io: safetensors, hub/cache resolution, exports, atomic writes, resumable sweeps.
export { writeFileAtomic, withAtomicFile, tempPathFor, type AtomicData } from './atomic.js';
export {
  parseSafetensorsHeader,
  readHeaderLength,
  readSafetensors,
  readSafetensorsArrays,
  safetensorsInfo,
  writeSafetensors,
  readCheckpointTensors,
  parseShardIndex,
  halfToFloat,
  f8e4m3ToFloat,
  f8e5m2ToFloat,
  floatToHalf,
  floatToBf16,
  DTYPE_SIZE,
  MAX_HEADER_BYTES,
  SINGLE_FILE,
  INDEX_FILE,
  type SafetensorsDtype,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsArray,
  type RawTensor,
  type WritableDtype,
} from './safetensors.js';
export {
  resolveModelPath,
  hubCacheDir,
  repoCacheFolder,
  OPTIONAL_FILES,
  DEFAULT_ENDPOINT,
  type ResolveOptions,
  type ResolveProgress,
} from './hub.js';
export {
  toCsv,
  headScoresToCsv,
  headScoresToJson,
  saveHeadScores,
  rankedHeadRows,
  type RankBy,
  type HeadExportOptions,
  saveCsv,
  saveJson,
  writeNpy,
  readNpy,
  readNpyTensor,
  parseNpy,
  type NpyArray,
} from './export.js';
export { SweepStore, runResumable, type SweepValue, type SweepStoreOptions, type SweepProgress } from './checkpoint.js';
export { parseJsonStrict, findDuplicateKey } from './json.js';
export { parseTokenIds, readTokenFile, type TokenCheckOptions } from './tokens.js';
