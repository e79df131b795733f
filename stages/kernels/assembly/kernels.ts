// The pixel kernels (resampling for normalize and augment, augment's intensity chain), in AssemblyScript, compiled to WebAssembly with 128-bit SIMD
// (`npm run build:wasm`). V8 does not vectorise JavaScript loops; here every multiply-add of the resampler and every
// step of the intensity chain works on four float32 values at once. Only non-relaxed SIMD is used: its results are
// defined bit for bit by the WebAssembly specification, so crops stay identical on every machine.
//
// Pointers are byte offsets into this module's own memory. The JavaScript side (stages/kernels/kernels.ts) lays
// out the buffers above heapBase() and grows the memory; nothing here allocates.

/** First byte the JavaScript side may use. */
export function heapBase(): usize {
  return (__heap_base + 15) & ~15;
}

// ---- layout ----------------------------------------------------------------------------------------------------

/** dst[i] = src[i * channels + channel]: one channel of an interleaved image as a plane. */
export function deinterleave(src: usize, n: i32, channels: i32, channel: i32, dst: usize): void {
  const step = <usize>channels << 2;
  let p = src + (<usize>channel << 2);
  for (let i = 0; i < n; i++, p += step) store<f32>(dst + (<usize>i << 2), load<f32>(p));
}

/** dst[i * channels + channel] = plane[i]. */
export function interleave(plane: usize, n: i32, channels: i32, channel: i32, dst: usize): void {
  const step = <usize>channels << 2;
  let p = dst + (<usize>channel << 2);
  for (let i = 0; i < n; i++, p += step) store<f32>(p, load<f32>(plane + (<usize>i << 2)));
}

// ---- resampling (see resample.ts for the filter) ---------------------------------------------------------------

/**
 * Tent-filter weights along one axis: output sample o reads `taps` source indices from start[o], with weights at
 * weights + 4 * o * stride (taps <= stride; the rest of each row is 0). `bounds` receives the smallest and largest
 * index any tap reads; with `relative`, start[o] is then stored minus the smallest. The arithmetic is float64 with
 * float32 storage, in the order resample.ts documents, so the weights do not depend on where they are computed.
 */
export function axisWeights(
  srcLength: i32, outLength: i32, offset: f64, extent: f64, reverse: bool,
  taps: i32, stride: i32, start: usize, weights: usize, bounds: usize, relative: bool,
): void {
  const scale = extent / <f64>outLength;
  const support = Math.max(1, scale);
  memory.fill(weights, 0, <usize>(outLength * stride) << 2);
  let lo = srcLength, hi = 0;
  for (let o = 0; o < outLength; o++) {
    const i = reverse ? outLength - 1 - o : o;
    const centre = offset + (<f64>i + 0.5) * scale;
    // Source pixel k contributes when |k + 0.5 - centre| < support.
    const first = <i32>Math.floor(centre - 0.5 - support) + 1;
    const last = <i32>Math.ceil(centre - 0.5 + support) - 1;
    // Shift the window left near the far edge so that start + taps - 1 stays inside the axis.
    const s0 = min(max(first, 0), srcLength - taps);
    const row = weights + (<usize>(o * stride) << 2);
    let sum: f64 = 0;
    for (let k = first; k <= last; k++) {
      const d = Math.abs(<f64>k + 0.5 - centre) / support;
      if (d >= 1) continue;
      // Samples outside the axis repeat the edge pixel.
      const kc = k < 0 ? 0 : k >= srcLength ? srcLength - 1 : k;
      const w = row + (<usize>(kc - s0) << 2);
      store<f32>(w, <f32>(<f64>load<f32>(w) + (1 - d)));
      sum += 1 - d;
    }
    if (sum == 0) {
      // Degenerate footprint (a zero-width box): nearest pixel.
      const kc = min(max(<i32>Math.floor(centre), 0), srcLength - 1);
      store<f32>(row + (<usize>(kc - s0) << 2), 1);
      sum = 1;
    }
    store<i32>(start + (<usize>o << 2), s0);
    const inv = 1 / sum;
    for (let t = 0; t < taps; t++) {
      const w = row + (<usize>t << 2);
      store<f32>(w, <f32>(<f64>load<f32>(w) * inv));
    }
    if (s0 < lo) lo = s0;
    if (s0 + taps - 1 > hi) hi = s0 + taps - 1;
  }
  store<i32>(bounds, lo);
  store<i32>(bounds, hi, 4);
  if (relative) for (let o = 0; o < outLength; o++) store<i32>(start + (<usize>o << 2), load<i32>(start + (<usize>o << 2)) - lo);
}

