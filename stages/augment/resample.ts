// Area-correct bilinear resampling of an axis-aligned box of a single-channel image onto an S x S grid.
//
// The filter is the triangle (tent) kernel whose half-width is max(1, shrink), where shrink = box extent / output
// size: plain bilinear interpolation when enlarging, and a tent that covers every source pixel under the output
// pixel when shrinking, so high frequencies are averaged instead of aliased (the same construction as PIL's
// BILINEAR resize and torchvision's `antialias=True`). The filter is separable: per-axis weights are computed once
// per crop (O(S * taps)), then one horizontal and one vertical pass of multiply-adds over typed arrays.
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
  const weights = new Float32Array(outLength * taps);
  const w = new Float64Array(taps);
  let lo = srcLength, hi = 0;
  for (let o = 0; o < outLength; o++) {
    const i = reverse ? outLength - 1 - o : o;
    const centre = offset + (i + 0.5) * scale;
    // Source pixel k contributes when |k + 0.5 - centre| < support.
    const first = Math.floor(centre - 0.5 - support) + 1;
    const last = Math.ceil(centre - 0.5 + support) - 1;
    // Shift the window left near the far edge so that start + taps - 1 stays inside the axis.
    const s0 = Math.min(Math.max(first, 0), srcLength - taps);
    w.fill(0);
    let sum = 0;
    for (let k = first; k <= last; k++) {
      const d = Math.abs(k + 0.5 - centre) / support;
      const weight = d < 1 ? 1 - d : 0;
      if (weight === 0) continue;
      const kc = k < 0 ? 0 : k >= srcLength ? srcLength - 1 : k;
      w[kc - s0] += weight;
      sum += weight;
    }
    if (sum === 0) {
      // Degenerate footprint (a zero-width box): nearest pixel.
      w[Math.min(Math.max(Math.floor(centre), 0), srcLength - 1) - s0] = 1;
      sum = 1;
    }
    start[o] = s0;
    const base = o * taps;
    for (let t = 0; t < taps; t++) weights[base + t] = w[t] / sum;
    if (s0 < lo) lo = s0;
    if (s0 + taps - 1 > hi) hi = s0 + taps - 1;
  }
  return { start, weights, taps, lo, hi };
}

/**
 * Resamples channel `channel` of an interleaved (height, width, channels) image through the separable filter
 * (xw along columns, yw along rows) into `out` (yw rows x xw columns, row-major, one channel).
 * `scratch` must hold at least outHeight * (xw.hi - xw.lo + 1) floats.
 *
 * The vertical pass runs first, over the source columns the crop reads: it sweeps whole rows (contiguous,
 * the fastest access pattern), so it takes the larger share of the work when shrinking; the horizontal pass, a
 * gather per output sample, then only runs on outHeight rows.
 */
export function resampleBox(
  src: Float32Array, width: number, channels: number, channel: number,
  xw: AxisWeights, yw: AxisWeights, out: Float32Array, scratch: Float32Array,
): void {
  const outW = xw.start.length, outH = yw.start.length;
  const span = xw.hi - xw.lo + 1;
  verticalPass(src, width, channels, channel, xw.lo, span, yw, scratch);
  for (let i = 0; i < outH; i++) horizontalRow(scratch, i * span - xw.lo, 1, xw, out, i * outW);
}

/** Scratch floats resampleBox needs for these weights. */
export function scratchSize(xw: AxisWeights, yw: AxisWeights): number {
  return yw.start.length * (xw.hi - xw.lo + 1);
}

/**
 * One row of the horizontal pass. The tap loop is unrolled for the common footprints (2 to 6 taps): the JIT then
 * keeps weights and pixels in registers, which roughly halves the time per multiply-add against a generic loop.
 */
