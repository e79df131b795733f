import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { describe, expect, it } from 'vitest';
import { startWorker, workerEntry } from '../../pipeline/core/workers.js';
import draws, { type DrawKey } from './random.worker.js';

const keys: DrawKey[] = [['img-1', 0, 'crop'], ['img-2', 3, 'flip'], ['img-3', 1, 'intensity']];

const reply = (w: Worker) => new Promise<unknown>((resolve, reject) => {
  w.once('message', resolve);
  w.once('error', reject);
});

async function runBoth(launcher: { startWorker: typeof startWorker; workerEntry: typeof workerEntry }, from: string) {
  const w = launcher.startWorker('./random.worker.js', from, { workerData: { keys } });
  try {
    expect(await reply(w)).toEqual(draws(keys));
  } finally {
    await w.terminate();
  }
  const pool = new Piscina({ ...launcher.workerEntry('./random.worker.js', from), minThreads: 1, maxThreads: 1 });
  try {
    expect(await pool.run(keys)).toEqual(draws(keys));
  } finally {
    await pool.destroy();
  }
}

describe('worker launcher', () => {
  it('runs a worker module from the TypeScript sources, as a thread and in a piscina pool', async () => {
    const entry = workerEntry('./random.worker.js', import.meta.url);
    expect(fileURLToPath(new URL('../../pipeline/core/ts-worker.mjs', import.meta.url))).toBe(entry.filename);
    expect(entry.argv).toEqual([new URL('./random.worker.ts', import.meta.url).href]);
    await runBoth({ startWorker, workerEntry }, import.meta.url);
  });

  // Needs the compiled dist/ (`npm run build`, which `npm test` runs first).
  it('runs the compiled .js from dist/ as it is, with no TypeScript loader', async () => {
    const dist = new URL('../../dist/', import.meta.url);
    const launcher = (await import(new URL('pipeline/core/workers.js', dist).href)) as typeof import('../../pipeline/core/workers.js');
    const from = new URL('test/pipeline/workers.test.js', dist).href;
    expect(launcher.workerEntry('./random.worker.js', from)).toEqual({ filename: fileURLToPath(new URL('test/pipeline/random.worker.js', dist)), argv: [] });
    await runBoth(launcher, from);
  });

  it('reports a worker module that fails to load as an error, not a hang', async () => {
    const w = startWorker('./missing.worker.js', import.meta.url);
    await expect(reply(w)).rejects.toThrow(/missing\.worker/);
  });
});
