/**
 * Minimal plotly figure types: just what tflens builds. A figure is plain JSON
 * ({data, layout, config}) that plotly.js draws as is; building one needs no DOM.
 */

export type Datum = number | string | null;

export interface Trace {
  type: 'heatmap' | 'scatter' | 'bar' | 'histogram';
  name?: string;
  x?: Datum[];
  y?: Datum[];
  z?: Datum[][];
  text?: string[] | string[][];
  hoverinfo?: string;
  hovertemplate?: string;
  mode?: string;
  visible?: boolean;
  colorscale?: string | Array<[number, string]>;
  reversescale?: boolean;
  zmin?: number;
  zmax?: number;
  zmid?: number;
  showscale?: boolean;
  colorbar?: Record<string, unknown>;
  xgap?: number;
  ygap?: number;
  line?: Record<string, unknown>;
  marker?: Record<string, unknown>;
  nbinsx?: number;
  orientation?: 'v' | 'h';
  showlegend?: boolean;
  [key: string]: unknown;
}

export interface Axis {
  title?: { text: string };
  type?: 'linear' | 'log' | 'category' | 'date';
  autorange?: boolean | 'reversed';
  tickmode?: 'auto' | 'linear' | 'array';
  tickvals?: Datum[];
  ticktext?: string[];
  tickangle?: number;
  dtick?: number;
  showgrid?: boolean;
  zeroline?: boolean;
  visible?: boolean;
  range?: [number, number];
  scaleanchor?: string;
  constrain?: string;
  side?: 'top' | 'bottom' | 'left' | 'right';
  automargin?: boolean;
  [key: string]: unknown;
}

export interface Annotation {
  x: Datum;
  y: Datum;
  text: string;
  showarrow: boolean;
  font?: Record<string, unknown>;
  xref?: string;
  yref?: string;
  [key: string]: unknown;
}

export interface UpdateMenu {
  type?: 'dropdown' | 'buttons';
  direction?: 'down' | 'up' | 'left' | 'right';
  active?: number;
  x?: number;
  y?: number;
  xanchor?: string;
  yanchor?: string;
  showactive?: boolean;
  buttons: Array<{ label: string; method: 'update' | 'restyle' | 'relayout'; args: unknown[] }>;
}

export interface Layout {
  title?: { text: string; x?: number; y?: number; xanchor?: string; yanchor?: string; [key: string]: unknown };
  xaxis?: Axis;
  yaxis?: Axis;
  width?: number;
  height?: number;
  margin?: { l?: number; r?: number; t?: number; b?: number };
  annotations?: Annotation[];
  updatemenus?: UpdateMenu[];
  shapes?: Array<Record<string, unknown>>;
  showlegend?: boolean;
  hovermode?: string | false;
  [key: string]: unknown;
}

export interface Config {
  responsive?: boolean;
  displaylogo?: boolean;
  staticPlot?: boolean;
  [key: string]: unknown;
}

/** A plotly figure: what `Plotly.newPlot(div, fig.data, fig.layout, fig.config)` takes. */
export interface Figure {
  data: Trace[];
  layout: Layout;
  config?: Config;
}
