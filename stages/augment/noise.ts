// Per-pixel Gaussian noise at tens of millions of values per second.
//
// Philox (pipeline/random.ts) decides everything about a crop, including the 128-bit state of the noise field
// below; drawing every pixel from Philox itself would cost more than the whole crop. So the noise of one crop is
// a xoshiro128** sequence (Blackman and Vigna, 2018) seeded from the crop's Philox stream: still a pure function of
// (seed, epoch, sample, crop), hence identical whatever the worker count.
//
// Normal deviates come from an inverse-CDF table: 2^12 equiprobable bins, z_k = Phi^-1((k + 0.5) / 2^12), rescaled
// so the table has mean 0 and variance 1 exactly. Each 32-bit draw gives two deviates (12 bits of each half). The
// table is 16 KiB, so it stays in L1 cache; tails are cut at |z| = 3.7 (probability 2e-4 beyond), and the values are
// quantised to 4096 levels: irrelevant for augmentation noise, and about twice as fast as a 2^16 table.

export const NORMAL_TABLE_BITS = 12;
let table: Float32Array | null = null;

/** Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9). */
export function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const pl = 0.02425;
  if (p < pl) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - pl) return -normalQuantile(1 - p);
  const q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** The shared table of 2^16 standard normal deviates (built once per thread). */
export function normalTable(): Float32Array {
  if (table) return table;
  const n = 1 << NORMAL_TABLE_BITS;
  const z = new Float64Array(n);
  let sum = 0, sq = 0;
  for (let k = 0; k < n; k++) { z[k] = normalQuantile((k + 0.5) / n); sum += z[k]; }
  const mean = sum / n;
  for (let k = 0; k < n; k++) sq += (z[k] - mean) ** 2;
  const scale = 1 / Math.sqrt(sq / n);
  table = new Float32Array(n);
  for (let k = 0; k < n; k++) table[k] = (z[k] - mean) * scale;
  return table;
}

/**
 * x' = scale * x + shift + sigma * z over all of `data` (in place), z ~ N(0, 1) from the xoshiro128** state
 * (s0..s3, not all zero): the affine part of the augmentations and the noise in one pass. sigma 0 adds nothing.
 */
export function affineWithNoise(data: Float32Array, scale: number, shift: number, sigma: number, state: readonly [number, number, number, number]): void {
  const n = data.length;
  if (sigma === 0) {
    if (scale !== 1 || shift !== 0) for (let i = 0; i < n; i++) data[i] = scale * data[i] + shift;
    return;
  }
  const z = normalTable();
  let s0 = state[0] | 0, s1 = state[1] | 0, s2 = state[2] | 0, s3 = state[3] | 0;
  if ((s0 | s1 | s2 | s3) === 0) s0 = 0x9e3779b9 | 0; // the all-zero state is a fixed point
  // Pairs of values per draw. The odd last value is handled inside the loop, not after it: a branch after the loop
  // that the interpreter never saw (the loop is optimised mid-call) would deoptimise the function on every call.
  for (let i = 0; i < n; i += 2) {
    const m = Math.imul(s1, 5);
    const r = Math.imul((m << 7) | (m >>> 25), 9);
    const t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
    data[i] = scale * data[i] + shift + sigma * z[r >>> 20];
    if (i + 1 < n) data[i + 1] = scale * data[i + 1] + shift + sigma * z[r & 0xfff];
  }
}

/** Adds sigma * N(0, 1) to every value of `data` (in place); see affineWithNoise. */
export function addGaussianNoise(data: Float32Array, sigma: number, state: readonly [number, number, number, number]): void {
  affineWithNoise(data, 1, 0, sigma, state);
}

/**
 * Gamma on [lo, hi] (see intensity.ts, same table and interpolation), then x' = scale * x + shift + sigma * z, in one
 * pass: the whole intensity chain when no augmentation needs the crop mean in between.
 */
export function gammaAffineNoise(
  data: Float32Array, table: Float32Array, tableSize: number, lo: number, hi: number,
  scale: number, shift: number, sigma: number, state: readonly [number, number, number, number],
): void {
  const z = normalTable();
  const span = hi - lo, toIndex = tableSize / span;
  // Fold lo + span * g into the affine map: scale * (lo + span * g) + shift = (scale * span) g + (scale * lo + shift).
  const a = scale * span, b = scale * lo + shift;
  let s0 = state[0] | 0, s1 = state[1] | 0, s2 = state[2] | 0, s3 = state[3] | 0;
  if ((s0 | s1 | s2 | s3) === 0) s0 = 0x9e3779b9 | 0;
  const n = data.length;
  const last = tableSize;
  // Pairs of values per draw, the odd last value inside the loop (see affineWithNoise).
  for (let i = 0; i < n; i += 2) {
    const m = Math.imul(s1, 5);
    const r = Math.imul((m << 7) | (m >>> 25), 9);
    const t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
    let f = (data[i] - lo) * toIndex;
    f = f < 0 ? 0 : f > last ? last : f;
    let k = f | 0;
    let g0 = table[k];
    data[i] = a * (g0 + (f - k) * (table[k + 1] - g0)) + b + sigma * z[r >>> 20];
    if (i + 1 < n) {
      f = (data[i + 1] - lo) * toIndex;
      f = f < 0 ? 0 : f > last ? last : f;
      k = f | 0;
      g0 = table[k];
      data[i + 1] = a * (g0 + (f - k) * (table[k + 1] - g0)) + b + sigma * z[r & 0xfff];
    }
  }
}
