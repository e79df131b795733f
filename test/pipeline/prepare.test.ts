import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../pipeline/core/config.js';
import { listInputs, preparationHash, prepareImages, prepareThreads } from '../../pipeline/compose/prepare.js';
import { arrayFrames } from '../../stages/decode/decode.js';
import { minMax, toChannels } from '../../stages/normalize/intensity.js';
import { prepareItem } from '../support/prepare.js';
import { ingest } from '../../stages/cache/ingest.js';
import { CacheStore } from '../../stages/cache/store.js';
import { readNpz } from '../../stages/source/npy.js';
import { MedsslError } from '../../pipeline/core/failures.js';
import type { NormalizedImage, SourceItem } from '../../schemas/records.js';
import { sample } from '../shared.js';
import { snapshot, tempDir, writePneumoniaNpy, writeSyntheticNpy } from '../stages/cache/data.js';

describe('preparation of NumPy inputs', () => {
  it('lists every MedMNIST image with its split and label, and prepares it by the 8-bit rule (x / 255)', async () => {
    const npz = sample('medmnist/pneumoniamnist.npz');
    const arrays = readNpz(fs.readFileSync(npz));
    const items: SourceItem[] = [];
    for await (const item of listInputs([npz])) items.push(item);
    expect(items).toHaveLength(3882 + 524 + 624);
    const item = items.find((i) => i.entry === 'val/17')!;
    expect(item).toMatchObject({ id: 'pneumoniamnist.npz#val/17', split: 'val', label: [arrays.get('val_labels')!.data[17]] });
    const [image] = await prepareItem(loadConfig(undefined), item);
    const stored = arrays.get('val_images')!.data.subarray(17 * 784, 18 * 784);
    expect(image).toMatchObject({ id: 'pneumoniamnist.npz#val/17#0', height: 28, width: 28, channels: 1, split: 'val', normalization: preparationHash(loadConfig(undefined)) });
    for (let i = 0; i < 784; i++) expect(image.data[i]).toBeCloseTo(stored[i] / 255, 6);
  });

  it('cuts arrays into frames by shape and converts channels', () => {
    const arr = (shape: number[]) => ({ dtype: 'float32' as const, shape, data: new Float32Array(shape.reduce((a, d) => a * d, 1)), fortranOrder: false });
    expect(arrayFrames(arr([5, 7]), 'f').map((f) => [f.height, f.width, f.channels])).toEqual([[5, 7, 1]]);
    expect(arrayFrames(arr([5, 7, 3]), 'f').map((f) => [f.height, f.width, f.channels])).toEqual([[5, 7, 3]]);
    expect(arrayFrames(arr([4, 5, 7]), 'f')).toHaveLength(4);
    expect(arrayFrames(arr([4, 5, 7, 3]), 'f').map((f) => f.channels)).toEqual([3, 3, 3, 3]);
    expect(() => arrayFrames(arr([2, 2, 2, 2, 2]), 'f')).toThrow(MedsslError);
    expect(() => arrayFrames(arr([0, 3]), 'f')).toThrow(/empty/);
    expect(Array.from(minMax([3, 5, 7, NaN]))).toEqual([0, 0.5, 1, 0]);
    expect(Array.from(minMax([4, 4]))).toEqual([0, 0]);
    expect(Array.from(toChannels(new Float32Array([0.25, 0.5]), 1, 3))).toEqual([0.25, 0.25, 0.25, 0.5, 0.5, 0.5]);
    expect(Array.from(toChannels(new Float32Array([0.25, 0.5, 0.75]), 3, 1))).toEqual([0.5]);
  });

  it('prepares on worker threads exactly as on the calling thread', async () => {
    const dir = tempDir();
    writePneumoniaNpy(dir, 40);
    writeSyntheticNpy(dir, 3, 64, 2);
    const config = loadConfig(undefined);
    const ingestWith = async (cachePath: string, workers: number) => {
      const threads = workers > 1 ? await prepareThreads(config, workers) : undefined;
      const store = CacheStore.open(cachePath);
      try {
        return await ingest({ sources: listInputs([dir]), prepare: (failures) => prepareImages(config, { failures, threads }), store, normalizationHash: preparationHash(config), workers });
      } finally {
        await store.close();
        await threads?.close();
      }
    };
    expect((await ingestWith(path.join(dir, 'one'), 1)).images).toBe(46);
    expect((await ingestWith(path.join(dir, 'two'), 2)).images).toBe(46);
    expect(await snapshot(path.join(dir, 'two'))).toEqual(await snapshot(path.join(dir, 'one')));
  });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('one path: the chain a program wires is the chain ingest caches', () => {
  it('prepareImages over a gated stream gives exactly the records ingestInputs stores, keyed by preparationHash', async () => {
    const { lastValueFrom: last, toArray: all } = await import('rxjs');
    const { Gate, settle } = await import('../../pipeline/core/flow.js');
    const { FailureLog } = await import('../../pipeline/core/failures.js');
    const { ingestInputs } = await import('../../pipeline/compose/prepare.js');
    const { replay } = await import('../../stages/cache/replay.js');
    const dir = tempDir();
    writePneumoniaNpy(dir, 6);
    writeSyntheticNpy(dir, 2, 32, 3);
    fs.copyFileSync(path.resolve('fixtures/data/dicom/pydicom/CT_small.dcm'), path.join(dir, 'ct.dcm'));
    fs.copyFileSync(path.resolve('fixtures/data/dicom/pydicom/MR_truncated.dcm'), path.join(dir, 'broken.dcm'));
    const config = loadConfig(undefined);
    // As examples/custom-pipeline.ts wires it.
    const gate = new Gate({ window: 4 });
    const failures = new FailureLog(gate);
    const streamed = await last(gate.source(listInputs([dir])).pipe(prepareImages(config, { failures, gate }), settle(gate), all()));
    expect(failures.records.map((f) => [path.basename(f.file), f.stage])).toEqual([['broken.dcm', 'decode']]);
    // As `medssl ingest` runs it.
    const cache = path.join(dir, 'cache');
    const summary = await ingestInputs(config, [dir], cache);
    expect(summary).toMatchObject({ images: streamed.length, failures: 1 });
    const stored = new Map<string, NormalizedImage>();
    for await (const image of replay({ caches: [cache], seed: 0, epoch: 0, splits: ['train', 'val', 'test', 'none'] })) stored.set(image.id, image);
    expect([...stored.keys()].sort()).toEqual(streamed.map((i) => i.id).sort());
    for (const image of streamed) {
      const s = stored.get(image.id)!;
      expect(image.normalization).toBe(preparationHash(config));
      expect(s.normalization).toBe(image.normalization);
      expect([s.height, s.width, s.channels, s.modality]).toEqual([image.height, image.width, image.channels, image.modality]);
      expect(Buffer.from(s.data.buffer, s.data.byteOffset, s.data.byteLength).equals(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength))).toBe(true);
    }
  });
});
