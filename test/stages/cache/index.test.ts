// The ordinal index and what replay builds on it: the per-index epoch permutation, opening without reading every
// key, unions of shard caches, and the index's life cycle (stale, missing, rebuilt under a reader, verified).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { open } from 'lmdb';
import { describe, expect, it, vi } from 'vitest';
import type { NormalizedImage } from '../../../schemas/records.js';
import { random } from '../../../pipeline/core/random.js';
import { CACHE_SCHEMA_VERSION, CacheError, CacheStore, encodeRecord } from '../../../stages/cache/store.js';
import { CacheDataset, replay } from '../../../stages/cache/replay.js';
import { BitSelect, MergeMap } from '../../../stages/cache/union.js';
import { compareRecordKeys } from '../../../stages/cache/ordinal-index.js';
import { indexCache, verifyCache } from '../../../stages/cache/verify.js';
import { cli } from '../../shared.js';
import { digestImages, tempDir } from './data.js';

// Every database the store opens counts its reads while `reads.on` (see countReads): lmdb's methods live on a class
// made per environment, so they are wrapped where the store opens its databases.
const reads = vi.hoisted(() => ({ on: false, n: 0 }));
vi.mock('lmdb', async (importOriginal) => {
  const lmdb = await importOriginal<typeof import('lmdb')>();
  const wrapped = new WeakSet<object>();
  const count = (db: object) => {
    const proto = Object.getPrototypeOf(db) as Record<string, (...a: unknown[]) => unknown>;
    if (wrapped.has(proto)) return;
    wrapped.add(proto);
    for (const m of ['get', 'getBinaryFast', 'getBinary']) {
      const f = proto[m];
      proto[m] = function (this: unknown, ...a: unknown[]) {
        if (reads.on) reads.n++;
        return f.apply(this, a);
      };
    }
    for (const m of ['getRange', 'getKeys']) {
      const f = proto[m];
      proto[m] = function (this: unknown, ...a: unknown[]) {
        const inner = f.apply(this, a) as Iterable<unknown>;
        if (!reads.on) return inner;
        return {
          *[Symbol.iterator]() {
            for (const x of inner) {
              reads.n++;
              yield x;
            }
          },
        };
      };
    }
  };
  const open = ((...args: Parameters<typeof lmdb.open>) => {
    const env = lmdb.open(...args);
    const openDB = env.openDB.bind(env);
    env.openDB = ((...a: Parameters<typeof openDB>) => {
      const db = openDB(...a);
      if (db) count(db);
      return db;
    }) as typeof env.openDB;
    return env;
  }) as typeof lmdb.open;
  return { ...lmdb, open };
});

const shuffle = (n: number, seed = 1, epoch = 0) => random(seed).stream({ epoch, purpose: 'replay-order' }).indexShuffle(n);