function horizontalRow(src: Float32Array, rowBase: number, channels: number, xw: AxisWeights, dst: Float32Array, dstBase: number): void {
  const start = xw.start, w = xw.weights, taps = xw.taps, n = start.length;
  if (channels === 1) {
    switch (taps) {
      case 2:
        for (let j = 0, k = 0; j < n; j++, k += 2) { const i = rowBase + start[j]; dst[dstBase + j] = w[k] * src[i] + w[k + 1] * src[i + 1]; }
        return;
      case 3:
        for (let j = 0, k = 0; j < n; j++, k += 3) { const i = rowBase + start[j]; dst[dstBase + j] = w[k] * src[i] + w[k + 1] * src[i + 1] + w[k + 2] * src[i + 2]; }
        return;
      case 4:
        for (let j = 0, k = 0; j < n; j++, k += 4) {
          const i = rowBase + start[j];
          dst[dstBase + j] = w[k] * src[i] + w[k + 1] * src[i + 1] + w[k + 2] * src[i + 2] + w[k + 3] * src[i + 3];
        }
        return;
      case 5:
        for (let j = 0, k = 0; j < n; j++, k += 5) {
          const i = rowBase + start[j];
          dst[dstBase + j] = w[k] * src[i] + w[k + 1] * src[i + 1] + w[k + 2] * src[i + 2] + w[k + 3] * src[i + 3] + w[k + 4] * src[i + 4];
        }
        return;
      case 6:
        for (let j = 0, k = 0; j < n; j++, k += 6) {
          const i = rowBase + start[j];
          dst[dstBase + j] = w[k] * src[i] + w[k + 1] * src[i + 1] + w[k + 2] * src[i + 2] + w[k + 3] * src[i + 3] + w[k + 4] * src[i + 4] + w[k + 5] * src[i + 5];
        }
        return;
    }
  }
  for (let j = 0; j < n; j++) {
    let idx = rowBase + start[j] * channels;
    let k = j * taps;
    let acc = 0;
    for (let t = 0; t < taps; t++, idx += channels) acc += w[k++] * src[idx];
    dst[dstBase + j] = acc;
  }
}

/**
 * The vertical pass: scratch row i (span values from source column x0) is the weighted sum of `taps` consecutive
 * source rows, up to four rows per sweep so the output row is read and written once per four input rows.
 */
function verticalPass(src: Float32Array, width: number, channels: number, channel: number, x0: number, span: number, yw: AxisWeights, out: Float32Array): void {
  const start = yw.start, w = yw.weights, taps = yw.taps, rows = start.length;
  const rowStride = width * channels;
  if (channels !== 1) {
    for (let i = 0; i < rows; i++) {
      const o = i * span;
      for (let j = 0; j < span; j++) out[o + j] = 0;
      for (let t = 0; t < taps; t++) {
        const wt = w[i * taps + t];
        if (wt === 0) continue;
        const r = (start[i] + t) * rowStride + x0 * channels + channel;
        for (let j = 0, q = r; j < span; j++, q += channels) out[o + j] += wt * src[q];
      }
    }
    return;
  }
  for (let i = 0; i < rows; i++) {
    const o = i * span;
    const k = i * taps;
    // Taps in groups of up to four per sweep: the first group writes the row, later groups add to it.
    for (let t = 0; t < taps; t += 4) {
      const r = (start[i] + t) * rowStride + x0;
      const left = taps - t;
      const w0 = w[k + t];
      if (left >= 4) {
        const w1 = w[k + t + 1], w2 = w[k + t + 2], w3 = w[k + t + 3];
        const r1 = r + rowStride, r2 = r1 + rowStride, r3 = r2 + rowStride;
        if (t === 0) for (let j = 0; j < span; j++) out[o + j] = w0 * src[r + j] + w1 * src[r1 + j] + w2 * src[r2 + j] + w3 * src[r3 + j];
        else for (let j = 0; j < span; j++) out[o + j] += w0 * src[r + j] + w1 * src[r1 + j] + w2 * src[r2 + j] + w3 * src[r3 + j];
      } else if (left === 3) {
        const w1 = w[k + t + 1], w2 = w[k + t + 2];
        const r1 = r + rowStride, r2 = r1 + rowStride;
        if (t === 0) for (let j = 0; j < span; j++) out[o + j] = w0 * src[r + j] + w1 * src[r1 + j] + w2 * src[r2 + j];
        else for (let j = 0; j < span; j++) out[o + j] += w0 * src[r + j] + w1 * src[r1 + j] + w2 * src[r2 + j];
      } else if (left === 2) {
        const w1 = w[k + t + 1];
        const r1 = r + rowStride;
        if (t === 0) for (let j = 0; j < span; j++) out[o + j] = w0 * src[r + j] + w1 * src[r1 + j];
        else for (let j = 0; j < span; j++) out[o + j] += w0 * src[r + j] + w1 * src[r1 + j];
      } else {
        if (t === 0) for (let j = 0; j < span; j++) out[o + j] = w0 * src[r + j];
        else for (let j = 0; j < span; j++) out[o + j] += w0 * src[r + j];
      }
    }
  }
}