/**
 * The vertical pass over a plane of row stride `stride` floats: output row i (`span` values from column x0, written
 * at row stride `outStride`) is the weighted sum of `taps` consecutive source rows from start[i]. Columns
 * [span, outStride) are zeroed, so the horizontal pass may read a few values past a row's end (with weight 0).
 */
export function verticalPass(
  src: usize, stride: i32, x0: i32, span: i32,
  start: usize, weights: usize, taps: i32, rows: i32, out: usize, outStride: i32,
): void {
  const rowBytes = <usize>stride << 2;
  for (let i = 0; i < rows; i++) {
    const o = out + (<usize>(i * outStride) << 2);
    const wb = weights + (<usize>(i * taps) << 2);
    let r = src + (<usize>load<i32>(start + (<usize>i << 2)) * rowBytes) + (<usize>x0 << 2);
    // The first tap writes the row, later taps add to it; two rows per sweep halve the loads and stores of `out`.
    let w0 = load<f32>(wb);
    let v0 = f32x4.splat(w0);
    let j = 0;
    for (; j + 4 <= span; j += 4) v128.store(o + (<usize>j << 2), f32x4.mul(v0, v128.load(r + (<usize>j << 2))));
    for (; j < span; j++) store<f32>(o + (<usize>j << 2), w0 * load<f32>(r + (<usize>j << 2)));
    let t = 1;
    for (; t + 2 <= taps; t += 2) {
      const r0 = r + rowBytes, r1 = r0 + rowBytes;
      r = r1;
      w0 = load<f32>(wb + (<usize>t << 2));
      const w1 = load<f32>(wb + (<usize>(t + 1) << 2));
      v0 = f32x4.splat(w0);
      const v1 = f32x4.splat(w1);
      j = 0;
      for (; j + 4 <= span; j += 4) {
        const p = o + (<usize>j << 2), q = <usize>j << 2;
        v128.store(p, f32x4.add(v128.load(p), f32x4.add(f32x4.mul(v0, v128.load(r0 + q)), f32x4.mul(v1, v128.load(r1 + q)))));
      }
      for (; j < span; j++) {
        const p = o + (<usize>j << 2), q = <usize>j << 2;
        store<f32>(p, load<f32>(p) + (w0 * load<f32>(r0 + q) + w1 * load<f32>(r1 + q)));
      }
    }
    if (t < taps) {
      r += rowBytes;
      w0 = load<f32>(wb + (<usize>t << 2));
      v0 = f32x4.splat(w0);
      j = 0;
      for (; j + 4 <= span; j += 4) {
        const p = o + (<usize>j << 2);
        v128.store(p, f32x4.add(v128.load(p), f32x4.mul(v0, v128.load(r + (<usize>j << 2)))));
      }
      for (; j < span; j++) {
        const p = o + (<usize>j << 2);
        store<f32>(p, load<f32>(p) + w0 * load<f32>(r + (<usize>j << 2)));
      }
    }
    for (j = span; j < outStride; j++) store<f32>(o + (<usize>j << 2), 0);
  }
}

/** The four lane sums of a0..a3, as one vector: (sum a0, sum a1, sum a2, sum a3). */
// @ts-ignore: decorator
@inline function laneSums(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const s01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 1, 4, 5), v128.shuffle<f32>(a0, a1, 2, 3, 6, 7));
  const s23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 1, 4, 5), v128.shuffle<f32>(a2, a3, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<f32>(s01, s23, 0, 2, 4, 6), v128.shuffle<f32>(s01, s23, 1, 3, 5, 7));
}

