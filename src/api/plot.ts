/** tfl.plot: plotly figure builders, tslab display and offline HTML export. */
export * from '../plot/index.js';
