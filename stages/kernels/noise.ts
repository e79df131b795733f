// Per-pixel Gaussian noise at hundreds of millions of values per second.
//
// Philox (pipeline/core/random.ts) decides everything about a crop, including the 128-bit state of the noise field
// below; drawing every pixel from Philox itself would cost more than the whole crop. So the noise of one crop comes
// from xoshiro128** (Blackman and Vigna, 2018) seeded from the crop's Philox stream: still a pure function of
// (seed, epoch, sample, crop), hence identical whatever the worker count. The SIMD kernel (assembly/kernels.ts) runs
// four generators side by side: lane 0 starts at the crop's state and lane l at that state jumped l * 2^64 steps
// ahead (the generator's own jump polynomial), so the four sequences never overlap.
//
// Normal deviates come from an inverse-CDF table: 2^12 equiprobable bins, z_k = Phi^-1((k + 0.5) / 2^12), rescaled
// so the table has mean 0 and variance 1 exactly. Each 32-bit draw gives two deviates (12 bits of each half). The
// table is 16 KiB, so it stays in L1 cache; tails are cut at |z| = 3.7 (probability 2e-4 beyond), and the values are
// quantised to 4096 levels: irrelevant for augmentation noise.

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

/** The shared table of 2^12 standard normal deviates (built once per thread). */
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

/** One xoshiro128** step of the state s (4 words), in place. */
function xoshiroStep(s: Int32Array): void {
  const t = s[1] << 9;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = (s[3] << 11) | (s[3] >>> 21);
}

// xoshiro128's jump polynomial: applying it advances the state by 2^64 steps.
const JUMP = [0x8764000b, 0xf542d2d3, 0x6fa035c3, 0x77f2db5b];

function jump(s: Int32Array): void {
  let t0 = 0, t1 = 0, t2 = 0, t3 = 0;
  for (const word of JUMP) {
    for (let b = 0; b < 32; b++) {
      if (word & (1 << b)) { t0 ^= s[0]; t1 ^= s[1]; t2 ^= s[2]; t3 ^= s[3]; }
      xoshiroStep(s);
    }
  }
  s[0] = t0; s[1] = t1; s[2] = t2; s[3] = t3;
}

/**
 * The four lane states of a crop's noise, as the SIMD kernel reads them: word w of lane l at index 4 w + l. Lane l is
 * the crop's state jumped l times. The all-zero state, a fixed point of the generator, is replaced by a constant.
 */
export function noiseLanes(state: readonly [number, number, number, number]): Int32Array {
  const s = Int32Array.from(state, (v) => v | 0);
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 0x9e3779b9 | 0;
  const lanes = new Int32Array(16);
  for (let l = 0; l < 4; l++) {
    if (l > 0) jump(s);
    for (let w = 0; w < 4; w++) lanes[4 * w + l] = s[w];
  }
  return lanes;
}
