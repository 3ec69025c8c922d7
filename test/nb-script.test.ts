// scripts/nb-to-script.mjs: a notebook's code cells as one module, for machines without Jupyter (the
// accelerator machine's run, bench/device/suite.sh). Checked on the smoke and weights notebooks: the
// script runs from the notebooks folder as the kernel does and prints what the notebook prints.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

describe('scripts/nb-to-script.mjs: notebooks as scripts of their code cells', function () {
  this.timeout(300000);
  for (const name of ['00-smoke', '07-weights']) {
    it(`${name}: every code cell in order, require available, runs to the end with no tensors left`, () => {
      const conv = spawnSync(process.execPath, ['scripts/nb-to-script.mjs', `notebooks/${name}.ipynb`], { encoding: 'utf8' });
      assert.equal(conv.status, 0, conv.stderr);
      const file = path.resolve(conv.stdout.trim());
      const text = readFileSync(file, 'utf8');
      const cells = (JSON.parse(readFileSync(`notebooks/${name}.ipynb`, 'utf8')).cells as Array<{ cell_type: string; source: string[] | string }>).filter((c) => c.cell_type === 'code');
      let at = 0;
      for (const c of cells) {
        const src = ([] as string[]).concat(c.source).join('');
        const i = text.indexOf(src, at);
        assert.ok(i >= at, `cell "${src.slice(0, 40)}..." in order`);
        at = i + src.length;
      }
      const run = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: 'notebooks', encoding: 'utf8', env: { ...process.env } });
      assert.equal(run.status, 0, run.stderr.slice(-2000));
      assert.match(run.stdout, /tensors left behind( by this notebook)?: 0/);
    });
  }
});