describe('epoch permutation (IndexShuffle)', () => {
  it('is a bijection of [0, n) for powers of two and for sizes that are not', () => {
    for (const n of [0, 1, 2, 3, 5, 7, 8, 100, 1000, 1024, 4097, 65537, 100_003]) {
      const p = shuffle(n, n);
      const seen = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = p.at(i);
        expect(Number.isInteger(v) && v >= 0 && v < n).toBe(true);
        seen[v]++;
      }
      expect(seen.every((c) => c === 1)).toBe(true);
      expect([...p]).toHaveLength(n);
    }
  });

  it('is a pure function of (seed, epoch, n), differs across epochs and seeds, and refuses positions out of range', () => {
    const a = [...shuffle(5000, 7, 3)];
    expect([...shuffle(5000, 7, 3)]).toEqual(a);
    expect([...shuffle(5000, 7, 4)]).not.toEqual(a);
    expect([...shuffle(5000, 8, 3)]).not.toEqual(a);
    expect(() => shuffle(10).at(10)).toThrow(RangeError);
    expect(() => shuffle(10).at(-1)).toThrow(RangeError);
    expect(() => shuffle(10).at(1.5)).toThrow(RangeError);
  });

  it('scatters: few fixed points, displacement like a uniform permutation, neighbours not kept together', () => {
    const n = 20_000;
    for (const epoch of [0, 1, 2]) {
      const p = shuffle(n, 11, epoch);
      let fixed = 0, displacement = 0, adjacent = 0;
      for (let i = 0; i < n; i++) {
        const v = p.at(i);
        if (v === i) fixed++;
        displacement += Math.abs(v - i);
        if (i > 0 && Math.abs(v - p.at(i - 1)) === 1) adjacent++;
      }
      // A uniform permutation: 1 fixed point and mean |p(i) - i| = n/3 expected; adjacent pairs about 2/n of them.
      expect(fixed).toBeLessThan(10);
      expect(Math.abs(displacement / n / n - 1 / 3)).toBeLessThan(0.01);
      expect(adjacent).toBeLessThan(20);
    }
    // Where element 0 lands, over many seeds: spread over the whole range, not stuck near its start.
    const at = Array.from({ length: 400 }, (_, s) => [...shuffle(1000, s)].indexOf(0));
    expect(Math.min(...at)).toBeLessThan(50);
    expect(Math.max(...at)).toBeGreaterThan(950);
    expect(Math.abs(at.reduce((x, y) => x + y, 0) / at.length - 500)).toBeLessThan(50);
  });
});

describe('rank spaces', () => {
  it('a merge map finds the same (cache, ordinal) as a merge of the key lists, duplicates read from the first cache', () => {
    const s = random(3).stream({ purpose: 'merge' });
    const key = (i: number) => Buffer.from(`v3/p/${String(i).padStart(6, '0')}#e/000000`);
    // 5 caches of sorted keys drawn from one pool, so some keys are in several caches.
    const pool = Array.from({ length: 3000 }, (_, i) => key(i));
    const caches = Array.from({ length: 5 }, () => pool.filter(() => s.bernoulli(0.3)));
    const damaged = (c: number, reason: string): never => {
      throw new Error(`cache ${c}: ${reason}`);
    };
    const map = MergeMap.build(caches.map((c) => c), caches.map((c) => c.length), damaged);
    const expected: Array<[number, number]> = [];
    const seen = new Set<string>();
    const merged = caches.flatMap((c, ci) => c.map((k, o) => ({ k, ci, o }))).sort((x, y) => compareRecordKeys(x.k, y.k) || x.ci - y.ci);
    for (const m of merged) {
      if (seen.has(m.k.toString())) continue;
      seen.add(m.k.toString());
      expected.push([m.ci, m.o]);
    }
    expect(map.size).toBe(expected.length);
    for (let r = 0; r < map.size; r++) {
      const at = map.locate(r);
      expect([Math.floor(at / 2 ** 32), at % 2 ** 32]).toEqual(expected[r]);
    }
    expect(() => MergeMap.build([[pool[2], pool[1]]], [2], damaged)).toThrow(/cache 0: its index is out of order/);
    expect(() => MergeMap.build([[pool[1]]], [2], damaged)).toThrow(/cache 0: its index ends after 1 of 2/);
  });

  it('a bitmap selects the i-th kept position', () => {
    const s = random(4).stream({ purpose: 'bits' });
    const keep = Array.from({ length: 5000 }, (_, i) => i % 997 === 0 || s.bernoulli(0.1));
    const bits = BitSelect.build(keep.length, (i) => keep[i]);
    const positions = keep.flatMap((k, i) => (k ? [i] : []));
    expect(bits.size).toBe(positions.length);
    positions.forEach((p, i) => expect(bits.select(i)).toBe(p));
  });

  it('orders record keys by source, then frame number (not by bytes)', () => {
    const k = (s: string) => Buffer.from(s);
    expect(compareRecordKeys(k('v3/p/a#x/1/000000'), k('v3/p/a#x/1-b/000000'))).toBeLessThan(0); // markers' order
    expect(compareRecordKeys(k('v3/p/a/999999'), k('v3/p/a/1000000'))).toBeLessThan(0);
    expect(compareRecordKeys(k('v3/p/a/000002'), k('v3/p/a/000002'))).toBe(0);
  });
});

