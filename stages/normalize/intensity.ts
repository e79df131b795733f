// Pixel kernels of the normalize stage: modality LUT, windows, percentiles, Otsu threshold, colour conversion.
import type { PixelArray } from '../../schemas/records.js';

/** DICOM Modality LUT (PS3.3 C.11.1): value = slope * stored + intercept, as float32. Non-finite values stay NaN. */
export function modalityLut(stored: PixelArray, slope: number, intercept: number, samples = 1, sample = 0): Float32Array {
  const n = stored.length / samples;
  const out = new Float32Array(n);
  for (let i = 0, j = sample; i < n; i++, j += samples) {
    const v = slope * stored[j] + intercept;
    out[i] = Number.isFinite(v) ? v : NaN;
  }
  return out;
}

/** Hounsfield window (centre c, width w) clipped and scaled to [0, 1]: y = clamp((HU - (c - w / 2)) / w, 0, 1). */
export function hounsfieldWindow(hu: Float32Array, center: number, width: number, out: Float32Array = new Float32Array(hu.length), stride = 1, offset = 0): Float32Array {
  const lo = center - width / 2, inv = 1 / width;
  for (let i = 0, o = offset; i < hu.length; i++, o += stride) {
    const y = (hu[i] - lo) * inv;
    // NaN (no value) maps to the window's floor.
    out[o] = y > 0 ? (y < 1 ? y : 1) : 0;
  }
  return out;
}

/**
 * Percentiles (0..100) of the finite values, with numpy's default 'linear' interpolation between order statistics:
 * the q-th percentile of n sorted values is at position q / 100 * (n - 1). Returns NaN when no value is finite.
 */
export function percentiles(values: Float32Array, qs: readonly number[]): number[] {
  const finite = new Float32Array(values.length);
  let n = 0;
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) finite[n++] = values[i];
  if (n === 0) return qs.map(() => NaN);
  const sorted = finite.subarray(0, n).sort();
  return qs.map((q) => {
    const pos = (q / 100) * (n - 1);
    const k = Math.floor(pos), f = pos - k;
    return k + 1 < n ? sorted[k] + f * (sorted[k + 1] - sorted[k]) : sorted[n - 1];
  });
}

/**
 * Otsu's threshold (1979) of the values in [lo, hi], from a 256-bin histogram: the bin edge that maximises the
 * between-class variance. Used as the MR foreground threshold.
 */
export function otsuThreshold(values: Float32Array, lo: number, hi: number): number {
  const bins = 256;
  if (!(hi > lo)) return lo;
  const hist = new Float64Array(bins);
  const scale = bins / (hi - lo);
  let total = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(v >= lo && v <= hi)) continue;
    hist[Math.min(bins - 1, Math.floor((v - lo) * scale))]++;
    total++;
  }
  let sumAll = 0;
  for (let b = 0; b < bins; b++) sumAll += b * hist[b];
  let w0 = 0, sum0 = 0, best = -1, bestBin = 0;
  for (let b = 0; b < bins - 1; b++) {
    w0 += hist[b];
    sum0 += b * hist[b];
    const w1 = total - w0;
    if (w0 === 0 || w1 === 0) continue;
    const m0 = sum0 / w0, m1 = (sumAll - sum0) / w1;
    const between = w0 * w1 * (m0 - m1) ** 2;
    if (between > best) { best = between; bestBin = b; }
  }
  return lo + (bestBin + 1) / scale;
}

/** Percentile normalization: y = clamp((v - pLo) / (pHi - pLo), 0, 1), or 1 - y for MONOCHROME1; NaN -> 0. */
export function percentileScale(values: Float32Array, pLo: number, pHi: number, invert: boolean): Float32Array {
  const out = new Float32Array(values.length);
  const span = pHi - pLo;
  if (!(span > 0)) return out;
  const inv = 1 / span;
  for (let i = 0; i < values.length; i++) {
    let y = (values[i] - pLo) * inv;
    y = y > 0 ? (y < 1 ? y : 1) : 0; // NaN compares false: 0
    out[i] = invert ? 1 - y : y;
  }
  return out;
}

/**
 * Full-range YCbCr (YBR_FULL, YBR_FULL_422 after expansion) to RGB, PS3.3 C.7.6.3.1.2, in place on interleaved
 * values scaled to [0, 1]; `offset` is the chroma zero in those units (128 / 255 for 8-bit data).
 */
export function ybrFullToRgb(data: Float32Array, offset: number): void {
  for (let i = 0; i + 2 < data.length; i += 3) {
    const y = data[i], cb = data[i + 1] - offset, cr = data[i + 2] - offset;
    data[i] = clamp(y + 1.402 * cr, 0, 1);
    data[i + 1] = clamp(y - 0.344136 * cb - 0.714136 * cr, 0, 1);
    data[i + 2] = clamp(y + 1.772 * cb, 0, 1);
  }
}

/** ITU-R BT.601 luma of interleaved RGB: 0.299 R + 0.587 G + 0.114 B. */
export function luma(rgb: Float32Array): Float32Array {
  const out = new Float32Array(rgb.length / 3);
  for (let i = 0, j = 0; i < out.length; i++, j += 3) out[i] = 0.299 * rgb[j] + 0.587 * rgb[j + 1] + 0.114 * rgb[j + 2];
  return out;
}

/** Repeats a single-channel plane into `channels` interleaved channels. */
export function repeatChannels(plane: Float32Array, channels: number): Float32Array {
  if (channels === 1) return plane;
  const out = new Float32Array(plane.length * channels);
  for (let i = 0, o = 0; i < plane.length; i++) for (let c = 0; c < channels; c++) out[o++] = plane[i];
  return out;
}

const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/** Per-frame min-max to [0, 1] in float32 (NaN and infinities map to 0; a constant frame is all 0). */
export function minMax(values: ArrayLike<number>): Float32Array {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const out = new Float32Array(values.length);
  const range = hi - lo;
  if (!(range > 0) || !Number.isFinite(range)) return out;
  const scale = 1 / range;
  for (let i = 0; i < values.length; i++) {
    const v = (values[i] - lo) * scale;
    out[i] = v >= 0 && v <= 1 ? v : 0;
  }
  return out;
}

/** Channel count conversion: grey replicated to `to`, colour averaged to grey (alpha dropped). */
export function toChannels(data: Float32Array, from: number, to: number): Float32Array {
  if (from === to) return data;
  const pixels = data.length / from;
  const out = new Float32Array(pixels * to);
  const colour = Math.min(from, 3);
  for (let p = 0; p < pixels; p++) {
    let grey = 0;
    if (from === 1) grey = data[p];
    else {
      for (let c = 0; c < colour; c++) grey += data[p * from + c];
      grey /= colour;
    }
    for (let c = 0; c < to; c++) out[p * to + c] = from === 1 || to === 1 ? grey : data[p * from + Math.min(c, colour - 1)];
  }
  return out;
}
