/** Plotly figure builders, tslab display and offline HTML export; the progress display (src/progress.ts) too. */
export * from './types.js';
export {
  headHeatmap,
  attentionPattern,
  attentionGrid,
  linePlot,
  tokenStrip,
  patchingHeatmap,
  bar,
  histogram,
  rocCurve,
  formatValue,
  dedupeLabels,
  tokenLabel,
  DIVERGING,
  SEQUENTIAL,
} from './figures.js';
export type {
  HeadHeatmapOptions,
  AttentionPatternOptions,
  AttentionGridOptions,
  Series,
  LinePlotOptions,
  BarOptions,
  HistogramOptions,
  RocData,
  RocOptions,
  TokenStripOptions,
  PatchingHeatmapOptions,
} from './figures.js';
export { niahHeatmap, niahHeatmaps, type NiahMetric } from './niah.js';
export { show, loadPlotly, saveHtml, figuresPage, figureHtml, describeFigure, plotlyScriptTag } from './html.js';
export { progress, type Progress, type ProgressOptions } from '../progress.js';
