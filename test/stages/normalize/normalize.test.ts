import fs from 'node:fs';
import { firstValueFrom, from, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { NormalizeConfig, parseConfig } from '../../../schemas/config.js';
import type { DecodedImage } from '../../../schemas/records.js';
import { FailureLog } from '../../../pipeline/core/failures.js';
import { random } from '../../../pipeline/core/random.js';
import { modalityRule, normalize, normalizeImage } from '../../../stages/normalize/normalize.js';
import { modalityLut, otsuThreshold } from '../../../stages/normalize/intensity.js';
import { readNpz } from '../../../stages/source/npy.js';
import { sample } from '../../shared.js';
import { checkMonochrome1, checkYbrToRgb, monotone } from './checks.js';
import { CT, referenceImage } from './reference.js';

const min = (a: ArrayLike<number>) => { let m = Infinity; for (let i = 0; i < a.length; i++) if (a[i] < m) m = a[i]; return m; };
const max = (a: ArrayLike<number>) => { let m = -Infinity; for (let i = 0; i < a.length; i++) if (a[i] > m) m = a[i]; return m; };

const windows = [{ center: 40, width: 80 }, { center: 80, width: 200 }, { center: 600, width: 2800 }];
const cfg = (input: unknown) => NormalizeConfig.parse(input);

describe('CT: Hounsfield units and windows', () => {
  const image = referenceImage(CT);

  it('applies the Modality LUT exactly (HU range of the reference)', () => {
    const hu = modalityLut(image.data, image.rescale.slope, image.rescale.intercept);
    expect(min(hu)).toBe(image.reference.modalityStats?.min);
    expect(max(hu)).toBe(image.reference.modalityStats?.max);
  });

  it("'channels' mode: window c in channel c, y = clamp((HU - (c - w/2)) / w, 0, 1)", () => {
    const out = normalizeImage(image, cfg({ channels: 3, ct: { mode: 'channels', windows } }));
    expect([out.height, out.width, out.channels, out.renderings]).toEqual([512, 512, 3, undefined]);
    expect(out.range).toEqual([0, 1]);
    for (let i = 0; i < 512 * 512; i += 97) {
      const hu = image.data[i] * image.rescale.slope + image.rescale.intercept;
      windows.forEach((w, c) => expect(out.data[i * 3 + c]).toBeCloseTo(Math.min(1, Math.max(0, (hu - (w.center - w.width / 2)) / w.width)), 6));
    }
    // The brain window saturates on air and bone, the bone window barely does.
    const sat = (c: number) => { let n = 0; for (let i = c; i < out.data.length; i += 3) if (out.data[i] === 0 || out.data[i] === 1) n++; return n / (512 * 512); };
    expect(sat(0)).toBeGreaterThan(0.5);
    expect(sat(2)).toBeLessThan(sat(0));
    expect(min(out.data)).toBe(0);
    expect(max(out.data)).toBe(1);
  });

  it("'random' mode: the stage renders every window (cacheable); with a random stream, one window is drawn", () => {
    const config = cfg({ ct: { mode: 'random', windows } });
    const all = normalizeImage(image, config);
    expect([all.channels, all.renderings]).toEqual([3, 3]);
    expect(normalizeImage(image, config).data).toEqual(all.data);
    const one = normalizeImage(image, config, random(1).stream({ sample: image.id, purpose: 'window' }));
    expect([one.channels, one.renderings]).toEqual([1, undefined]);
    const k = [0, 1, 2].find((w) => { for (let i = 0; i < 4096; i++) if (one.data[i * 61] !== all.data[i * 61 * 3 + w]) return false; return true; });
    expect(k).toBeDefined();
  });

  it('rejects more windows than channels in channels mode at config time', () => {
    expect(() => parseConfig({ normalize: { ct: { mode: 'channels' } } })).toThrow(/normalize.ct.windows: expected 1 window/);
    expect(parseConfig({}).normalize.ct.mode).toBe('random');
  });

  it('resamples to a target spacing (area-correct), and refuses absurd sizes with a failure record', async () => {
    const out = normalizeImage({ ...image, spacing: [0.5, 0.5] }, cfg({ spacing: [1, 2], ct: { windows: [windows[0]] } }));
    expect([out.height, out.width, out.spacing]).toEqual([256, 128, [1, 2]]);
    const failures = new FailureLog();
    const huge = { ...image, id: 'huge', spacing: [100, 100] as [number, number] };
    const ok = await firstValueFrom(from([huge, image]).pipe(normalize({ failures, config: cfg({ spacing: [0.1, 0.1] }), preparation: 'p' }), toArray()));
    expect(ok.map((i) => i.id)).toEqual([image.id]);
    expect(failures.records[0]).toMatchObject({ stage: 'normalize', code: 'too-large', id: 'huge' });
  });
});

describe('radiography: MONOCHROME1 inverted, percentile normalization', () => {
  // normalize.corpus.test.ts does the same on a 1760 x 1760 radiograph (pydicom-data/RG3_J2KI.dcm).
  it('inverts pydicom/dicomdir_CR/6154 (MONOCHROME1): the brightest stored value is black, the darkest white', () => {
    checkMonochrome1(referenceImage('pydicom/dicomdir_CR/6154'));
  });

  it('keeps MONOCHROME2 radiographs the right way round', () => {
    const image = referenceImage('pydicom/dicomdir_CR/6154');
    const out = normalizeImage({ ...image, photometric: 'MONOCHROME2' }, cfg({}));
    const m = monotone(image, out.data);
    expect(m.down).toBe(0);
    expect(m.up).toBeGreaterThan(0);
  });
});

describe('MR: percentile clip and foreground z-score', () => {
  const image = referenceImage('pydicom/MR_small.dcm');

  it('gives mean 0 and standard deviation 1 inside the (Otsu) foreground, values inside the reported range', () => {
    const out = normalizeImage(image, cfg({}));
    const [lo, hi] = out.range as [number, number];
    expect(lo).toBeLessThan(0);
    expect(hi).toBeGreaterThan(0);
    for (const v of out.data) { expect(v).toBeGreaterThanOrEqual(lo - 1e-5); expect(v).toBeLessThanOrEqual(hi + 1e-5); }
    // Otsu's split is affine-invariant, so the foreground is the same set in z units.
    const t = otsuThreshold(out.data, lo, hi);
    const fg = out.data.filter((v) => v > t);
    expect(fg.length).toBeGreaterThan(out.data.length * 0.2);
    const mean = fg.reduce((a, b) => a + b) / fg.length;
    const sd = Math.sqrt(fg.reduce((a, v) => a + (v - mean) ** 2, 0) / fg.length);
    expect(mean).toBeCloseTo(0, 3);
    expect(sd).toBeCloseTo(1, 3);
  });

  it('is invariant to the scanner scale: a * v + b gives the same image', () => {
    // A power-of-two slope and an integer intercept keep every intermediate exact, so Otsu's histogram bins match
    // (with other slopes a value sitting on a bin edge may round into the neighbouring bin).
    const a = normalizeImage(image, cfg({}));
    const b = normalizeImage({ ...image, rescale: { slope: 4, intercept: 250 } }, cfg({}));
    for (let i = 0; i < a.data.length; i++) expect(b.data[i]).toBeCloseTo(a.data[i], 4);
  });
});

describe('8-bit and colour sources to [0, 1]', () => {
  it('scales MedMNIST (npz) images by 1 / 255', () => {
    const images = readNpz(fs.readFileSync(sample('medmnist/pneumoniamnist.npz'))).get('train_images');
    const data = (images?.data as Uint8Array).subarray(0, 784);
    const image: DecodedImage = {
      id: 'p#train/0', sourceId: 'p', path: 'p.npz', format: 'npz', frame: 0, frames: 1, modality: 'CR', rows: 28, cols: 28, samples: 1,
      dtype: 'uint8', data, photometric: 'MONOCHROME2', rescale: { slope: 1, intercept: 0 }, spacing: null, label: [1],
    };
    expect(modalityRule(image)).toBe('unit');
    const out = normalizeImage(image, cfg({}));
    for (let i = 0; i < 784; i++) expect(out.data[i]).toBeCloseTo(data[i] / 255, 6);
    expect(out.label).toEqual([1]);
    const rgb = normalizeImage(image, cfg({ channels: 3 }));
    expect(rgb.channels).toBe(3);
    expect(rgb.data[3 * 100 + 2]).toBeCloseTo(data[100] / 255, 6);
  });

  it('converts YBR_FULL_422 ultrasound to RGB, or to luma with one channel', () => {
    // A pixel with colour (Cb 171, Cr 93); normalize.corpus.test.ts also checks pydicom/examples_ybr_color.dcm.
    checkYbrToRgb(referenceImage('cornerstone3D/US-YBR_FULL_422-EVRLE.dcm'), 40 * 800 + 64);
  });
});

describe('normalize operator', () => {
  it('turns an inconsistent image into a failure record and goes on', async () => {
    const good = referenceImage('pydicom/dicomdir_CR/6154');
    const bad = { ...good, id: 'bad', rows: 17 };
    const failures = new FailureLog();
    const out = await firstValueFrom(from([bad, good]).pipe(normalize({ failures, config: cfg({}), preparation: 'p' }), toArray()));
    expect(out.map((o) => o.id)).toEqual([good.id]);
    expect(failures.records).toEqual([expect.objectContaining({ stage: 'normalize', code: 'invalid-value', id: 'bad', file: good.path })]);
  });
});
