import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../pipeline/core/config.js';
import { listInputs, preparationHash } from '../../../pipeline/compose/prepare.js';
import { preparation, preparing } from '../../support/prepare.js';
import { ingest, parseShard, shardOf } from '../../../stages/cache/ingest.js';
import { CACHE_SCHEMA_VERSION, CacheStore } from '../../../stages/cache/store.js';
import { replay } from '../../../stages/cache/replay.js';
import { verifyCache } from '../../../stages/cache/verify.js';
import { FailureLog } from '../../../pipeline/core/failures.js';
import type { SourceItem } from '../../../schemas/records.js';
import { cli, projectRoot, sample } from '../../shared.js';
import { digestImages, snapshot, tempDir, writePneumoniaNpy, writeSyntheticNpy } from './data.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const runCli = (args: string[]) => execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

// One input folder for the process-level tests: 600 real PneumoniaMNIST images as .npy files, the whole
// PneumoniaMNIST archive (5030 entries), and 24 synthetic 4-slice 256x256 stacks (1 MiB per source).
let dir: string;
let input: string;
let reference: string;
let expected: Awaited<ReturnType<typeof snapshot>>;
const TOTAL = 600 + 5030 + 24 * 4;

beforeAll(() => {
  dir = tempDir();
  input = path.join(dir, 'input');
  writePneumoniaNpy(input, 600);
  writeSyntheticNpy(input, 24, 256, 4);
  fs.copyFileSync(sample('medmnist/pneumoniamnist.npz'), path.join(input, 'pneumoniamnist.npz'));
  reference = path.join(dir, 'reference');
  const summary = JSON.parse(runCli(['ingest', input, '--cache', reference, '--json']));
  expect(summary).toMatchObject({ images: TOTAL, failures: 0, skipped: 0 });
  return snapshot(reference).then((s) => { expected = s; });
});

describe('crash safety', () => {
  it('kill -9 at several moments, then a rerun, gives exactly the records of an uninterrupted ingest', async () => {
    expect(expected.records).toHaveLength(TOTAL);
    const cache = path.join(dir, 'killed');
    const dataFile = path.join(cache, 'data.mdb');
    // Kill soon after start (before or during the first commits), then whenever the file has grown past a mark.
    const moments: Array<{ afterMs?: number; bytes?: number; workers: number }> = [
      { afterMs: 400, workers: 1 }, { bytes: 3e6, workers: 2 }, { bytes: 9e6, workers: 1 }, { bytes: 16e6, workers: 2 }, { bytes: 24e6, workers: 1 },
    ];
    const partial: number[] = [];
    for (const m of moments) {
      const child = spawn(process.execPath, [cli, 'ingest', input, '--cache', cache, '--workers', String(m.workers)], { stdio: 'ignore' });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      let finished = false;
      void exited.then(() => { finished = true; });
      const t0 = Date.now();
      while (!finished) {
        const size = fs.existsSync(dataFile) ? fs.statSync(dataFile).size : 0;
        if ((m.afterMs !== undefined && Date.now() - t0 >= m.afterMs) || (m.bytes !== undefined && size >= m.bytes)) {
          child.kill('SIGKILL');
          break;
        }
        await sleep(2);
      }
      await exited;
      if (!fs.existsSync(dataFile)) continue;
      // Whatever the moment, the cache is sound: every record checks, every marker's frames are all there.
      const report = await verifyCache(cache);
      expect(report.corrupt).toBe(0);
      const now = await snapshot(cache);
      // Everything present is exactly what the uninterrupted ingest wrote.
      for (const r of now.records) expect(expected.records).toContain(r);
      for (const mk of now.markers) expect(expected.markers).toContain(mk);
      partial.push(report.records);
    }
    // The kills really landed mid-ingest (otherwise this test would prove nothing).
    expect(partial.filter((n) => n > 0 && n < TOTAL).length).toBeGreaterThanOrEqual(2);

    const rerun = JSON.parse(runCli(['ingest', input, '--cache', cache, '--json']));
    expect(rerun.skipped).toBeGreaterThan(0);
    expect(rerun.images).toBe(TOTAL - Math.max(...partial));
    expect(JSON.parse(runCli(['cache', 'verify', cache, '--json']))).toEqual({ records: TOTAL, bytes: expect.any(Number), corrupt: 0, failures: 0, schemaVersion: CACHE_SCHEMA_VERSION });
    expect(await snapshot(cache)).toEqual(expected);
  });
});

