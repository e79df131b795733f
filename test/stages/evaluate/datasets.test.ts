import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forRecipeSelection, imageAt, loadMedmnist, mapImages, maxAreaSlice, resizeDataset, subset, withChannels } from '../../../stages/evaluate/datasets.js';
import { sample } from '../../shared.js';
import { MedsslError } from '../../../pipeline/core/failures.js';
import { writeNpy } from '../../../stages/source/npy.js';
import { zip } from '../source/zip.js';

/** A MedMNIST-layout .npz of 2x2 images whose every split has `labels` ([n, columns] row-major). */
function npzWithLabels(labels: number[], columns: number): string {
  const n = labels.length / columns;
  const entries = ['train', 'val', 'test'].flatMap((s) => [
    { name: `${s}_images.npy`, body: writeNpy(new Uint8Array(n * 4), [n, 2, 2]) },
    { name: `${s}_labels.npy`, body: writeNpy(Int32Array.from(labels), [n, columns]) },
  ]);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'labels-')), 'crafted.npz');
  fs.writeFileSync(file, zip(entries));
  return file;
}

describe('loadMedmnist', () => {
  it('reads PneumoniaMNIST as [0, 1] images with its split sizes and labels', () => {
    const ds = loadMedmnist(sample('medmnist/pneumoniamnist.npz'), { modality: 'radiography' });
    expect([ds.train.n, ds.val.n, ds.test.n]).toEqual([3882, 524, 624]);
    expect([ds.train.height, ds.train.width, ds.train.channels]).toEqual([28, 28, 1]);
    expect(ds.tasks).toEqual(['pneumoniamnist']);
    expect(ds.train.patients).toBeUndefined();
    let pos = 0;
    for (const y of ds.test.labels) pos += y;
    expect(pos).toBe(390); // SOURCES.md: test 234 normal, 390 pneumonia
    expect(Math.max(...ds.train.images.subarray(0, 784))).toBeLessThanOrEqual(1);
  });

  it('evaluates AdrenalMNIST3D on the max-area slice of each volume, one patient per volume', () => {
    const ds = loadMedmnist(sample('medmnist/adrenalmnist3d.npz'), { modality: 'ct' });
    expect([ds.train.n, ds.val.n, ds.test.n]).toEqual([1188, 98, 298]);
    expect(ds.train.patients![5]).toBe('train/5');
    expect(new Set(ds.train.patients).size).toBe(1188);
    const central = loadMedmnist(sample('medmnist/adrenalmnist3d.npz'), { slice: 'central' });
    const area = (d: Float32Array) => d.reduce((a, v) => a + (v > 0 ? 1 : 0), 0);
    let larger = 0;
    for (let i = 0; i < 50; i++) {
      const a = area(imageAt(ds.train, i).data), c = area(imageAt(central.train, i).data);
      expect(a).toBeGreaterThanOrEqual(c);
      if (a > c) larger++;
    }
    expect(larger).toBeGreaterThan(0);
  });

  it('reads RetinaMNIST\'s grades as one-vs-rest tasks (one-hot rows), in colour', () => {
    const ds = loadMedmnist(sample('medmnist-extra/retinamnist.npz'), { modality: 'OP' });
    expect([ds.train.n, ds.val.n, ds.test.n, ds.train.channels]).toEqual([1080, 120, 400, 3]);
    expect(ds.tasks).toEqual([0, 1, 2, 3, 4].map((k) => `retinamnist:${k}`));
    const perClass = [0, 0, 0, 0, 0];
    for (let i = 0; i < ds.test.n; i++) {
      const row = Array.from(ds.test.labels.subarray(i * 5, i * 5 + 5));
      expect(row.reduce((a, b) => a + b, 0)).toBe(1);
      row.forEach((y, k) => { perClass[k] += y; });
    }
    expect(perClass).toEqual([174, 46, 92, 68, 20]); // SOURCES.md: the test split's grade counts
  });

  it('refuses labels that are neither 0/1 per column nor one column of class ids, naming the file', () => {
    expect(loadMedmnist(npzWithLabels([0, 1, 1, 0], 2)).tasks).toEqual(['crafted:0', 'crafted:1']);
    expect(loadMedmnist(npzWithLabels([0, 2, 1], 1)).train.labels).toEqual(Float32Array.from([1, 0, 0, 0, 0, 1, 0, 1, 0]));
    for (const [labels, columns, reason] of [[[0, 2, 1, 0], 2, /multi-label columns must be 0\/1/], [[0, 256], 1, /at most 256 classes/], [[0, -1], 1, /not a class id/]] as const) {
      const file = npzWithLabels([...labels], columns);
      expect(() => loadMedmnist(file)).toThrow(reason);
      expect(() => loadMedmnist(file)).toThrow(expect.objectContaining({ name: 'MedsslError', file }));
    }
  });

  it('names the file in errors', () => {
    expect(() => loadMedmnist('/nonexistent/x.npz')).toThrow(MedsslError);
  });
});

