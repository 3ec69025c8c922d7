/**
 * Run chosen cells of a notebook, unchanged, in the tslab kernel the notebook runner uses
 * (scripts/nb-setup.sh + scripts/nb-execute.py, i.e. nbclient as `npm run notebooks` does), with extra
 * environment variables (e.g. HF_HUB_CACHE pointing at a temporary hub cache). The cells go into a
 * temporary notebook in a fresh folder under .tflens-tmp/ (the kernel runs there), in their order in
 * the source notebook. Returns each cell's printed text and the runner's stderr.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');

interface Cell {
  id?: string;
  cell_type: string;
  source: string | string[];
  outputs?: Array<{ output_type: string; text?: string | string[]; ename?: string; evalue?: string }>;
}

/** The cells of `notebook` (a path from the repository root) with these ids, in notebook order; throws on a missing id. */
export function notebookCells(notebook: string, ids: string[]): Cell[] {
  const nb = JSON.parse(readFileSync(path.join(ROOT, notebook), 'utf8')) as { cells: Cell[] };
  const missing = ids.filter((id) => !nb.cells.some((c) => c.id === id));
  if (missing.length) throw new Error(`${notebook}: no cell with id ${missing.join(', ')}`);
  return nb.cells.filter((c) => c.id !== undefined && ids.includes(c.id));
}

export interface SectionRun {
  ok: boolean;
  /** Printed text (stdout and stderr streams) of each code cell, by id. */
  text: Record<string, string>;
  /** The runner's stderr (the failing cell's source and error when !ok). */
  stderr: string;
}

const joinText = (t: string | string[] | undefined) => (Array.isArray(t) ? t.join('') : t ?? '');

/** Execute `cells` in a fresh tslab kernel with `env` added to this process's environment. */
export function runNotebookCells(source: string, cells: Cell[], env: Record<string, string>, timeoutS = 900): SectionRun {
  const src = JSON.parse(readFileSync(path.join(ROOT, source), 'utf8')) as Record<string, unknown>;
  mkdirSync(path.join(ROOT, '.tflens-tmp'), { recursive: true });
  const dir = mkdtempSync(path.join(ROOT, '.tflens-tmp', 'nb-section-'));
  try {
    const inFile = path.join(dir, 'section.ipynb');
    const outFile = path.join(dir, 'section.out.ipynb');
    const clean = cells.map((c) => ({ ...c, ...(c.cell_type === 'code' ? { outputs: [], execution_count: null } : {}) }));
    writeFileSync(inFile, JSON.stringify({ ...src, cells: clean }, null, 1));
    const script = 'source scripts/nb-setup.sh && nb_setup && $NB_PYTHON scripts/nb-execute.py "$1" "$2" tslab "$3"';
    const r = spawnSync('bash', ['-c', script, 'nb-section', inFile, outFile, String(timeoutS)], {
      cwd: ROOT,
      env: { ...process.env, TFLENS_FORBID_SYNC_READBACK: process.env.TFLENS_FORBID_SYNC_READBACK ?? '1', ...env },
      encoding: 'utf8',
      timeout: (timeoutS + 120) * 1000,
    });
    const text: Record<string, string> = {};
    try {
      const out = JSON.parse(readFileSync(outFile, 'utf8')) as { cells: Cell[] };
      for (const c of out.cells) {
        if (c.cell_type !== 'code' || !c.id) continue;
        text[c.id] = (c.outputs ?? []).map((o) => (o.output_type === 'stream' ? joinText(o.text) : o.output_type === 'error' ? `${o.ename}: ${o.evalue}\n` : '')).join('');
      }
    } catch {
      // no output notebook: the runner failed before executing (its stderr says why)
    }
    return { ok: r.status === 0, text, stderr: `${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
