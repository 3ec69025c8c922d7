/** tfl.calibration: ACT (hidden-sink calibration, Yu et al.) and VAR (visual attention redistribution, Kang et al.). */
export {
  // shared
  defaultCalibLayers,
  varLayers,
  tokenGroupMask,
  // ACT
  actColumnMeans,
  actHiddenSinks,
  calibrateACT,
  actHook,
  selectACTHeads,
  evaluateACT,
  // VAR
  sinkDimensions,
  sinkTokenMask,
  imageCentricMask,
  imageCentricHeads,
  redistributeVAR,
  varHook,
} from '../analyses/calibration.js';
export type {
  CalibHooks,
  CalibEvaluate,
  KeyMask,
  HeadRef,
  ACTOptions,
  ACTTensorOptions,
  ACTHookOptions,
  SelectACTOptions,
  ACTSelectionStep,
  ACTSelection,
  TokenGroup,
  VARLayerRule,
  ImageCentricOptions,
  ImageCentricHeadsOptions,
  VAROptions,
  VARHookOptions,
} from '../analyses/calibration.js';
