// Area-correct bilinear resampling of an axis-aligned box of a single-channel image onto an S x S grid.
//
// The filter is the triangle (tent) kernel whose half-width is max(1, shrink), where shrink = box extent / output
// size: plain bilinear interpolation when enlarging, and a tent that covers every source pixel under the output
// pixel when shrinking, so high frequencies are averaged instead of aliased (the same construction as PIL's
// BILINEAR resize and torchvision's `antialias=True`). The filter is separable: per-axis weights are computed once
// per crop (O(S * taps)), then one vertical and one horizontal pass of multiply-adds (kernels.ts).
//
// Coordinates are continuous: pixel k covers [k, k + 1) and its centre is k + 0.5. Samples that fall outside the
// image repeat the edge pixel (their weight is added to the nearest valid pixel).

/** Per-output-sample filter taps along one axis, at a fixed stride of `taps` (unused taps have weight 0). */
export interface AxisWeights {
  /** First source index of output sample i. */
  start: Int32Array;
  /** weights[i * taps + t] multiplies source index start[i] + t. */
  weights: Float32Array;
  taps: number;
  /** Smallest and largest source index any tap reads (inclusive). */
  lo: number;
  hi: number;
}

/**
 * Tent-filter weights mapping the source span [offset, offset + extent) of an axis of length `srcLength` onto
 * `outLength` samples; `reverse` mirrors the output (a flip costs nothing at run time).
 */
export function axisWeights(srcLength: number, outLength: number, offset: number, extent: number, reverse = false): AxisWeights {
  const scale = extent / outLength;
  const support = Math.max(1, scale);
  // An open interval of length 2 * support holds at most ceil(2 * support) pixel centres: that is the footprint
  // (2 for plain bilinear). Never more taps than the axis has pixels, since every tap is clamped into the axis.
  // A fixed stride keeps the inner loops free of per-sample bounds.
  const taps = Math.max(1, Math.min(Math.ceil(2 * support - 1e-9), srcLength));
  const start = new Int32Array(outLength);
  const weights = new Float32Array(outLength * taps); // zero-filled: taps beyond the footprint stay 0
  let lo = srcLength, hi = 0;
  for (let o = 0; o < outLength; o++) {
    const i = reverse ? outLength - 1 - o : o;
    const centre = offset + (i + 0.5) * scale;
    // Source pixel k contributes when |k + 0.5 - centre| < support.
    const first = Math.floor(centre - 0.5 - support) + 1;
    const last = Math.ceil(centre - 0.5 + support) - 1;
    // Shift the window left near the far edge so that start + taps - 1 stays inside the axis.
    const s0 = Math.min(Math.max(first, 0), srcLength - taps);
    const base = o * taps - s0;
    let sum = 0;
    for (let k = first; k <= last; k++) {
      const d = Math.abs(k + 0.5 - centre) / support;
      if (d >= 1) continue;
      const kc = k < 0 ? 0 : k >= srcLength ? srcLength - 1 : k;
      weights[base + kc] += 1 - d;
      sum += 1 - d;
    }
    if (sum === 0) {
      // Degenerate footprint (a zero-width box): nearest pixel.
      weights[base + Math.min(Math.max(Math.floor(centre), 0), srcLength - 1)] = 1;
      sum = 1;
    }
    start[o] = s0;
    const inv = 1 / sum;
    for (let t = o * taps; t < (o + 1) * taps; t++) weights[t] *= inv;
    if (s0 < lo) lo = s0;
    if (s0 + taps - 1 > hi) hi = s0 + taps - 1;
  }
  return { start, weights, taps, lo, hi };
}

// The multiply-adds run in the WebAssembly SIMD kernels (kernels.ts); these weights are all they need.
export { resampleBox } from './kernels.js';
