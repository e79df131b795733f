import { describe, expect, it } from 'vitest';
import { imageAt, loadMedmnist, mapImages, maxAreaSlice, resizeDataset, subset } from '../../../stages/evaluate/datasets.js';
import { sample } from '../../shared.js';
import { MedsslError } from '../../../pipeline/core/failures.js';

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
});
