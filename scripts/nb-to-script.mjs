#!/usr/bin/env node
// Writes each notebook's code cells, in order, as one TypeScript module (reports/scripts/<name>.ts), for
// machines without Jupyter (the accelerator machine): run it from the notebooks folder, as the kernel
// does, with `cd notebooks && node --import tsx ../reports/scripts/<name>.ts`. Figures print a
// one-line description there (tfl.show outside tslab).
// Usage: node scripts/nb-to-script.mjs [notebooks/NN-name.ipynb ...]  (default: every notebook)
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const outDir = path.join(root, 'reports', 'scripts');
fs.mkdirSync(outDir, { recursive: true });
const args = process.argv.slice(2);
const files = args.length ? args : fs.readdirSync(path.join(root, 'notebooks')).filter((f) => f.endsWith('.ipynb')).sort().map((f) => path.join(root, 'notebooks', f));
for (const f of files) {
  const nb = JSON.parse(fs.readFileSync(f, 'utf8'));
  const cells = nb.cells.filter((c) => c.cell_type === 'code').map((c, i) => `// ---- cell ${i + 1}\n${[].concat(c.source).join('')}\n`);
  const out = path.join(outDir, path.basename(f).replace(/\.ipynb$/, '.ts'));
  // tslab cells may call require (the kernel runs them as CommonJS); an ES module has none of its own
  const head = `// generated from ${path.relative(root, f)} by scripts/nb-to-script.mjs\nimport { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);\n`;
  fs.writeFileSync(out, `${head}${cells.join('')}export {};\n`);
  console.log(out);
}