describe('sharding', () => {
  it('3 shard processes write disjoint caches whose union is the single-process ingest, and replays like it', async () => {
    const caches = [0, 1, 2].map((i) => path.join(dir, `shard-${i}`));
    await Promise.all(caches.map((cache, i) => new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [cli, 'ingest', input, '--cache', cache, '--shard', `${i}/3`], { stdio: 'ignore' });
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`shard ${i} exited with ${code}`))));
    })));
    const shards = await Promise.all(caches.map(snapshot));
    for (const s of shards) expect(s.records.length).toBeGreaterThan(TOTAL / 6);
    const union = shards.flatMap((s) => s.records).sort();
    expect(union).toEqual(expected.records); // disjoint (no duplicates) and complete
    expect(shards.flatMap((s) => s.markers).sort()).toEqual(expected.markers);

    const epoch = async (c: string[]) => {
      const out = [];
      for await (const im of replay({ caches: c, seed: 11, epoch: 2 })) out.push(im);
      return out;
    };
    const single = await epoch([reference]);
    expect(single).toHaveLength(TOTAL);
    expect(digestImages(await epoch(caches))).toBe(digestImages(single));
  });

  it('the Slurm array script, run as 3 tasks, leaves shard caches whose union is the single ingest', async () => {
    // A `medssl` on PATH that runs this build, and the script run as tasks 0, 1, 2 of a 3-task array.
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'medssl'), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`, { mode: 0o755 });
    const caches = path.join(dir, 'slurm-caches');
    const cfg = path.join(dir, 'default.yaml');
    fs.writeFileSync(cfg, '{}\n');
    const script = path.join(projectRoot, 'examples', 'cluster', 'slurm-array.sh');
    for (const task of [2, 0, 1]) {
      execFileSync('bash', [script, input, caches, cfg], {
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, SLURM_ARRAY_TASK_ID: String(task), MEDSSL_SHARDS: '3', TMPDIR: dir },
        stdio: 'pipe',
      });
    }
    expect(fs.readdirSync(caches).sort()).toEqual(['shard-0', 'shard-1', 'shard-2']);
    const union = (await Promise.all([0, 1, 2].map((i) => snapshot(path.join(caches, `shard-${i}`))))).flatMap((s) => s.records).sort();
    expect(union).toEqual(expected.records);
  });

  it('assigns sources to shards by a stable hash of their id', () => {
    expect(parseShard('2/5')).toEqual({ index: 2, count: 5 });
    for (const bad of ['5/5', '1', '-1/3', 'a/b', '0/0']) expect(() => parseShard(bad)).toThrow(RangeError);
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[shardOf(`ds/patient${i}/img.dcm`, 3)]++;
    for (const c of counts) expect(c).toBeGreaterThan(900);
    expect(shardOf('a/b.dcm', 7)).toBe(shardOf('a/b.dcm', 7));
  });
});

describe('cache keys', () => {
  it('a changed normalization config misses the cache; the original config still hits', async () => {
    // With a secret set, ingest has no public-key warning to print: stderr is the summary line alone.
    process.env.MEDSSL_PRIVACY_KEY ??= 'a test secret of at least 16 bytes';
    const small = path.join(dir, 'small');
    writePneumoniaNpy(small, 30);
    const cache = path.join(dir, 'configs');
    const cfg = path.join(dir, 'rgb.yaml');
    fs.writeFileSync(cfg, 'normalize:\n  channels: 3\n');
    // Not a terminal: no progress bar, one summary line on stderr.
    const quiet = spawnSync(process.execPath, [cli, 'ingest', small, '--cache', cache], { encoding: 'utf8' });
    expect(quiet.status).toBe(0);
    expect(quiet.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^ingest: 30 files \(0 already cached\), 30 images written, .* 0 failures, [\d.]+ s$/)]);
    expect(JSON.parse(runCli(['ingest', small, '--cache', cache, '--config', cfg, '--json']))).toMatchObject({ images: 30, skipped: 0 });
    expect(JSON.parse(runCli(['ingest', small, '--cache', cache, '--json']))).toMatchObject({ images: 0, skipped: 30 });
    expect(JSON.parse(runCli(['cache', 'verify', cache, '--json']))).toMatchObject({ records: 60, corrupt: 0 });

    const grey = preparationHash(loadConfig(undefined));
    const rgb = preparationHash(loadConfig(cfg));
    expect(grey).not.toBe(rgb);
    const first = async (normalization?: string) => {
      for await (const im of replay({ caches: [cache], seed: 0, epoch: 0, normalization })) return im;
      throw new Error('empty');
    };
    await expect(first()).rejects.toThrow(/2 preparations/);
    expect((await first(grey)).channels).toBe(1);
    expect((await first(rgb)).channels).toBe(3);
    expect((await first(rgb)).normalization).toBe(rgb);
  });

  it('remembers undecodable sources with their reason and does not retry them; retries transient failures', async () => {
    const folder = tempDir();
    const files = writePneumoniaNpy(folder, 3);
    fs.writeFileSync(files[1], fs.readFileSync(files[1]).subarray(0, 100)); // truncated .npy
    fs.writeFileSync(path.join(folder, 'broken.npz'), fs.readFileSync(sample('medmnist/pneumoniamnist.npz')).subarray(0, 5000)); // truncated archive
    const config = loadConfig(undefined);
    const items: SourceItem[] = [];
    for await (const item of listInputs([folder])) items.push(item);
    items.push({ id: 'missing.npy', path: path.join(folder, 'missing.npy') });
    let calls = 0;
    const real = preparation(config);
    const prepare: typeof real = (failures) => { calls++; return real(failures); };
    const store = CacheStore.open(path.join(folder, 'c'));
    const run = async () => {
      const failures = new FailureLog();
      const summary = await ingest({ sources: items, prepare, store, normalizationHash: preparationHash(config), failures });
      return { summary, failures: failures.records };
    };
    const a = await run();
    expect(calls).toBe(4);
    expect(a.summary).toMatchObject({ images: 2, failures: 3 });
    expect(a.failures.map((f) => f.code).sort()).toEqual(['not-found', 'truncated', 'wrong-format']);
    const b = await run();
    expect(calls).toBe(4); // nothing prepared again: the broken files are remembered, the good ones are cached
    expect(b.summary).toMatchObject({ images: 0, skipped: 4, failures: 3 });
    expect(b.failures.map((f) => f.code)).toEqual(['not-found']); // a missing file is looked for again
    await store.close();
    const stats = JSON.parse(runCli(['cache', 'stats', path.join(folder, 'c'), '--json']));
    expect(stats.failures).toEqual(expect.arrayContaining([expect.objectContaining({ file: files[1], code: 'truncated', reason: expect.stringContaining('.npy') })]));
    expect(stats.failures).toHaveLength(2);
    expect(JSON.parse(runCli(['cache', 'verify', path.join(folder, 'c'), '--json']))).toMatchObject({ records: 2, failures: 2, corrupt: 0 });
  });
});