// ---- caches written directly through the store --------------------------------------------------------------------

interface Source {
  content: string;
  frames: number;
  split?: 'train' | 'val' | 'test';
}

const PREP = 'prepI';

function image(source: Source, frame: number): NormalizedImage {
  const data = new Float32Array(16);
  for (let i = 0; i < data.length; i++) data[i] = ((source.content.charCodeAt(0) + frame * 3 + i) % 17) / 17;
  const sourceId = `src/${source.content}`;
  return { id: `${sourceId}#${frame}`, sourceId, frame, modality: 'OT', height: 4, width: 4, channels: 1, data, spacing: null, normalization: PREP, ...(source.split ? { split: source.split } : {}) };
}

/** Commits `sources` (through the store's writer, like ingest) and, unless told not to, builds the index. */
async function writeCache(dir: string, sources: Source[], opts: { index?: boolean; markSplit?: boolean } = {}): Promise<string> {
  const store = CacheStore.open(dir);
  for (const s of sources) {
    const frames = Array.from({ length: s.frames }, (_, f) => f);
    const marker = { id: `src/${s.content}`, file: `src/${s.content}`, frames, bytes: 1, ...(opts.markSplit === false ? {} : { split: s.split ?? 'none' }) };
    await store.commitSource(PREP, s.content, marker as never, frames, frames.map((f) => encodeRecord(image(s, f))), { schemaVersion: CACHE_SCHEMA_VERSION, config: null });
  }
  if (opts.index !== false) await store.buildIndex(PREP);
  await store.close();
  return dir;
}

const sources = (n: number, seed = 5): Source[] => {
  const s = random(seed).stream({ purpose: 'sources' });
  const splits = ['train', 'train', 'train', 'val', 'test', undefined] as const;
  return Array.from({ length: n }, (_, i) => ({ content: `${s.nextUint32().toString(16).padStart(8, '0')}${i}`, frames: 1 + (i % 3), split: splits[s.int(splits.length)] }));
};

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Counts the entries LMDB hands out while `fn` runs: each get, and each entry of getRange and getKeys. */
function countReads<T>(fn: () => T): { result: T; reads: number } {
  reads.on = true;
  reads.n = 0;
  try {
    return { result: fn(), reads: reads.n };
  } finally {
    reads.on = false;
  }
}

describe('opening a cache', () => {
  it('reads a few entries, not every key, and replays every record once', async () => {
    const all = sources(1500);
    const cache = await writeCache(path.join(tempDir(), 'c'), all);
    const records = all.reduce((n, s) => n + s.frames, 0);
    const { result: dataset, reads } = countReads(() => CacheDataset.open([cache]));
    try {
      expect(dataset.size).toBe(records);
      // Records and keys number in the thousands; opening reads meta entries and the list of preparations.
      expect(reads).toBeLessThan(20);
      // The counter does see reads: listing the done markers, as opening did before the index, reads one per source.
      const store = CacheStore.open(cache, { readOnly: true });
      expect(countReads(() => [...store.markers(PREP)]).reads).toBeGreaterThanOrEqual(all.length);
      await store.close();
      const seen = await collect(dataset.epoch({ seed: 2, epoch: 0 }));
      expect(new Set(seen.map((im) => im.id)).size).toBe(records);
      // Split groups are chosen from the index alone.
      const train = CacheDataset.open([cache], { splits: ['train'] });
      expect(train.size).toBe(all.filter((s) => s.split === 'train').reduce((n, s) => n + s.frames, 0));
      expect((await collect(train.epoch({ seed: 2, epoch: 0 }))).every((im) => im.split === 'train')).toBe(true);
      await train.close();
    } finally {
      await dataset.close();
    }
  });
});

