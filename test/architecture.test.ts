// The rooms of docs/architecture.md: each src/ folder imports only the folders its row allows, and no import cycles.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const SRC = path.resolve('src');
/** Shared leaves every room may use: typed errors, result types, the seeded PRNG, the progress display. */
const SHARED = ['errors', 'results', 'util', 'progress'];
/** The room table of docs/architecture.md: what each room may import (plus the shared leaves). */
const BELOW_ANALYSES = ['backend', 'io', 'hooks', 'model', 'data'];
const ALLOWED: Record<string, string[]> = {
  backend: [],
  io: ['backend'],
  hooks: ['backend'],
  model: ['io', 'hooks', 'backend'],
  data: ['model', 'hooks', 'io', 'backend'],
  analyses: BELOW_ANALYSES,
  circuits: [...BELOW_ANALYSES, 'analyses'],
  sae: [...BELOW_ANALYSES, 'analyses'],
  plot: ['io'],
  rank: [...BELOW_ANALYSES, 'analyses', 'circuits', 'sae'],
  sweep: [...BELOW_ANALYSES, 'analyses', 'circuits', 'sae', 'rank'],
  zoo: [...BELOW_ANALYSES, 'analyses', 'circuits', 'sae'],
  cli: [...BELOW_ANALYSES, 'analyses', 'circuits', 'sae', 'plot', 'rank', 'sweep', 'zoo'],
  api: ['*'],
  util: [],
  root: ['*'],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function room(file: string): string {
  const rel = path.relative(SRC, file);
  const first = rel.split(path.sep)[0].replace(/\.ts$/, '').replace(/\.js$/, '');
  return rel.includes(path.sep) ? first : SHARED.includes(first) ? first : 'root';
}

describe('architecture (the room table of docs/architecture.md)', () => {
  const graph = new Map<string, string[]>();
  for (const f of files(SRC)) {
    const deps: string[] = [];
    for (const m of readFileSync(f, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
      deps.push(path.resolve(path.dirname(f), m[1]).replace(/\.js$/, '.ts'));
    }
    graph.set(f, deps);
  }

  it('every folder of src/ is a room of the table', () => {
    const rooms = readdirSync(SRC).filter((f) => statSync(path.join(SRC, f)).isDirectory());
    assert.deepEqual(rooms.filter((r) => !(r in ALLOWED)), []);
  });

  it('each room imports only what its row allows (no exceptions)', () => {
    const bad: string[] = [];
    for (const [f, deps] of graph) {
      const from = room(f);
      for (const d of deps) {
        const to = room(d);
        if (to === from || SHARED.includes(to)) continue;
        const ok = ALLOWED[from]?.includes('*') || ALLOWED[from]?.includes(to);
        if (!ok) bad.push(`${path.relative(SRC, f)} -> ${path.relative(SRC, d)} (${from} -> ${to})`);
      }
    }
    assert.deepEqual(bad, []);
  });

  it('has no import cycles between rooms', () => {
    const edges = new Map<string, Set<string>>();
    for (const [f, deps] of graph) for (const d of deps) if (room(f) !== room(d)) (edges.get(room(f)) ?? edges.set(room(f), new Set()).get(room(f))!).add(room(d));
    const state = new Map<string, number>();
    const cycle: string[] = [];
    const visit = (n: string, stack: string[]): boolean => {
      if (state.get(n) === 1) return cycle.push(...stack, n), true;
      if (state.get(n) === 2) return false;
      state.set(n, 1);
      for (const m of edges.get(n) ?? []) if (visit(m, [...stack, n])) return true;
      state.set(n, 2);
      return false;
    };
    for (const n of edges.keys()) if (visit(n, [])) break;
    assert.deepEqual(cycle, []);
  });
});
