/** Analyses: attention statistics, sinks, dormant heads, detectors, calibration, retrieval, weights, statistics. */
export * from './stats.js';
export * from './weights/index.js';
export * from './niah.js';