describe('helpers', () => {
  it('maxAreaSlice picks the fullest slice (first on ties, centre when empty)', () => {
    const vol = new Uint8Array(3 * 4);
    vol.set([1, 1, 0, 0], 4); // slice 1: 2 voxels
    vol.set([1, 0, 1, 0], 8); // slice 2: 2 voxels (tie)
    expect(maxAreaSlice(vol, 3, 4)).toBe(1);
    expect(maxAreaSlice(new Uint8Array(12), 3, 4)).toBe(1);
  });
  it('subset and mapImages keep images, labels and patients aligned', () => {
    const s = { images: Float32Array.from([1, 2, 3]), n: 3, height: 1, width: 1, channels: 1, labels: Float32Array.from([0, 1, 0]), patients: ['a', 'b', 'c'] };
    const t = subset(s, [2, 1]);
    expect([Array.from(t.images), Array.from(t.labels), t.patients]).toEqual([[3, 2], [0, 1], ['c', 'b']]);
    expect(Array.from(mapImages(s, (img) => ({ ...img, data: img.data.map((v) => v * 10) })).images)).toEqual([10, 20, 30]);
  });
  it('resizeDataset resamples every split to size x size per channel, keeping labels, and leaves a same-size set alone', () => {
    // Two 2x2 images with 2 channels: channel 0 constant per image, channel 1 a left-right ramp.
    const split = {
      images: Float32Array.from([0.5, 0, 0.5, 1, 0.5, 0, 0.5, 1, 0.25, 0, 0.25, 1, 0.25, 0, 0.25, 1]),
      n: 2, height: 2, width: 2, channels: 2, labels: Float32Array.from([1, 0]),
    };
    const ds = { name: 'd', modality: 'ct', tasks: ['t'], train: split, val: split, test: split };
    const big = resizeDataset(ds, 6);
    for (const s of [big.train, big.val, big.test]) {
      expect([s.n, s.height, s.width, s.channels, Array.from(s.labels)]).toEqual([2, 6, 6, 2, [1, 0]]);
      const img = (i: number, c: number) => Array.from({ length: 36 }, (_, p) => s.images[i * 72 + p * 2 + c]);
      expect(new Set(img(0, 0).map((v) => v.toFixed(5)))).toEqual(new Set(['0.50000']));
      expect(new Set(img(1, 0).map((v) => v.toFixed(5)))).toEqual(new Set(['0.25000']));
      // The ramp stays a ramp: rows equal, columns non-decreasing from the left pixel's value to the right one's.
      const row = img(0, 1).slice(0, 6);
      expect(row[0]).toBeCloseTo(0, 5);
      expect(row[5]).toBeCloseTo(1, 5);
      for (let x = 1; x < 6; x++) expect(row[x]).toBeGreaterThanOrEqual(row[x - 1]);
      expect(img(0, 1).slice(30, 36)).toEqual(row);
    }
    expect(resizeDataset(ds, 2)).toBe(ds);
  });
  it('withChannels turns colour to grey by BT.601 luma, as the pool does, and replicates grey', () => {
    const rgb = { images: Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, 0.5, 0.5]), n: 1, height: 2, width: 2, channels: 3, labels: Float32Array.from([1]) };
    const ds = { name: 'd', modality: 'OP', tasks: ['t'], train: rgb, val: rgb, test: rgb };
    const grey = withChannels(ds, 1);
    for (const s of [grey.train, grey.val, grey.test]) {
      expect(s.channels).toBe(1);
      expect(Array.from(s.images).map((v) => +v.toFixed(4))).toEqual([0.299, 0.587, 0.114, 0.5]);
    }
    expect(Array.from(withChannels(grey, 3).train.images.subarray(0, 6)).map((v) => +v.toFixed(4))).toEqual([0.299, 0.299, 0.299, 0.587, 0.587, 0.587]);
    expect(withChannels(ds, 3)).toBe(ds);
  });
  it('forRecipeSelection scores the validation split and holds out a stratified, patient-level part of train in its place', () => {
    // Train: 200 images, each image's value its index; labels 25% positive; patients of two images each.
    const n = 200;
    const train = {
      images: Float32Array.from({ length: n }, (_, i) => i), n, height: 1, width: 1, channels: 1,
      labels: Float32Array.from({ length: n }, (_, i) => (Math.floor(i / 2) % 4 === 0 ? 1 : 0)),
      patients: Array.from({ length: n }, (_, i) => `p${Math.floor(i / 2)}`),
    };
    const val = { images: Float32Array.from({ length: 40 }, (_, i) => 1000 + i), n: 40, height: 1, width: 1, channels: 1, labels: Float32Array.from({ length: 40 }, (_, i) => i % 2) };
    const test = { ...val, images: val.images.map((v) => v + 1000) };
    const ds = { name: 'd', modality: 'ct', tasks: ['t'], train, val, test };
    const sel = forRecipeSelection(ds, 3);
    expect(sel.test).toBe(val); // the test split is not used at all
    const held = Array.from(sel.val.images), rest = Array.from(sel.train.images);
    expect(held.length).toBe(40);
    expect([...held, ...rest].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i)); // a partition of train
    expect(held.filter((i) => Math.floor(i / 2) % 4 === 0)).toHaveLength(10); // 25% positive, as in train
    expect(held.every((i) => held.includes(i ^ 1))).toBe(true); // both images of a patient, or neither
    expect(Array.from(sel.train.labels)).toEqual(rest.map((i) => train.labels[i]));
    expect(Array.from(forRecipeSelection(ds, 3).val.images)).toEqual(held);
    expect(Array.from(forRecipeSelection(ds, 4).val.images)).not.toEqual(held);
    expect(() => forRecipeSelection({ ...ds, val: { ...val, n: 0, images: new Float32Array(0), labels: new Float32Array(0) } }, 3)).toThrow(/needs a validation split/);
  });
});
