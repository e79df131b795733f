// Normalize checks that normalize.test.ts runs on reference decodes in fixtures and normalize.corpus.test.ts on
// larger ones of the corpus.
import { expect } from 'vitest';
import { NormalizeConfig } from '../../../schemas/config.js';
import type { DecodedImage } from '../../../schemas/records.js';
import { modalityRule, normalizeImage } from '../../../stages/normalize/normalize.js';

const min = (a: ArrayLike<number>) => { let m = Infinity; for (let i = 0; i < a.length; i++) if (a[i] < m) m = a[i]; return m; };
const max = (a: ArrayLike<number>) => { let m = -Infinity; for (let i = 0; i < a.length; i++) if (a[i] > m) m = a[i]; return m; };
const cfg = (input: unknown) => NormalizeConfig.parse(input);

/** Steps up and down of `out` along the order of the stored values of `image`. */
export function monotone(image: DecodedImage, out: Float32Array): { up: number; down: number } {
  const order = Array.from(image.data.keys()).sort((a, b) => image.data[a] - image.data[b]);
  let up = 0, down = 0;
  for (let i = 1; i < order.length; i++) {
    const d = out[order[i]] - out[order[i - 1]];
    if (d > 0) up++; else if (d < 0) down++;
  }
  return { up, down };
}

/** A MONOCHROME1 radiograph comes out inverted: the brightest stored value black, the darkest white. */
export function checkMonochrome1(image: DecodedImage): void {
  expect(image.photometric).toBe('MONOCHROME1');
  expect(modalityRule(image)).toBe('radiography');
  const out = normalizeImage(image, cfg({}));
  expect(out.range).toEqual([0, 1]);
  expect(min(out.data)).toBe(0);
  expect(max(out.data)).toBe(1);
  let lo = 0, hi = 0;
  for (let i = 0; i < image.data.length; i++) { if (image.data[i] < image.data[lo]) lo = i; if (image.data[i] > image.data[hi]) hi = i; }
  expect(out.data[hi]).toBe(0);
  expect(out.data[lo]).toBe(1);
  if (image.data.length < 100_000) {
    const m = monotone(image, out.data);
    expect(m.up).toBe(0);
    expect(m.down).toBeGreaterThan(0);
  }
}

/** A YBR_FULL_422 image goes to RGB with three channels and to luma with one, at pixel `i`. */
export function checkYbrToRgb(image: DecodedImage, i: number): void {
  const rgb = normalizeImage(image, cfg({ channels: 3 }));
  const grey = normalizeImage(image, cfg({ channels: 1 }));
  expect([rgb.channels, grey.channels]).toEqual([3, 1]);
  const [y, cb, cr] = [image.data[i * 3], image.data[i * 3 + 1] - 128, image.data[i * 3 + 2] - 128];
  const clamp = (v: number) => Math.min(255, Math.max(0, v)) / 255;
  const [r, g, b] = [clamp(y + 1.402 * cr), clamp(y - 0.344136 * cb - 0.714136 * cr), clamp(y + 1.772 * cb)];
  expect(rgb.data[i * 3]).toBeCloseTo(r, 2);
  expect(rgb.data[i * 3 + 1]).toBeCloseTo(g, 2);
  expect(rgb.data[i * 3 + 2]).toBeCloseTo(b, 2);
  expect(grey.data[i]).toBeCloseTo(0.299 * r + 0.587 * g + 0.114 * b, 2);
}
