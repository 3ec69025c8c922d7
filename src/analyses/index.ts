/** Analyses: attention statistics, sinks, dormant heads, detectors, calibration, retrieval, weights, statistics. */
export * from './index-sinks.js';
export * from './index-calib.js';
export * from './stats.js';
export * from './weights/index.js';
export * from './niah.js';
