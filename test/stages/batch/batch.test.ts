import { firstValueFrom, from, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { CropSet } from '../../../schemas/records.js';
import { toBatches } from '../../../stages/batch/batch.js';
import { CropBuffers } from '../../../stages/augment/buffers.js';

function set(i: number, modality = 'CT', epoch = 0, label?: number[]): CropSet {
  const crop = (size: number, kind: 'global' | 'local') => ({ kind, size, channels: 1, data: new Float32Array(size * size).fill(i), params: {} });
  return { id: `s${i}`, epoch, sample: i, modality, crops: [crop(4, 'global'), crop(2, 'local')], ...(label ? { label } : {}) };
}
const batches = (sets: CropSet[], opts: Parameters<typeof toBatches>[0]) => firstValueFrom(from(sets).pipe(toBatches(opts), toArray()));

describe('toBatches', () => {
  it('stacks crop v of every set into view v, with labels and a mask for unlabelled rows', async () => {
    const out = await batches([set(0, 'CT', 0, [1, 0]), set(1), set(2, 'CT', 0, [0, 1])], { batchSize: 3, numLabels: 2 });
    expect(out).toHaveLength(1);
    const [b] = out;
    expect(b.ids).toEqual(['s0', 's1', 's2']);
    expect(b.views.map((v) => [v.kind, v.size, v.data.length])).toEqual([['global', 4, 48], ['local', 2, 12]]);
    expect(Array.from(b.views[0].data.subarray(16, 32))).toEqual(Array(16).fill(1));
    expect(Array.from(b.views[1].data.subarray(8, 12))).toEqual([2, 2, 2, 2]);
    expect(Array.from(b.labels as Float32Array)).toEqual([1, 0, 0, 0, 0, 1]);
    expect(Array.from(b.labelMask as Uint8Array)).toEqual([1, 0, 1]);
  });

  it('numbers steps, keeps or drops the last partial batch, and never mixes epochs', async () => {
    const sets = [0, 1, 2, 3, 4].map((i) => set(i)).concat([5, 6].map((i) => set(i, 'CT', 1)));
    const keep = await batches(sets, { batchSize: 2 });
    expect(keep.map((b) => [b.epoch, b.step, b.ids.length])).toEqual([[0, 0, 2], [0, 1, 2], [0, 2, 1], [1, 3, 2]]);
    const drop = await batches(sets, { batchSize: 2, dropLast: true });
    expect(drop.map((b) => b.ids)).toEqual([['s0', 's1'], ['s2', 's3'], ['s5', 's6']]);
  });

  it('hands each set\'s buffer back once its batch is stacked, dropped sets included', async () => {
    // Sets whose crops share one buffer, as augment makes them.
    const shared = (i: number) => {
      const values = new Float32Array(16 + 4).fill(i);
      const s = set(i);
      return { ...s, crops: [{ ...s.crops[0], data: values.subarray(0, 16) }, { ...s.crops[1], data: values.subarray(16) }] };
    };
    const buffers = new CropBuffers();
    const out = await batches([0, 1, 2, 3, 4].map(shared), { batchSize: 2, dropLast: true, buffers });
    expect(out.map((b) => b.ids)).toEqual([['s0', 's1'], ['s2', 's3']]);
    // The batches hold copies made before the release.
    expect(Array.from(out[1].views[0].data.subarray(16, 32))).toEqual(Array(16).fill(3));
    expect(buffers.idle).toBe(5);
    const taken = buffers.take(80);
    expect(taken?.byteLength).toBe(80);
    expect(buffers.take(81)).toBeUndefined();
    // Crops on separate buffers are not taken: their owner may still read them.
    const separate = new CropBuffers();
    await batches([set(0), set(1)], { batchSize: 2, buffers: separate });
    expect(separate.idle).toBe(0);
  });

  it('errors on sets whose crop layouts differ (a config mistake)', async () => {
    const odd = { ...set(1), crops: set(1).crops.slice(0, 1) };
    await expect(batches([set(0), odd], { batchSize: 2 })).rejects.toThrow(/different crop layout/);
  });

  it("stratify 'modality': equal shares per modality, grouped in blocks, nothing lost", async () => {
    // 3 CT for every MR, interleaved.
    const sets: CropSet[] = [];
    for (let i = 0; i < 64; i++) sets.push(set(i, i % 4 === 3 ? 'MR' : 'CT'));
    const out = await batches(sets, { batchSize: 8, stratify: 'modality', maxBuffered: 64 });
    const full = out.filter((b) => b.ids.length === 8);
    expect(full.length).toBeGreaterThan(0);
    for (const b of full.slice(0, 2)) {
      expect(b.modalities.filter((m) => m === 'CT')).toHaveLength(4);
      expect(b.modalities.filter((m) => m === 'MR')).toHaveLength(4);
      // Contiguous blocks: the modality changes at most once.
      expect(b.modalities.filter((m, i) => i > 0 && m !== b.modalities[i - 1])).toHaveLength(1);
    }
    expect(out.flatMap((b) => b.ids).sort()).toEqual(sets.map((s) => s.id).sort());
  });

  it("stratify 'modality' bounds its buffer when one modality is rare", async () => {
    const sets = Array.from({ length: 40 }, (_, i) => set(i, i === 0 ? 'MR' : 'CT'));
    const out = await batches(sets, { batchSize: 4, stratify: 'modality', maxBuffered: 8 });
    // Batches keep coming although MR never reaches its share.
    expect(out.length).toBeGreaterThanOrEqual(9);
    expect(out[0].modalities).toContain('MR');
  });
});