describe('shard caches', () => {
  it('replay as their union: every record exactly once per epoch, in the order of the single cache they partition', async () => {
    const dir = tempDir();
    const all = sources(600, 9);
    const single = await writeCache(path.join(dir, 'single'), all);
    // Three shards by a hash of the content, plus two sources written to two shards (read once, from the first).
    const shards = [0, 1, 2].map((i) => all.filter((s) => parseInt(s.content.slice(0, 8), 16) % 3 === i));
    shards[0].push(shards[1][0]);
    shards[2].push(shards[0][3]);
    const caches = await Promise.all(shards.map((s, i) => writeCache(path.join(dir, `shard-${i}`), s)));
    const records = all.reduce((n, s) => n + s.frames, 0);
    for (const epoch of [0, 1]) {
      const union = await collect(replay({ caches, seed: 4, epoch }));
      expect(union).toHaveLength(records);
      expect(new Set(union.map((im) => im.id)).size).toBe(records);
      expect(digestImages(union)).toBe(digestImages(await collect(replay({ caches: [single], seed: 4, epoch }))));
      expect(digestImages(await collect(replay({ caches, seed: 4, epoch, readers: 2 })))).toBe(digestImages(union));
    }
    const a = await collect(replay({ caches, seed: 4, epoch: 0, splits: ['val', 'none'] }));
    expect(a.map((im) => im.id)).toEqual((await collect(replay({ caches: [single], seed: 4, epoch: 0, splits: ['none', 'val'] }))).map((im) => im.id));
    expect(a.every((im) => im.split === 'val' || im.split === undefined)).toBe(true);
    // A header filter over the union keeps the same records as over the single cache.
    const twoFrames = (caches_: string[]) => CacheDataset.open(caches_, { filter: (h) => h.frame === 1 });
    const [u, s1] = [twoFrames(caches), twoFrames([single])];
    expect(u.size).toBe(s1.size);
    expect(Array.from({ length: u.size }, (_, i) => u.get(i).id)).toEqual(Array.from({ length: s1.size }, (_, i) => s1.get(i).id));
    await Promise.all([u.close(), s1.close()]);
  });
});

