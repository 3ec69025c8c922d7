/** tfl.calibration: ACT (hidden-sink calibration, Yu et al.) and VAR (visual attention redistribution, Kang et al.). */
export * from '../analyses/calibration.js';
