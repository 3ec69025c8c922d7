// Where the bench takes tflens from: the built package (npm run build -> dist/), or a private
// snapshot build named by TFLENS_DIST (a path relative to the project root, e.g. bench/out/dist),
// which keeps a long run safe from concurrent rebuilds of dist/.
import { pathToFileURL } from 'node:url';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const distDir = resolve(ROOT, process.env.TFLENS_DIST || 'dist');
export const DIST = distDir;
export const lib = await import(pathToFileURL(resolve(distDir, 'index.js')).href);