describe('index life cycle', () => {
  it('an index out of date, or missing, is refused with the way to rebuild it; indexing makes the cache replay again', async () => {
    const dir = tempDir();
    const cache = await writeCache(path.join(dir, 'c'), sources(40));
    // A source committed after indexing (an ingest killed before it indexed): the index no longer lists every record.
    const store = CacheStore.open(cache);
    const late: Source = { content: 'ffff0000late', frames: 2, split: 'train' };
    await store.commitSource(PREP, late.content, { id: 'src/late', file: 'src/late', frames: [0, 1], bytes: 1, split: 'train' }, [0, 1], [encodeRecord(image(late, 0)), encodeRecord(image(late, 1))]);
    await store.close();
    expect(() => CacheDataset.open([cache])).toThrow(CacheError);
    expect(() => CacheDataset.open([cache])).toThrow(/out of date|generation/);
    expect(() => CacheDataset.open([cache])).toThrow(/medssl cache index/);
    const notes: string[] = [];
    expect(await verifyCache(cache, { onIndex: (p, reason) => notes.push(`${p}: ${reason}`) })).toMatchObject({ corrupt: 0 });
    expect(notes).toHaveLength(1);
    const [summary] = await indexCache(cache);
    expect(summary.preparation).toBe(PREP);
    expect(Object.values(summary.counts).reduce((a, b) => a + b, 0)).toBe(sources(40).reduce((n, s) => n + s.frames, 0) + 2);
    expect((await collect(replay({ caches: [cache], seed: 0, epoch: 0 }))).filter((im) => im.sourceId === 'src/ffff0000late')).toHaveLength(2);

    // A cache from before the index (markers without a split): missing, then built from the records' headers.
    const old = await writeCache(path.join(dir, 'old'), sources(30), { index: false, markSplit: false });
    expect(() => CacheDataset.open([old])).toThrow(/no index/);
    const r = spawnSync(process.execPath, [cli, 'cache', 'index', old, '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ preparation: PREP, counts: { train: expect.any(Number), val: expect.any(Number), test: expect.any(Number), none: expect.any(Number) } });
    const fresh = await writeCache(path.join(dir, 'fresh'), sources(30));
    expect(digestImages(await collect(replay({ caches: [old], seed: 3, epoch: 1 })))).toBe(digestImages(await collect(replay({ caches: [fresh], seed: 3, epoch: 1 }))));
    expect(await verifyCache(old)).toMatchObject({ corrupt: 0 });
  });

  it('an epoch that reads an index being rebuilt fails instead of mixing two indexes', async () => {
    const cache = await writeCache(path.join(tempDir(), 'c'), sources(100));
    const dataset = CacheDataset.open([cache]);
    try {
      const epoch = dataset.epoch({ seed: 1, epoch: 0 });
      await epoch.next();
      // The first rebuild writes the other slot: this dataset's index is intact. The second writes its slot.
      execFileSync(process.execPath, [cli, 'cache', 'index', cache], { stdio: 'pipe' });
      expect(() => dataset.assertIntact()).not.toThrow();
      execFileSync(process.execPath, [cli, 'cache', 'index', cache], { stdio: 'pipe' });
      await expect(collect(epoch)).rejects.toThrow(/rebuilt while this dataset read it/);
    } finally {
      await dataset.close();
    }
    // A dataset opened now reads the new index.
    expect(await collect(replay({ caches: [cache], seed: 1, epoch: 0 }))).toHaveLength(sources(100).reduce((n, s) => n + s.frames, 0));
  });

  it('verify reports an index entry that names the wrong record, and replay then reads what the index says', async () => {
    const cache = await writeCache(path.join(tempDir(), 'c'), sources(20));
    const env = open({ path: cache, maxDbs: 8 });
    const index = env.openDB<Buffer, Buffer>({ name: 'index', encoding: 'binary', keyEncoding: 'binary' });
    const [first, second] = [...index.getRange({ limit: 2 })];
    await index.put(first.key, second.value);
    await env.close();
    const problems: string[] = [];
    const report = await verifyCache(cache, { onCorrupt: (key, reason) => problems.push(`${key}: ${reason}`) });
    expect(report.corrupt).toBe(1);
    expect(problems[0]).toMatch(/^index prepI\/\w+\/0: lists .* where the markers give/);
  });
});

describe('damaged caches', () => {
  it('a truncated data file is a CacheError naming the file and the reason, never a crash', async () => {
    const dir = tempDir();
    const cache = await writeCache(path.join(dir, 'c'), sources(300));
    const file = path.join(cache, 'data.mdb');
    const size = fs.statSync(file).size;
    for (const cut of [Math.floor(size / 2 / 4096) * 4096, size - 4096 * 8, 5000, 4096, 0]) {
      const copy = path.join(dir, `cut-${cut}`);
      fs.mkdirSync(copy);
      fs.writeFileSync(path.join(copy, 'data.mdb'), fs.readFileSync(file).subarray(0, cut));
      expect(() => CacheDataset.open([copy])).toThrow(CacheError);
      expect(() => CacheDataset.open([copy])).toThrow(`${copy}/data.mdb: `);
      // The command line too, in a process of its own: a SIGBUS would show as a signal, not an exit code.
      const r = spawnSync(process.execPath, [cli, 'cache', 'verify', copy], { encoding: 'utf8' });
      expect(r.signal).toBeNull();
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/data\.mdb: (truncated|empty)/);
    }
    // Garbage in place of the file.
    const junk = path.join(dir, 'junk');
    fs.mkdirSync(junk);
    fs.writeFileSync(path.join(junk, 'data.mdb'), Buffer.alloc(64 * 1024, 7));
    expect(() => CacheDataset.open([junk])).toThrow(/not an LMDB data file/);
  });
});
