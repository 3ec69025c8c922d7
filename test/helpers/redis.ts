// A redis-server child process on a free loopback port (tests), or the server TFLENS_TEST_REDIS names (CI).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

export interface TestRedis {
  url: string;
  /** The server process when this test started it (null for TFLENS_TEST_REDIS). */
  proc: ChildProcess | null;
  /** SIGKILL the server and start it again on the same port and folder (its AOF keeps the data when `persist`). */
  restart(downMs: number): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolve once the server answers PING (ioredis retries the connection meanwhile). */
export async function waitForRedis(url: string, timeoutMs = 10_000): Promise<void> {
  const c = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
  c.on('error', () => {}); // refused while the server starts
  const timer = setTimeout(() => c.disconnect(), timeoutMs);
  try {
    await c.ping();
  } finally {
    clearTimeout(timer);
    c.disconnect();
  }
}

/** Start redis-server on a free port; `persist`: append-only file fsynced on every write, so a SIGKILL loses nothing. */
export async function startRedis(opts: { persist: boolean }): Promise<TestRedis> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tflens-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--appendonly', opts.persist ? 'yes' : 'no', '--appendfsync', 'always', '--logfile', path.join(dir, 'redis.log')];
  let proc: ChildProcess = spawn('redis-server', args, { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}/0`;
  const exited = (p: ChildProcess) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r())));
  await waitForRedis(url);
  return {
    url,
    get proc() {
      return proc;
    },
    async restart(downMs) {
      proc.kill('SIGKILL');
      await exited(proc);
      await new Promise((r) => setTimeout(r, downMs));
      proc = spawn('redis-server', args, { stdio: 'ignore' });
      await waitForRedis(url);
    },
    async stop() {
      proc.kill('SIGTERM');
      await exited(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The server of TFLENS_TEST_REDIS when set, else one started here (no persistence). */
export async function testRedis(): Promise<TestRedis> {
  const url = process.env.TFLENS_TEST_REDIS;
  if (!url) return startRedis({ persist: false });
  await waitForRedis(url);
  return {
    url,
    proc: null,
    restart: () => Promise.reject(new Error('TFLENS_TEST_REDIS is not restarted by tests')),
    stop: async () => {},
  };
}
