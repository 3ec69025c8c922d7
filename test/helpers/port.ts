// Runs an independent Python/numpy port of an author's computation (test/ports/*.py): JSON in on stdin,
// JSON out on stdout. Debian's python3 (with python3-numpy, installed by .ci/run) is preferred.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const PY = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Run test/ports/<name>.py on `input` and parse its JSON output (non-finite numbers as null). */
export function runPort<T = unknown>(name: string, input: unknown): T {
  const script = path.resolve('test/ports', `${name}.py`);
  const out = execFileSync(PY, [script], { input: JSON.stringify(input), maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' });
  return JSON.parse(out) as T;
}
