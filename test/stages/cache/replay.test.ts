import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Gate, pull, settle } from '../../../pipeline/core/flow.js';
import { loadConfig } from '../../../pipeline/core/config.js';
import { listInputs, preparationHash } from '../../../pipeline/compose/prepare.js';
import { preparation, prepareItem } from '../../support/prepare.js';
import { ingest } from '../../../stages/cache/ingest.js';
import { CacheStore } from '../../../stages/cache/store.js';
import { CacheDataset, replay, replay$ } from '../../../stages/cache/replay.js';
import type { NormalizedImage } from '../../../schemas/records.js';
import { digestImages, tempDir, writePneumoniaNpy, writeSyntheticNpy } from './data.js';

let cache: string;
const N = 300 + 6 * 3;

async function epoch(opts: { seed: number; epoch: number; readers?: number }): Promise<NormalizedImage[]> {
  const out: NormalizedImage[] = [];
  for await (const im of replay({ caches: [cache], ...opts })) out.push(im);
  return out;
}

beforeAll(async () => {
  const dir = tempDir();
  writePneumoniaNpy(dir, 300);
  writeSyntheticNpy(dir, 6, 96, 3);
  const config = loadConfig(undefined);
  cache = path.join(dir, 'cache');
  const store = CacheStore.open(cache);
  const s = await ingest({ sources: listInputs([dir]), prepare: preparation(config), store, normalizationHash: preparationHash(config), compression: true });
  await store.close();
  expect(s.images).toBe(N);
});

describe('replay', () => {
  it('is bit-identical across runs and reader counts', async () => {
    const one = await epoch({ seed: 5, epoch: 3 });
    expect(one).toHaveLength(N);
    const d = digestImages(one);
    expect(digestImages(await epoch({ seed: 5, epoch: 3 }))).toBe(d);
    for (const readers of [2, 3]) {
      const many = await epoch({ seed: 5, epoch: 3, readers });
      expect(many.map((im) => im.id)).toEqual(one.map((im) => im.id));
      expect(digestImages(many)).toBe(d);
    }
  });

  it('draws a new order each epoch and seed over the same records, and returns the images that were ingested', async () => {
    const a = await epoch({ seed: 5, epoch: 0 });
    const b = await epoch({ seed: 5, epoch: 1 });
    const c = await epoch({ seed: 6, epoch: 0 });
    expect(b.map((x) => x.id)).not.toEqual(a.map((x) => x.id));
    expect(c.map((x) => x.id)).not.toEqual(a.map((x) => x.id));
    const byId = (xs: NormalizedImage[]) => digestImages([...xs].sort((p, q) => p.id.localeCompare(q.id)));
    expect(byId(b)).toBe(byId(a));
    expect(byId(c)).toBe(byId(a));
    // The order is the permutation the dataset publishes, and records equal a direct prepare of their source.
    const dataset = CacheDataset.open([cache]);
    const order = dataset.order(5, 0);
    expect(a.map((x) => x.id)).toEqual(Array.from(order, (i) => dataset.get(i).id));
    await dataset.close();
    const config = loadConfig(undefined);
    const stack = a.find((x) => x.sourceId.startsWith('synthetic/') && x.frame === 2)!;
    const fresh: NormalizedImage[] = await prepareItem(config, { id: stack.sourceId, path: path.join(path.dirname(cache), stack.sourceId) });
    expect(Buffer.from(stack.data.buffer).equals(Buffer.from(fresh[2].data.buffer))).toBe(true);
    expect(stack).toMatchObject({ height: 96, width: 96, channels: 1, modality: 'OT' });
  });

  it('keeps its reader threads across epochs, also after an epoch left early', async () => {
    const dataset = CacheDataset.open([cache]);
    try {
      const seen: NormalizedImage[] = [];
      for await (const im of dataset.epoch({ seed: 5, epoch: 0, readers: 2, chunk: 7 })) {
        seen.push(im);
        if (seen.length === 40) break;
      }
      expect(digestImages(seen)).toBe(digestImages((await epoch({ seed: 5, epoch: 0 })).slice(0, 40)));
      for (const e of [1, 2]) {
        const all: NormalizedImage[] = [];
        for await (const im of dataset.epoch({ seed: 5, epoch: e, readers: 2 })) all.push(im);
        expect(digestImages(all)).toBe(digestImages(await epoch({ seed: 5, epoch: e })));
      }
    } finally {
      await dataset.close();
    }
  });

  it('filters by header and gives random access', async () => {
    const dataset = CacheDataset.open([cache], { filter: (h) => h.height === 96 });
    expect(dataset.size).toBe(18);
    const im = dataset.get(4);
    expect(im.height).toBe(96);
    expect(im.data).toBeInstanceOf(Float32Array);
    // Each image owns its array: reading another record does not change it (lmdb's fast read buffer is reused).
    const copy = Float32Array.from(im.data);
    dataset.get(5);
    dataset.get(0);
    expect(im.data).toEqual(copy);
    await dataset.close();
  });

  it('feeds a gated pipeline with backpressure', async () => {
    const gate = new Gate({ window: 8 });
    const seen: string[] = [];
    for await (const im of pull(gate.source(replay({ caches: [cache], seed: 5, epoch: 3 })).pipe(settle(gate)), { gate, highWaterMark: 2 })) {
      seen.push(im.id);
    }
    expect(seen).toEqual((await epoch({ seed: 5, epoch: 3 })).map((x) => x.id));
    const viaObservable: string[] = [];
    await new Promise<void>((resolve, reject) => replay$({ caches: [cache], seed: 5, epoch: 3, readers: 2 }).subscribe({ next: (x) => viaObservable.push(x.id), error: reject, complete: resolve }));
    expect(viaObservable).toEqual(seen);
  });
});