/**
 * The horizontal pass: out[i * n + j] = sum_t weights[j * taps4 + t] * src[i * srcStride + start[j] + t], with the
 * taps zero-padded to taps4 (a multiple of 4) so each output sample is one or two vector products. Four outputs are
 * reduced together (laneSums), so the reduction costs 9 shuffles and adds per four samples, not per sample.
 */
export function horizontalPass(src: usize, srcStride: i32, rows: i32, start: usize, weights: usize, taps4: i32, n: i32, out: usize): void {
  const wStride = <usize>taps4 << 2;
  for (let i = 0; i < rows; i++) {
    const row = src + (<usize>(i * srcStride) << 2);
    const o = out + (<usize>(i * n) << 2);
    let j = 0;
    if (taps4 === 4) {
      for (; j + 4 <= n; j += 4) {
        const s = start + (<usize>j << 2), w = weights + <usize>j * wStride;
        const a0 = f32x4.mul(v128.load(row + (<usize>load<i32>(s) << 2)), v128.load(w));
        const a1 = f32x4.mul(v128.load(row + (<usize>load<i32>(s, 4) << 2)), v128.load(w, 16));
        const a2 = f32x4.mul(v128.load(row + (<usize>load<i32>(s, 8) << 2)), v128.load(w, 32));
        const a3 = f32x4.mul(v128.load(row + (<usize>load<i32>(s, 12) << 2)), v128.load(w, 48));
        v128.store(o + (<usize>j << 2), laneSums(a0, a1, a2, a3));
      }
    } else {
      for (; j + 4 <= n; j += 4) {
        const s = start + (<usize>j << 2), w = weights + <usize>j * wStride;
        const p0 = row + (<usize>load<i32>(s) << 2), p1 = row + (<usize>load<i32>(s, 4) << 2);
        const p2 = row + (<usize>load<i32>(s, 8) << 2), p3 = row + (<usize>load<i32>(s, 12) << 2);
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        for (let g: usize = 0; g < <usize>taps4 << 2; g += 16) {
          a0 = f32x4.add(a0, f32x4.mul(v128.load(p0 + g), v128.load(w + g)));
          a1 = f32x4.add(a1, f32x4.mul(v128.load(p1 + g), v128.load(w + wStride + g)));
          a2 = f32x4.add(a2, f32x4.mul(v128.load(p2 + g), v128.load(w + 2 * wStride + g)));
          a3 = f32x4.add(a3, f32x4.mul(v128.load(p3 + g), v128.load(w + 3 * wStride + g)));
        }
        v128.store(o + (<usize>j << 2), laneSums(a0, a1, a2, a3));
      }
    }
    // The last n % 4 samples one at a time.
    for (; j < n; j++) {
      const p = row + (<usize>load<i32>(start + (<usize>j << 2)) << 2), w = weights + <usize>j * wStride;
      let acc: f32 = 0;
      for (let t = 0; t < taps4; t++) acc += load<f32>(w + (<usize>t << 2)) * load<f32>(p + (<usize>t << 2));
      store<f32>(o + (<usize>j << 2), acc);
    }
  }
}

// ---- intensity (see stages/augment/intensity.ts and noise.ts for the formulas) -------------------------------------------------

/** Four table reads: (table[k0], table[k1], table[k2], table[k3]). WebAssembly SIMD has no gather; a lane load
 * inserts straight from memory (one instruction on x86-64). */
// @ts-ignore: decorator
@inline function gather(table: usize, k: v128): v128 {
  const at = i32x4.shl(k, 2);
  let r = v128.load32_zero(table + <usize>i32x4.extract_lane(at, 0));
  r = v128.load32_lane(table + <usize>i32x4.extract_lane(at, 1), r, 1);
  r = v128.load32_lane(table + <usize>i32x4.extract_lane(at, 2), r, 2);
  return v128.load32_lane(table + <usize>i32x4.extract_lane(at, 3), r, 3);
}

// The gamma table: for u_k = k / size, k = 0..size, the pairs (u_k^g, u_{k+1}^g - u_k^g), so one 64-bit load per value
// fetches both ends of its interval. Built per crop from log2 of the u_k, with a SIMD exp2: about 1 microsecond.

