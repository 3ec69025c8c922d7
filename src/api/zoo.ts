/** tfl.zoo: the training loop and the recipes of the shipped models. */
export * from '../zoo/train.js';
export * from '../zoo/model-zoo.js';
export * from '../zoo/var-group.js';
