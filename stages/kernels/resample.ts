// Area-correct bilinear resampling of an axis-aligned box of a single-channel image onto an S x S grid.
//
// The filter is the triangle (tent) kernel whose half-width is max(1, shrink), where shrink = box extent / output
// size: plain bilinear interpolation when enlarging, and a tent that covers every source pixel under the output
// pixel when shrinking, so high frequencies are averaged instead of aliased (the same construction as PIL's
// BILINEAR resize and torchvision's `antialias=True`). The filter is separable: per-axis weights are computed once
// per crop (O(S * taps)), then one vertical and one horizontal pass of multiply-adds (kernels.ts).
//
// Weights are computed in float64 and stored as float32, and each output sample's are divided by their sum.
//
// Coordinates are continuous: pixel k covers [k, k + 1) and its centre is k + 0.5. Samples that fall outside the
// image repeat the edge pixel (their weight is added to the nearest valid pixel).

import { kernels } from './kernels.js';

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
 * `outLength` samples; `reverse` mirrors the output (a flip costs nothing at run time). Computed by the kernels
 * (Kernels.axis), which the crop loop calls directly; this copy out is for callers outside it and for tests.
 */
export function axisWeights(srcLength: number, outLength: number, offset: number, extent: number, reverse = false): AxisWeights {
  const k = kernels();
  const mark = k.mark();
  const a = k.axis(srcLength, outLength, offset, extent, reverse, 'rows');
  const start = k.ints.slice(a.start >> 2, (a.start >> 2) + outLength);
  const weights = k.floats.slice(a.weights >> 2, (a.weights >> 2) + outLength * a.taps);
  k.release(mark);
  return { start, weights, taps: a.taps, lo: a.lo, hi: a.hi };
}

// The multiply-adds run in the WebAssembly SIMD kernels (kernels.ts); these weights are all they need.
export { resampleBox } from './kernels.js';