/** 2^y for y in [-126, 0]: 2^round(y) from the exponent bits, times e^(f ln 2) for f in [-0.5, 0.5] by its Taylor
 * series to degree 7 (truncation error below 1e-8, under float32 rounding). */
// @ts-ignore: decorator
@inline function exp2(y: v128): v128 {
  const yc = f32x4.max(y, f32x4.splat(-126));
  const i = f32x4.nearest(yc);
  const x = f32x4.mul(f32x4.sub(yc, i), f32x4.splat(0.6931471805599453));
  let p = f32x4.add(f32x4.mul(x, f32x4.splat(1.0 / 5040)), f32x4.splat(1.0 / 720));
  p = f32x4.add(f32x4.mul(x, p), f32x4.splat(1.0 / 120));
  p = f32x4.add(f32x4.mul(x, p), f32x4.splat(1.0 / 24));
  p = f32x4.add(f32x4.mul(x, p), f32x4.splat(1.0 / 6));
  p = f32x4.add(f32x4.mul(x, p), f32x4.splat(0.5));
  p = f32x4.add(f32x4.mul(x, p), f32x4.splat(1));
  p = f32x4.add(f32x4.mul(x, p), f32x4.splat(1));
  return f32x4.mul(p, i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(i), i32x4.splat(127)), 23));
}

/**
 * Writes the gamma table of exponent g: size + 1 pairs at `pairs`. log2s holds log2(k / size) for k = 0..size;
 * `values` is scratch for size + 4 floats. u_0^g is 0 (g > 0), and the last pair's step is 0.
 */
export function gammaPairs(pairs: usize, values: usize, log2s: usize, size: i32, g: f32): void {
  const vg = f32x4.splat(g);
  for (let k = 0; k <= size; k += 4) {
    v128.store(values + (<usize>k << 2), exp2(f32x4.mul(vg, v128.load(log2s + (<usize>k << 2)))));
  }
  store<f32>(values, 0);
  for (let k = 0; k < size; k++) {
    const t0 = load<f32>(values + (<usize>k << 2)), t1 = load<f32>(values + (<usize>(k + 1) << 2));
    store<f32>(pairs + (<usize>k << 3), t0);
    store<f32>(pairs + (<usize>k << 3), t1 - t0, 4);
  }
  store<f32>(pairs + (<usize>size << 3), 1);
  store<f32>(pairs + (<usize>size << 3), 0, 4);
}

/** u^g from the table with linear interpolation; f is the table coordinate, clamped to [0, size] (NaN to 0).
 * pmin/pmax and floor map to single x86-64 instructions, where min/max and trunc_sat need NaN fix-ups; the index
 * comes from the exponent trick (floor(c) + 2^23 has the integer in its low mantissa bits). */
// @ts-ignore: decorator
@inline function gammaLookup(pairs: usize, f: v128, last: v128): v128 {
  const c = f32x4.pmin(last, f32x4.pmax(f32x4.splat(0), f));
  const fl = f32x4.floor(c);
  const at = i32x4.shl(i32x4.sub(f32x4.add(fl, f32x4.splat(8388608)), i32x4.splat(0x4b000000)), 3);
  let a = v128.load64_zero(pairs + <usize>i32x4.extract_lane(at, 0));
  a = v128.load64_lane(pairs + <usize>i32x4.extract_lane(at, 1), a, 1);
  let b = v128.load64_zero(pairs + <usize>i32x4.extract_lane(at, 2));
  b = v128.load64_lane(pairs + <usize>i32x4.extract_lane(at, 3), b, 1);
  const t0 = v128.shuffle<f32>(a, b, 0, 2, 4, 6), step = v128.shuffle<f32>(a, b, 1, 3, 5, 7);
  return f32x4.add(t0, f32x4.mul(f32x4.sub(c, fl), step));
}

/** The same lookup for one value. */
// @ts-ignore: decorator
@inline function gammaLookup1(pairs: usize, f: f32, size: i32): f32 {
  const c = f > 0 ? (f < <f32>size ? f : <f32>size) : <f32>0; // NaN to 0, as the vector lookup
  const k = <i32>c;
  const p = pairs + (<usize>k << 3);
  return load<f32>(p) + (c - <f32>k) * load<f32>(p, 4);
}

