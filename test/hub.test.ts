// Hub resolution against a loopback HTTP server that mimics the hub's URL layout. Nothing here
// contacts any address other than 127.0.0.1.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { hubCacheDir, resolveModelPath, type ResolveProgress } from '../src/io/hub.js';
import { readCheckpointTensors, writeSafetensors } from '../src/io/safetensors.js';
import { FormatError, ResolveError } from '../src/errors.js';
import { loadModel } from '../src/model/index.js';
import { fileURLToPath } from 'node:url';

interface Repo {
  /** revision name -> commit */
  refs: Record<string, string>;
  /** commit -> file -> bytes */
  files: Record<string, Record<string, Buffer>>;
  /** files the api lists but resolve answers 404 for */
  phantom?: string[];
  token?: string;
  /** file whose download is cut off half way */
  truncate?: string;
  /** announce a wrong sha256 for LFS files */
  badSha?: boolean;
  /** file whose download sends a few bytes, then nothing */
  stall?: string;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const isLfs = (f: string) => f.endsWith('.safetensors');
const commitOf = (s: string) => createHash('sha1').update(s).digest('hex');

describe('io/hub', () => {
  let tmp: string;
  let server: http.Server;
  let endpoint: string;
  const repos: Record<string, Repo> = {};
  const requests: string[] = [];
  const savedEnv: Record<string, string | undefined> = {};
  let cfgMain: Buffer;
  let cfgV2: Buffer;
  let weights: Buffer;

  before(async () => {
    for (const k of ['HF_ENDPOINT', 'HF_TOKEN', 'HF_HUB_OFFLINE', 'HF_HOME', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HUGGING_FACE_HUB_TOKEN']) {
      savedEnv[k] = process.env[k];
      delete process.env[k];
    }
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-hub-'));
    const fixtures = path.join(tmp, 'fixtures');
    await writeSafetensors(path.join(fixtures, 'model.safetensors'), {
      'embed.W_E': { dtype: 'F32', shape: [3, 2], data: [1, 2, 3, 4, 5, 6] },
      'unembed.W_U': { dtype: 'F32', shape: [2, 3], data: [0.5, -1, 2, 0, 1, -0.25] },
    });
    await writeSafetensors(path.join(fixtures, 's1.safetensors'), { a: { dtype: 'F32', shape: [2], data: [1, 2] } });
    await writeSafetensors(path.join(fixtures, 's2.safetensors'), { b: { dtype: 'I32', shape: [1], data: [7] } });
    weights = await fsp.readFile(path.join(fixtures, 'model.safetensors'));
    cfgMain = Buffer.from(JSON.stringify({ model_type: 'gpt2', n_layer: 1, tag: 'main' }));
    cfgV2 = Buffer.from(JSON.stringify({ model_type: 'gpt2', n_layer: 1, tag: 'v2' }));
    const tok = Buffer.from('{"model":{"type":"BPE"}}');
    const A = commitOf('tiny main');
    const B = commitOf('tiny v2');
    repos['tiny-org/tiny-model'] = {
      refs: { main: A, v2: B },
      files: {
        [A]: { 'config.json': cfgMain, 'tokenizer.json': tok, 'model.safetensors': weights, 'README.md': Buffer.from('# tiny') },
        [B]: { 'config.json': cfgV2, 'model.safetensors': weights },
      },
    };
    const S = commitOf('sharded');
    repos['tiny-org/sharded'] = {
      refs: { main: S },
      files: {
        [S]: {
          'config.json': cfgMain,
          'model.safetensors.index.json': Buffer.from(JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } })),
          'model-00001-of-00002.safetensors': await fsp.readFile(path.join(fixtures, 's1.safetensors')),
          'model-00002-of-00002.safetensors': await fsp.readFile(path.join(fixtures, 's2.safetensors')),
        },
      },
    };
    const P = commitOf('private');
    repos['tiny-org/private'] = { refs: { main: P }, files: { [P]: { 'config.json': cfgMain, 'model.safetensors': weights } }, token: 'secret-token' };
    const Ph = commitOf('phantom');
    repos['tiny-org/phantom'] = { refs: { main: Ph }, files: { [Ph]: { 'config.json': cfgMain, 'model.safetensors': weights } }, phantom: ['tokenizer.json'] };
    const Tr = commitOf('truncated');
    const otherWeights = Buffer.concat([weights, Buffer.alloc(64, 1)]); // distinct bytes, so a distinct blob
    repos['tiny-org/truncated'] = { refs: { main: Tr }, files: { [Tr]: { 'config.json': cfgMain, 'model.safetensors': otherWeights } }, truncate: 'model.safetensors' };
    const Bad = commitOf('badsha');
    repos['tiny-org/badsha'] = { refs: { main: Bad }, files: { [Bad]: { 'config.json': cfgMain, 'model.safetensors': Buffer.concat([weights, Buffer.alloc(8, 2)]) } }, badSha: true };
    const St = commitOf('stall');
    repos['tiny-org/stall'] = { refs: { main: St }, files: { [St]: { 'config.json': cfgMain, 'model.safetensors': Buffer.concat([weights, Buffer.alloc(8, 3)]) } }, stall: 'model.safetensors' };
    const Bin = commitOf('bin');
    repos['tiny-org/bin-only'] = { refs: { main: Bin }, files: { [Bin]: { 'config.json': cfgMain, 'pytorch_model.bin': Buffer.from('x') } } };

    server = http.createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      const url = new URL(req.url!, 'http://x');
      const parts = url.pathname.split('/').map(decodeURIComponent);
      const send = (status: number, body: string | Buffer, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
        res.end(body);
      };
      const auth = (repo: Repo) => !repo.token || req.headers.authorization === `Bearer ${repo.token}`;
      // /cdn/<sha256>: the LFS storage a resolve redirects to (no auth there)
      if (parts[1] === 'cdn') {
        for (const repo of Object.values(repos)) {
          for (const files of Object.values(repo.files)) {
            for (const [f, b] of Object.entries(files)) {
              if (sha256(b) === parts[2]) {
                if (repo.stall === f) {
                  res.writeHead(200, { 'content-length': b.length });
                  res.write(b.subarray(0, 10));
                  return; // and never more
                }
                if (repo.truncate === f) {
                  res.writeHead(200, { 'content-length': b.length });
                  res.write(b.subarray(0, b.length >> 1));
                  setTimeout(() => res.destroy(), 10);
                  return;
                }
                return send(200, b, { etag: '"cdn-etag-not-a-sha"' });
              }
            }
          }
        }
        return send(404, 'no blob');
      }
      // /api/models/<org>/<name>/revision/<rev>
      if (parts[1] === 'api' && parts[2] === 'models' && parts[3] === 'tiny-org' && parts[4] === 'garbage') return send(200, '<html>maintenance</html>');
      if (parts[1] === 'api' && parts[2] === 'models' && parts[3] === 'tiny-org' && parts[4] === 'nosha') return send(200, '{"siblings": []}');
      if (parts[1] === 'api' && parts[2] === 'models' && parts[5] === 'revision') {
        const repo = repos[`${parts[3]}/${parts[4]}`];
        if (!repo) return send(404, '{"error":"Repository not found"}');
        if (!auth(repo)) return send(401, '{"error":"Invalid credentials"}');
        const rev = parts.slice(6).join('/');
        const commit = repo.refs[rev] ?? (repo.files[rev] ? rev : undefined);
        if (!commit) return send(404, '{"error":"Revision not found"}');
        const siblings = [...Object.keys(repo.files[commit]), ...(repo.phantom ?? [])].map((rfilename) => ({ rfilename }));
        return send(200, JSON.stringify({ id: `${parts[3]}/${parts[4]}`, sha: commit, siblings }), { 'content-type': 'application/json' });
      }
      // /<org>/<name>/resolve/<commit>/<file>
      if (parts[3] === 'resolve') {
        const repo = repos[`${parts[1]}/${parts[2]}`];
        if (!repo) return send(404, 'Repository not found');
        if (!auth(repo)) return send(401, 'Invalid credentials');
        const files = repo.files[parts[4]];
        const file = parts.slice(5).join('/');
        const body = files?.[file];
        if (!body) return send(404, 'Entry not found', { 'x-error-code': 'EntryNotFound' });
        if (isLfs(file)) {
          // Like the hub: LFS files redirect to storage; the sha256 is in X-Linked-Etag.
          const announced = repo.badSha ? sha256(Buffer.from('something else')) : sha256(body);
          return send(302, '', { location: `/cdn/${sha256(body)}`, 'x-linked-etag': `"${announced}"`, etag: '"redirect-etag"', 'x-repo-commit': parts[4] });
        }
        return send(200, body, { etag: `"${gitSha1(body)}"`, 'x-repo-commit': parts[4] });
      }
      send(404, 'unknown route');
    });
    // a real checkpoint (the tiny GPT-2 fixture) served as a hub repository
    const fx = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'reference', 'gpt2-tiny');
    const G = commitOf('gpt2-tiny');
    const gfiles: Record<string, Buffer> = {};
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) gfiles[f] = await fsp.readFile(path.join(fx, f));
    repos['fixtures/gpt2-tiny'] = { refs: { main: G }, files: { [G]: gfiles } };
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  beforeEach(() => {
    requests.length = 0;
  });

  it('a local folder is returned as is, without network', async () => {
    const d = path.join(tmp, 'local-model');
    await fsp.mkdir(d);
    assert.equal(await resolveModelPath(d, { endpoint: 'http://127.0.0.1:9' }), d);
    await assert.rejects(resolveModelPath(path.join(tmp, 'nope', 'x')), (e: unknown) => e instanceof ResolveError && /not found/.test((e as Error).message));
    assert.equal(requests.length, 0);
  });

  it('downloads into the huggingface_hub cache layout, then reuses it without network', async () => {
    const cacheDir = path.join(tmp, 'cache1');
    const progress: ResolveProgress[] = [];
    const snap = await resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint, onProgress: (p) => progress.push(p) });
    const repoDir = path.join(cacheDir, 'models--tiny-org--tiny-model');
    const A = repos['tiny-org/tiny-model'].refs.main;
    assert.equal(snap, path.join(repoDir, 'snapshots', A));
    assert.equal(await fsp.readFile(path.join(repoDir, 'refs', 'main'), 'utf8'), A);
    // snapshot entries are relative symlinks into blobs/, named by sha256 (LFS) or git sha1 (regular files)
    assert.equal(await fsp.readlink(path.join(snap, 'model.safetensors')), path.join('..', '..', 'blobs', sha256(weights)));
    assert.equal(await fsp.readlink(path.join(snap, 'config.json')), path.join('..', '..', 'blobs', gitSha1(cfgMain)));
    assert.deepEqual(await fsp.readFile(path.join(snap, 'config.json')), cfgMain);
    assert.ok((await fsp.lstat(path.join(snap, 'tokenizer.json'))).isSymbolicLink());
    // only what a model needs: README.md is not fetched; no temp files are left
    await assert.rejects(fsp.lstat(path.join(snap, 'README.md')));
    assert.deepEqual((await fsp.readdir(path.join(repoDir, 'blobs'))).sort(), [gitSha1(cfgMain), sha256(weights), gitSha1(Buffer.from('{"model":{"type":"BPE"}}'))].sort());
    // the api was asked once, with the revision; each file once (plus the storage redirect)
    assert.equal(requests.filter((r) => r.startsWith('GET /api/models/tiny-org/tiny-model/revision/main')).length, 1);
    assert.equal(requests.filter((r) => r.includes('/resolve/')).length, 3);
    // progress reached the full size of the weights
    const last = progress.filter((p) => p.file === 'model.safetensors').at(-1)!;
    assert.equal(last.loaded, weights.length);
    assert.equal(last.total, weights.length);
    // the tensors read back from the snapshot
    const ts = await readCheckpointTensors(snap);
    assert.deepEqual(ts['embed.W_E'].arraySync(), [[1, 2], [3, 4], [5, 6]]);
    tf.dispose(Object.values(ts));

    const n = requests.length;
    assert.equal(await resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint }), snap);
    assert.equal(await resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint, revision: A }), snap, 'a commit hash is used directly');
    process.env.HF_HUB_OFFLINE = '1';
    try {
      assert.equal(await resolveModelPath('tiny-org/tiny-model', { cacheDir }), snap);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    assert.equal(requests.length, n, 'a cached snapshot needs no network');
  });

  it('a revision other than main gets its own snapshot and ref; blobs are shared', async () => {
    const cacheDir = path.join(tmp, 'cache1');
    const B = repos['tiny-org/tiny-model'].refs.v2;
    const snap = await resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint, revision: 'v2' });
    assert.equal(path.basename(snap), B);
    assert.equal(await fsp.readFile(path.join(cacheDir, 'models--tiny-org--tiny-model', 'refs', 'v2'), 'utf8'), B);
    assert.equal(JSON.parse(await fsp.readFile(path.join(snap, 'config.json'), 'utf8')).tag, 'v2');
    // the weights blob was already there (same sha256 in the redirect's X-Linked-Etag): its storage URL is not fetched
    assert.deepEqual(requests.filter((r) => r.includes('/resolve/')), [
      `GET /tiny-org/tiny-model/resolve/${B}/config.json`,
      `GET /tiny-org/tiny-model/resolve/${B}/model.safetensors`,
    ]);
    assert.equal(requests.filter((r) => r.includes('/cdn/')).length, 0);
    assert.equal(await fsp.readlink(path.join(snap, 'model.safetensors')), path.join('..', '..', 'blobs', sha256(weights)));
  });

  it('sharded checkpoints: the index and every shard it names', async () => {
    const cacheDir = path.join(tmp, 'cache2');
    const snap = await resolveModelPath('tiny-org/sharded', { cacheDir, endpoint });
    for (const f of ['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      assert.ok((await fsp.stat(path.join(snap, f))).isFile(), f);
    }
    const ts = await readCheckpointTensors(snap);
    assert.deepEqual(Array.from(ts.a.dataSync()), [1, 2]);
    assert.deepEqual(Array.from(ts.b.dataSync()), [7]);
    tf.dispose(Object.values(ts));
    const n = requests.length;
    await resolveModelPath('tiny-org/sharded', { cacheDir, endpoint });
    assert.equal(requests.length, n);
  });

  it('HF_ENDPOINT and HF_HUB_CACHE are honoured', async () => {
    process.env.HF_ENDPOINT = endpoint;
    process.env.HF_HUB_CACHE = path.join(tmp, 'env-cache');
    try {
      const snap = await resolveModelPath('tiny-org/tiny-model');
      assert.ok(snap.startsWith(path.join(tmp, 'env-cache', 'models--tiny-org--tiny-model', 'snapshots')));
      assert.ok(requests.length > 0);
    } finally {
      delete process.env.HF_ENDPOINT;
      delete process.env.HF_HUB_CACHE;
    }
  });

  it('cache folder defaults: HF_HOME/hub, then ~/.cache/huggingface/hub', () => {
    process.env.HF_HOME = path.join(tmp, 'hf-home');
    try {
      assert.equal(hubCacheDir(), path.join(tmp, 'hf-home', 'hub'));
    } finally {
      delete process.env.HF_HOME;
    }
    assert.equal(hubCacheDir(), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    assert.equal(hubCacheDir('rel/x'), path.resolve('rel/x'));
  });

  it('a token is required for a private repository (401 -> ResolveError), HF_TOKEN works', async () => {
    const cacheDir = path.join(tmp, 'cache3');
    await assert.rejects(
      resolveModelPath('tiny-org/private', { cacheDir, endpoint }),
      (e: unknown) => e instanceof ResolveError && /tiny-org\/private \(revision main\)/.test((e as Error).message) && /401/.test((e as Error).message) && /HF_TOKEN/.test((e as Error).message),
    );
    await assert.rejects(resolveModelPath('tiny-org/private', { cacheDir, endpoint, token: 'wrong' }), /401/);
    process.env.HF_TOKEN = 'secret-token';
    try {
      const snap = await resolveModelPath('tiny-org/private', { cacheDir, endpoint });
      assert.ok((await fsp.stat(path.join(snap, 'model.safetensors'))).isFile());
    } finally {
      delete process.env.HF_TOKEN;
    }
  });

  it('404s name the id, the revision and the file', async () => {
    const cacheDir = path.join(tmp, 'cache4');
    await assert.rejects(resolveModelPath('tiny-org/gone', { cacheDir, endpoint }), (e: unknown) => e instanceof ResolveError && /tiny-org\/gone \(revision main\).*404/.test((e as Error).message));
    await assert.rejects(resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint, revision: 'v9' }), (e: unknown) => e instanceof ResolveError && /revision v9.*404/.test((e as Error).message));
    await assert.rejects(
      resolveModelPath('tiny-org/phantom', { cacheDir, endpoint }),
      (e: unknown) => e instanceof ResolveError && /tiny-org\/phantom \(revision main\): tokenizer\.json: not found \(HTTP 404\)/.test((e as Error).message),
    );
    await assert.rejects(resolveModelPath('tiny-org/bin-only', { cacheDir, endpoint }), (e: unknown) => e instanceof ResolveError && /no safetensors weights.*pytorch_model\.bin/.test((e as Error).message));
    await assert.rejects(resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint, files: ['nope.json'] }), (e: unknown) => e instanceof ResolveError && /nope\.json/.test((e as Error).message));
  });

  it('an interrupted download leaves no half file under a real name', async () => {
    const cacheDir = path.join(tmp, 'cache5');
    await assert.rejects(resolveModelPath('tiny-org/truncated', { cacheDir, endpoint }), (e: unknown) => e instanceof ResolveError && /model\.safetensors: download (interrupted|truncated)/.test((e as Error).message));
    const repoDir = path.join(cacheDir, 'models--tiny-org--truncated');
    const blobs = await fsp.readdir(path.join(repoDir, 'blobs'));
    assert.deepEqual(blobs, [gitSha1(cfgMain)], 'only the complete config blob; no temp file');
    const snapFiles = await fsp.readdir(path.join(repoDir, 'snapshots', repos['tiny-org/truncated'].refs.main));
    assert.deepEqual(snapFiles, ['config.json']);
    // offline, the incomplete snapshot is reported as not cached, naming what is missing
    await assert.rejects(
      resolveModelPath('tiny-org/truncated', { cacheDir, endpoint, allowNetwork: false }),
      (e: unknown) => e instanceof ResolveError && /not cached/.test((e as Error).message),
    );
  });

  it('partial downloads of a killed process (dead pid, this host) are removed by the next download; others are kept', async () => {
    const cacheDir = path.join(tmp, 'cache-stale');
    const blobs = path.join(cacheDir, 'models--tiny-org--tiny-model', 'blobs');
    await fsp.mkdir(blobs, { recursive: true });
    const host = os.hostname().replace(/[^A-Za-z0-9.-]/g, '_');
    const dead = 2 ** 22 + 12345; // above Linux's default pid_max (2^22): no such process
    const stale = `.download~${host}~${dead}~00112233aabb.tmp`;
    const live = `.download~${host}~${process.pid}~00112233aabb.tmp`;
    const remote = `.download~another-host~${dead}~00112233aabb.tmp`;
    for (const f of [stale, live, remote]) await fsp.writeFile(path.join(blobs, f), 'half a file');
    await resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint });
    const left = await fsp.readdir(blobs);
    assert.ok(!left.includes(stale), 'the dead writer\'s partial download is gone');
    assert.ok(left.includes(live) && left.includes(remote), 'a live writer\'s and another host\'s are kept');
    assert.equal(left.filter((f) => f.endsWith('.tmp')).length, 2, 'the download itself left no temporary file');
  });

  it('a malformed api answer is a FormatError naming the repository', async () => {
    const cacheDir = path.join(tmp, 'cache-garbage');
    await assert.rejects(resolveModelPath('tiny-org/garbage', { cacheDir, endpoint }), (e: unknown) => e instanceof FormatError && /tiny-org\/garbage \(revision main\): api\/models: .*not JSON/.test((e as Error).message));
    await assert.rejects(resolveModelPath('tiny-org/nosha', { cacheDir, endpoint }), (e: unknown) => e instanceof FormatError && /tiny-org\/nosha.*sha/.test((e as Error).message));
  });

  it('bytes that do not match the announced sha256 are refused and not kept', async () => {
    const cacheDir = path.join(tmp, 'cache-badsha');
    await assert.rejects(
      resolveModelPath('tiny-org/badsha', { cacheDir, endpoint }),
      (e: unknown) => e instanceof ResolveError && /model\.safetensors: downloaded bytes do not match the hub's sha256/.test((e as Error).message),
    );
    const blobs = await fsp.readdir(path.join(cacheDir, 'models--tiny-org--badsha', 'blobs'));
    assert.deepEqual(blobs, [gitSha1(cfgMain)]);
  });

  it('a stalled download times out with a ResolveError and leaves no blob', async () => {
    const cacheDir = path.join(tmp, 'cache-stall');
    const t0 = Date.now();
    await assert.rejects(
      resolveModelPath('tiny-org/stall', { cacheDir, endpoint, timeoutMs: 300 }),
      (e: unknown) => e instanceof ResolveError && /model\.safetensors: no data from http:\/\/127\.0\.0\.1:\d+ for 300 ms \(after 10 bytes\)/.test((e as Error).message),
    );
    assert.ok(Date.now() - t0 < 5000);
    assert.deepEqual(await fsp.readdir(path.join(cacheDir, 'models--tiny-org--stall', 'blobs')), [gitSha1(cfgMain)]);
  });

  it('offline without a cache: ResolveError saying it is not cached, and no request', async () => {
    const cacheDir = path.join(tmp, 'cache6');
    await assert.rejects(
      resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint, allowNetwork: false }),
      (e: unknown) => e instanceof ResolveError && /tiny-org\/tiny-model \(revision main\): not cached.*allowNetwork/.test((e as Error).message),
    );
    process.env.HF_HUB_OFFLINE = '1';
    try {
      await assert.rejects(resolveModelPath('tiny-org/tiny-model', { cacheDir, endpoint }), /not cached.*HF_HUB_OFFLINE/);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    assert.equal(requests.length, 0);
  });

  it('loadModel from a hub id gives the same model as from the local folder', async () => {
    const cacheDir = path.join(tmp, 'cache-e2e');
    const fx = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'reference', 'gpt2-tiny');
    const before = tf.memory().numTensors;
    const a = await loadModel('fixtures/gpt2-tiny', { cacheDir, endpoint });
    const b = await loadModel(fx);
    assert.ok(requests.some((r) => r.startsWith('GET /fixtures/gpt2-tiny/resolve/')));
    const toks = [[0, 5, 17, 42, 96, 3]];
    const la = await a.forward(toks);
    const lb = await b.forward(toks);
    assert.deepEqual(la.shape, [1, 6, 97]);
    assert.deepEqual(Array.from(await la.data()), Array.from(await lb.data()));
    tf.dispose([la, lb]);
    a.dispose();
    b.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('bad ids and unreachable endpoints are ResolveErrors', async () => {
    await assert.rejects(resolveModelPath('bad--id/x', { allowNetwork: false }), ResolveError);
    // port 9 on loopback (discard) is closed here: a connection error, not a hang
    // and the message says how to work without network
    await assert.rejects(resolveModelPath('tiny-org/x', { cacheDir: path.join(tmp, 'cache7'), endpoint: 'http://127.0.0.1:9' }), (e: unknown) =>
      e instanceof ResolveError && /cannot reach http:\/\/127\.0\.0\.1:9: .*to work offline, pass a local model folder, or put the model in the HF cache \(HF_HUB_CACHE, or HF_HOME\/hub.*set HF_HUB_OFFLINE=1/.test((e as Error).message));
  });
});
