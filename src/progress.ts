/**
 * Progress display for long work. In a tslab notebook: one live-updating HTML output (a tslab
 * display id, so nbconvert keeps only the last state). In scripts: one progress line on stderr,
 * rewritten with a carriage return on a terminal, or sparse full lines when stderr is a file/pipe.
 * TFLENS_QUIET=1 silences it. Depends on nothing but node, so training loops and sweeps can use it.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { ValueError, expectedFound } from './errors.js';

/** The part of tslab's Display that tflens uses. */
export interface TslabDisplay {
  html(s: string): void;
  text(s: string): void;
}

export interface TslabApi {
  display: TslabDisplay;
  newDisplay(): TslabDisplay;
}

/**
 * tslab's display API when this process is a tslab kernel that is executing a cell, else null.
 * Found through the kernel's own loaded copy of tslab (require.cache), so a second install of
 * tslab in node_modules never shadows it, and nothing is loaded outside a kernel.
 */
export function tslabApi(): TslabApi | null {
  const req = createRequire(import.meta.url);
  for (const [file, mod] of Object.entries(req.cache)) {
    if (!/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file)) continue;
    const exp = mod?.exports as { lastWriteDisplayData?: unknown } | undefined;
    if (typeof exp?.lastWriteDisplayData !== 'function') continue;
    try {
      const pub = createRequire(file)(path.join(path.dirname(file), 'public.js')) as TslabApi;
      if (typeof pub.newDisplay === 'function' && pub.display) return pub;
    } catch {
      // a broken tslab install: fall back to plain output
    }
  }
  return null;
}

/** True when TFLENS_QUIET is set to something other than "", "0" or "false". */
export function isQuiet(): boolean {
  const q = process.env.TFLENS_QUIET;
  return q !== undefined && q !== '' && q !== '0' && q.toLowerCase() !== 'false';
}

export interface ProgressOptions {
  /** Shown before the bar, e.g. "head patching". */
  label?: string;
  /** Minimum milliseconds between redraws (default 100 on a terminal or in tslab, 5000 for non-terminal streams). */
  minIntervalMs?: number;
  /** Force silence (default: TFLENS_QUIET). */
  quiet?: boolean;
  /** Where the text line goes (default process.stderr); given explicitly, tslab is not used. */
  stream?: { write(s: string): unknown; isTTY?: boolean };
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

export interface Progress {
  /** Count n more items done (default 1); info (e.g. {loss: 0.31}) is shown after the counts. */
  tick(n?: number, info?: string | Record<string, number | string>): void;
  /** Final redraw with the elapsed time; further ticks and done() calls are ignored. */
  done(): void;
  /** Items counted so far. */
  readonly count: number;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - 60 * m)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function formatInfo(info: string | Record<string, number | string> | undefined): string {
  if (info === undefined) return '';
  if (typeof info === 'string') return info;
  return Object.entries(info)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : v}`)
    .join(' ');
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The state line: "label [#####.....] 50/100 50% 12.3 it/s eta 4.1s info". */
export function progressLine(
  label: string,
  count: number,
  total: number,
  elapsedS: number,
  info: string,
  finished: boolean,
  width = 24,
): string {
  const frac = total > 0 ? Math.min(1, count / total) : 1;
  const filled = Math.round(frac * width);
  const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
  const rate = elapsedS > 0 ? count / elapsedS : 0;
  const timing = finished
    ? `done in ${formatSeconds(elapsedS)}`
    : `${rate >= 10 ? rate.toFixed(0) : rate.toFixed(2)} it/s eta ${rate > 0 ? formatSeconds(Math.max(0, total - count) / rate) : '?'}`;
  const parts = [label ? `${label} ` : '', `[${bar}] ${count}/${total} ${Math.floor(frac * 100)}% ${timing}`, info ? ` ${info}` : ''];
  return parts.join('');
}

function progressHtml(label: string, count: number, total: number, line: string): string {
  const max = Math.max(total, 1);
  return (
    `<div style="font-family:monospace;font-size:12px">` +
    (label ? `<b>${escapeHtml(label)}</b> ` : '') +
    `<progress value="${Math.min(count, max)}" max="${max}" style="width:16em;vertical-align:middle"></progress> ` +
    `${escapeHtml(line.slice(line.indexOf(']') + 2))}</div>`
  );
}

/**
 * A progress display for `total` items. tick() as items finish, done() at the end.
 * Silent when TFLENS_QUIET=1 (or opts.quiet); never throws from tick() on display trouble.
 */
export function progress(total: number, opts: ProgressOptions = {}): Progress {
  if (typeof total !== 'number' || !Number.isFinite(total) || total < 0) {
    throw new ValueError('progress: total', expectedFound('a finite number >= 0', String(total)));
  }
  const label = opts.label ?? '';
  const now = opts.now ?? (() => Date.now());
  const quiet = opts.quiet ?? isQuiet();
  const start = now();
  let count = 0;
  let info = '';
  let finished = false;
  let lastDraw = -Infinity;

  let draw: (final: boolean) => void = () => {};
  if (!quiet) {
    const tslab = opts.stream ? null : tslabApi();
    if (tslab) {
      const disp = tslab.newDisplay();
      const interval = opts.minIntervalMs ?? 250;
      draw = (final) => {
        const t = now();
        if (!final && t - lastDraw < interval) return;
        lastDraw = t;
        const line = progressLine(label, count, total, (t - start) / 1000, info, final);
        disp.html(progressHtml(label, count, total, line));
      };
    } else {
      const stream = opts.stream ?? process.stderr;
      const tty = stream.isTTY === true;
      const interval = opts.minIntervalMs ?? (tty ? 100 : 5000);
      let lastLen = 0;
      draw = (final) => {
        const t = now();
        if (!final && t - lastDraw < interval) return;
        lastDraw = t;
        const line = progressLine(label, count, total, (t - start) / 1000, info, final);
        if (tty) {
          stream.write(`\r${line}${' '.repeat(Math.max(0, lastLen - line.length))}${final ? '\n' : ''}`);
          lastLen = line.length;
        } else {
          stream.write(`${line}\n`);
        }
      };
    }
  }
  const safeDraw = (final: boolean) => {
    try {
      draw(final);
    } catch {
      draw = () => {};
    }
  };
  safeDraw(false);

  return {
    tick(n = 1, i) {
      if (finished) return;
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
        throw new ValueError('progress.tick: n', expectedFound('a finite number >= 0', String(n)));
      }
      count += n;
      if (i !== undefined) info = formatInfo(i);
      safeDraw(false);
    },
    done() {
      if (finished) return;
      finished = true;
      safeDraw(true);
    },
    get count() {
      return count;
    },
  };
}