/** Adds the four lanes of v to a float64 running sum (float32 partial sums would drift on large crops). */
// @ts-ignore: decorator
@inline function addLanes(acc: v128, v: v128): v128 {
  return f64x2.add(f64x2.add(acc, f64x2.promote_low_f32x4(v)), f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1)));
}

/** Gamma on [lo, hi] in place, through the table (gammaPairs) of `size` intervals; returns the sum of the results. */
export function gammaSum(data: usize, n: i32, table: usize, size: i32, lo: f32, hi: f32): f64 {
  const span = hi - lo, toIndex = <f32>size / span;
  const vlo = f32x4.splat(lo), vspan = f32x4.splat(span), vto = f32x4.splat(toIndex), last = f32x4.splat(<f32>size);
  let acc = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = data + (<usize>i << 2);
    const g = gammaLookup(table, f32x4.mul(f32x4.sub(v128.load(p), vlo), vto), last);
    const v = f32x4.add(vlo, f32x4.mul(vspan, g));
    v128.store(p, v);
    acc = addLanes(acc, v);
  }
  let sum = f64x2.extract_lane(acc, 0) + f64x2.extract_lane(acc, 1);
  for (; i < n; i++) {
    const p = data + (<usize>i << 2);
    const v = lo + span * gammaLookup1(table, (load<f32>(p) - lo) * toIndex, size);
    store<f32>(p, v);
    sum += v;
  }
  return sum;
}

/** Sum of n values. */
export function sum(data: usize, n: i32): f64 {
  let acc = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) acc = addLanes(acc, v128.load(data + (<usize>i << 2)));
  let s = f64x2.extract_lane(acc, 0) + f64x2.extract_lane(acc, 1);
  for (; i < n; i++) s += load<f32>(data + (<usize>i << 2));
  return s;
}

// Gaussian noise: four xoshiro128** generators side by side, one per SIMD lane. `state` holds 16 words, word w of
// lane l at index 4 w + l (so each word is one vector). Each step yields four 32-bit draws; the top 12 bits of draw
// l are the deviate of value i + l, the low 12 bits that of value i + 4 + l. `normals` is the 2^12-entry table.
let s0: v128 = i32x4.splat(0), s1: v128 = i32x4.splat(0), s2: v128 = i32x4.splat(0), s3: v128 = i32x4.splat(0);

// @ts-ignore: decorator
@inline function loadState(state: usize): void {
  s0 = v128.load(state); s1 = v128.load(state, 16); s2 = v128.load(state, 32); s3 = v128.load(state, 48);
}

// @ts-ignore: decorator
@inline function rotl(x: v128, k: i32): v128 {
  return v128.or(i32x4.shl(x, k), i32x4.shr_u(x, 32 - k));
}

/** One xoshiro128** step in every lane; returns the four outputs. */
// @ts-ignore: decorator
@inline function nextDraws(): v128 {
  const r = i32x4.mul(rotl(i32x4.mul(s1, i32x4.splat(5)), 7), i32x4.splat(9));
  const t = i32x4.shl(s1, 9);
  s2 = v128.xor(s2, s0); s3 = v128.xor(s3, s1); s1 = v128.xor(s1, s2); s0 = v128.xor(s0, s3);
  s2 = v128.xor(s2, t); s3 = rotl(s3, 11);
  return r;
}

/** Table indices of the deviates for values i..i+3 (top 12 bits) and i+4..i+7 (low 12 bits) of a step. */
// @ts-ignore: decorator
@inline function noiseIndexHigh(r: v128): v128 { return i32x4.shr_u(r, 20); }
// @ts-ignore: decorator
@inline function noiseIndexLow(r: v128): v128 { return v128.and(r, i32x4.splat(0xfff)); }

