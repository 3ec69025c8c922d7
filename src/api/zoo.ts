/** tfl.zoo: the training loop, the shipped models' recipes and evaluations (one file per model), and the zoo registry. */
export * from '../zoo/train.js';
export { tokenNll, type TrainRecipeOptions, type TrainedZooModel } from '../zoo/common.js';
export * from '../zoo/registry.js';
export * from '../zoo/bb.js';
export * from '../zoo/recall.js';
export * from '../zoo/ioi.js';
export * from '../zoo/induction-handmade.js';
export * from '../zoo/var-group.js';
export * from '../zoo/emergence.js';
