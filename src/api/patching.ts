/**
 * tfl.patching: patching problems and metrics; activation patching (batched `patchSweep`, the
 * TransformerLens-style `patchLoop`, and TransformerLens's named variants); path patching (Wang et al.);
 * attribution patching (Nanda); knockouts and circuit evaluation by mean ablation; resumable sweeps.
 */
export {
  logitDiffMetric,
  logProbMetric,
  leftPad,
  ioiProblem,
  ioiTask,
  inductionProblem,
  runMetric,
} from '../circuits/problem.js';
export type { PatchingProblem, VectorMetric, InductionProblemOptions } from '../circuits/problem.js';
export {
  patchSweep,
  patchLoop,
  hookNameOf,
  actPatchResidPre,
  actPatchResidMid,
  actPatchAttnOut,
  actPatchMlpOut,
  actPatchHeadOutAllPos,
  actPatchHeadOutByPos,
  actPatchBlockEvery,
  actPatchAttnHeadAllPosEvery,
  actPatchAttnHeadByPosEvery,
  headPatchingScores,
} from '../circuits/patching.js';
export type { PatchAct, PatchBy, PatchResult, PatchOptions } from '../circuits/patching.js';
export { pathPatch, pathPatchingScores, attributionPatch, attributionScores } from '../circuits/path.js';
export type { HeadRef, PathPatchOptions, PathPatchResult, AttributionResult } from '../circuits/path.js';
export { templateMeans, knockout, evaluateCircuit } from '../circuits/evaluate.js';
export type { AblationMeans, CircuitNode, CircuitEvaluation, CircuitEvaluationOptions } from '../circuits/evaluate.js';
export { resumablePatchSweep, sweepKey } from '../circuits/resumable.js';
export type { ResumablePatchOptions, ResumablePatchResult, ResumableProgress } from '../circuits/resumable.js';