/** x' = scale * x + shift + sigma * z over n values in place (sigma may be 0: then no draws are made). */
export function affineNoise(data: usize, n: i32, scale: f32, shift: f32, sigma: f32, state: usize, normals: usize): void {
  const a = f32x4.splat(scale), b = f32x4.splat(shift), sg = f32x4.splat(sigma);
  if (sigma == 0) {
    let i = 0;
    for (; i + 4 <= n; i += 4) { const p = data + (<usize>i << 2); v128.store(p, f32x4.add(f32x4.mul(a, v128.load(p)), b)); }
    for (; i < n; i++) { const p = data + (<usize>i << 2); store<f32>(p, scale * load<f32>(p) + shift); }
    return;
  }
  loadState(state);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const r = nextDraws();
    const p = data + (<usize>i << 2);
    v128.store(p, f32x4.add(f32x4.add(f32x4.mul(a, v128.load(p)), b), f32x4.mul(sg, gather(normals, noiseIndexHigh(r)))));
    v128.store(p, f32x4.add(f32x4.add(f32x4.mul(a, v128.load(p, 16)), b), f32x4.mul(sg, gather(normals, noiseIndexLow(r)))), 16);
  }
  if (i < n) tailNoise(data, i, n, scale, shift, sigma, normals);
}

/** The last n % 8 values: one more step, its deviates taken in the same order as a full group's. */
function tailNoise(data: usize, from: i32, n: i32, scale: f32, shift: f32, sigma: f32, normals: usize): void {
  const r = nextDraws();
  for (let i = from; i < n; i++) {
    const l = i - from;
    const word = laneOf(r, l & 3);
    const index = l < 4 ? word >>> 20 : word & 0xfff;
    const p = data + (<usize>i << 2);
    store<f32>(p, scale * load<f32>(p) + shift + sigma * load<f32>(normals + (<usize>index << 2)));
  }
}

// @ts-ignore: decorator
@inline function laneOf(v: v128, l: i32): u32 {
  return l == 0 ? <u32>i32x4.extract_lane(v, 0) : l == 1 ? <u32>i32x4.extract_lane(v, 1) : l == 2 ? <u32>i32x4.extract_lane(v, 2) : <u32>i32x4.extract_lane(v, 3);
}

/**
 * Gamma on [lo, hi], then x' = scale * x + shift + sigma * z, in one pass (the whole chain when nothing in between
 * needs the crop mean). sigma 0 makes no draws.
 */
export function gammaAffineNoise(
  data: usize, n: i32, table: usize, size: i32, lo: f32, hi: f32,
  scale: f32, shift: f32, sigma: f32, state: usize, normals: usize,
): void {
  const span = hi - lo, toIndex = <f32>size / span;
  // scale * (lo + span * g) + shift = (scale * span) g + (scale * lo + shift)
  const fa = scale * span, fb = scale * lo + shift;
  const vlo = f32x4.splat(lo), vto = f32x4.splat(toIndex), last = f32x4.splat(<f32>size);
  const a = f32x4.splat(fa), b = f32x4.splat(fb), sg = f32x4.splat(sigma);
  if (sigma != 0) loadState(state);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const p = data + (<usize>i << 2);
    const g0 = gammaLookup(table, f32x4.mul(f32x4.sub(v128.load(p), vlo), vto), last);
    const g1 = gammaLookup(table, f32x4.mul(f32x4.sub(v128.load(p, 16), vlo), vto), last);
    let y0 = f32x4.add(f32x4.mul(a, g0), b), y1 = f32x4.add(f32x4.mul(a, g1), b);
    if (sigma != 0) {
      const r = nextDraws();
      y0 = f32x4.add(y0, f32x4.mul(sg, gather(normals, noiseIndexHigh(r))));
      y1 = f32x4.add(y1, f32x4.mul(sg, gather(normals, noiseIndexLow(r))));
    }
    v128.store(p, y0);
    v128.store(p, y1, 16);
  }
  if (i < n) {
    // Gamma on the tail, then its affine map and noise exactly as affineNoise's tail.
    for (let q = i; q < n; q++) {
      const p = data + (<usize>q << 2);
      store<f32>(p, gammaLookup1(table, (load<f32>(p) - lo) * toIndex, size));
    }
    if (sigma != 0) tailNoise(data, i, n, fa, fb, sigma, normals);
    else for (let q = i; q < n; q++) { const p = data + (<usize>q << 2); store<f32>(p, fa * load<f32>(p) + fb); }
  }
}
