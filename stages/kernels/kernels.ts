// The WebAssembly SIMD pixel kernels (source: stages/kernels/assembly/kernels.ts, built by `npm run build:wasm`
// into dist/): resampling, which normalize (pixel spacing) and augment (crops) both run, and augment's intensity
// chain. One instance per thread, compiled on first use. Its memory is managed here as a
// bump arena: callers take a mark, allocate, run kernels on pointers, copy results out and release the mark.
//
// Views on the memory (`floats`, `ints`) are re-created whenever the memory grows, because growing detaches the
// old buffer: take a view only after the last allocation it must outlive.
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../pipeline/core/version.js';
import { NORMAL_TABLE_BITS, noiseLanes, normalTable } from './noise.js';

/**
 * Gamma reads u^g on [0, 1] from a table with linear interpolation: 1024 intervals. The largest error is next to 0,
 * where u^g is steepest: about 1e-3 of the range for g = 0.7 (below an 8-bit grey level). The table is built per
 * crop by the SIMD kernel (an exp2 of g log2 u_k for every entry, about a microsecond).
 */
export const GAMMA_TABLE_SIZE = 1024;

/** Where the build puts the module (the same file serves the TypeScript sources under test and dist/). */
export const KERNELS_WASM = path.join(packageRoot, 'dist', 'stages', 'kernels', 'wasm', 'kernels.wasm');

interface Exports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  deinterleave(src: number, n: number, channels: number, channel: number, dst: number): void;
  interleave(plane: number, n: number, channels: number, channel: number, dst: number): void;
  verticalPass(src: number, stride: number, x0: number, span: number, start: number, weights: number, taps: number, rows: number, out: number, outStride: number): void;
  horizontalPass(src: number, srcStride: number, rows: number, start: number, weights: number, taps4: number, n: number, out: number): void;
  axisWeights(srcLength: number, outLength: number, offset: number, extent: number, reverse: boolean, taps: number, stride: number, start: number, weights: number, bounds: number, relative: boolean): void;
  gammaPairs(pairs: number, values: number, log2s: number, size: number, g: number): void;
  gammaSum(data: number, n: number, table: number, size: number, lo: number, hi: number): number;
  sum(data: number, n: number): number;
  affineNoise(data: number, n: number, scale: number, shift: number, sigma: number, state: number, normals: number): void;
  gammaAffineNoise(data: number, n: number, table: number, size: number, lo: number, hi: number, scale: number, shift: number, sigma: number, state: number, normals: number): void;
}

const PAGE = 65536;

export class Kernels {
  readonly fn: Exports;
  /** The 2^12 normal deviates of noise.ts, placed once below the arena. */
  readonly normals: number;
  /** log2(k / GAMMA_TABLE_SIZE) for k = 0..GAMMA_TABLE_SIZE (padded to whole vectors), for the gamma tables. */
  readonly log2s: number;
  private top: number;
  private readonly floor: number;
  floats: Float32Array;
  ints: Int32Array;

  constructor(module: WebAssembly.Module) {
    this.fn = new WebAssembly.Instance(module, {}).exports as unknown as Exports;
    this.top = this.fn.heapBase();
    this.floats = new Float32Array(this.fn.memory.buffer);
    this.ints = new Int32Array(this.fn.memory.buffer);
    const normals = normalTable();
    if (normals.length !== 1 << NORMAL_TABLE_BITS) throw new Error('the noise kernel reads a 2^12-entry table');
    this.normals = this.put(normals);
    this.log2s = this.put(Float32Array.from({ length: GAMMA_TABLE_SIZE + 4 }, (_, k) => (k <= GAMMA_TABLE_SIZE ? Math.log2(k / GAMMA_TABLE_SIZE) : 0)));
    this.floor = this.top;
  }

  /** Allocates `count` 4-byte values, 16-byte aligned; returns the byte pointer. Contents are undefined. */
  alloc(count: number): number {
    const ptr = this.top;
    const end = ptr + ((count * 4 + 15) & ~15);
    const have = this.fn.memory.buffer.byteLength;
    if (end > have) {
      this.fn.memory.grow(Math.ceil((end - have) / PAGE));
      this.floats = new Float32Array(this.fn.memory.buffer);
      this.ints = new Int32Array(this.fn.memory.buffer);
    }
    this.top = end;
    return ptr;
  }

  /** Copies values into fresh arena space. */
  put(values: Float32Array | Int32Array): number {
    const ptr = this.alloc(values.length);
    (values instanceof Int32Array ? this.ints : this.floats).set(values, ptr >> 2);
    return ptr;
  }

  mark(): number {
    return this.top;
  }

  /** Frees everything allocated since `mark`. */
  release(mark: number): void {
    this.top = Math.max(this.floor, mark);
  }

  /** A view of `count` floats at `ptr` (valid until the next allocation). */
  view(ptr: number, count: number): Float32Array {
    return this.floats.subarray(ptr >> 2, (ptr >> 2) + count);
  }

  /**
   * The tent-filter weights (resample.ts) mapping [offset, offset + extent) of an axis of `srcLength` pixels onto
   * `outLength` samples, in fresh arena space; `reverse` mirrors the output. Laid out for the pass that reads them:
   * rows (the vertical pass) take `taps` weights per sample and absolute starts; columns (the horizontal pass) take
   * them padded to a multiple of 4, with starts relative to the first column read.
   */
  axis(srcLength: number, outLength: number, offset: number, extent: number, reverse: boolean, use: 'rows' | 'columns'): ArenaAxis {
    const support = Math.max(1, extent / outLength);
    // An open interval of length 2 * support holds at most ceil(2 * support) pixel centres: that is the footprint
    // (2 for plain bilinear). Never more taps than the axis has pixels, since every tap is clamped into the axis.
    const taps = Math.max(1, Math.min(Math.ceil(2 * support - 1e-9), srcLength));
    const stride = use === 'columns' ? (taps + 3) & ~3 : taps;
    const start = this.alloc(outLength), weights = this.alloc(outLength * stride), bounds = this.alloc(2);
    this.fn.axisWeights(srcLength, outLength, offset, extent, reverse, taps, stride, start, weights, bounds, use === 'columns');
    return { length: outLength, start, weights, taps, stride, lo: this.ints[bounds >> 2], hi: this.ints[(bounds >> 2) + 1] };
  }

  /**
   * Resamples a plane (row stride `width` floats) at `src` through the separable filter into `out` (y.length rows
   * of x.length values). The vertical pass runs first, as contiguous row sweeps over the columns the box reads; the
   * horizontal pass then runs on the output rows only.
   */
  resample(src: number, width: number, x: ArenaAxis, y: ArenaAxis, out: number): void {
    const mark = this.mark();
    const span = x.hi - x.lo + 1;
    // The horizontal pass reads x.stride values from a start <= span - taps, so up to 3 past the span: a 4-value
    // zeroed margin keeps those reads inside the row.
    const stride = span + 4;
    const scratch = this.alloc(y.length * stride);
    this.fn.verticalPass(src, width, x.lo, span, y.start, y.weights, y.taps, y.length, scratch, stride);
    this.fn.horizontalPass(scratch, stride, y.length, x.start, x.weights, x.stride, x.length, out);
    this.release(mark);
  }

  /** The table of u^g (see stages/augment/intensity.ts), in fresh arena space. */
  gammaTable(g: number): number {
    const pairs = this.alloc(2 * (GAMMA_TABLE_SIZE + 1));
    const mark = this.mark();
    this.fn.gammaPairs(pairs, this.alloc(GAMMA_TABLE_SIZE + 4), this.log2s, GAMMA_TABLE_SIZE, g);
    this.release(mark);
    return pairs;
  }

  /** Gamma g on [lo, hi] over n values at `data`, in place; returns their sum. */
  gamma(data: number, n: number, g: number, lo: number, hi: number): number {
    const mark = this.mark();
    const sum = this.fn.gammaSum(data, n, this.gammaTable(g), GAMMA_TABLE_SIZE, lo, hi);
    this.release(mark);
    return sum;
  }

  /** x' = scale * x + shift + sigma * z over n values at `data`, z from the crop's noise state. */
  affineNoise(data: number, n: number, scale: number, shift: number, sigma: number, state: NoiseState): void {
    if (sigma === 0 && scale === 1 && shift === 0) return;
    const mark = this.mark();
    this.fn.affineNoise(data, n, scale, shift, sigma, this.put(noiseLanes(state)), this.normals);
    this.release(mark);
  }

  /** Gamma g on [lo, hi], then x' = scale * x + shift + sigma * z, in one pass. */
  gammaAffineNoise(data: number, n: number, g: number, lo: number, hi: number, scale: number, shift: number, sigma: number, state: NoiseState): void {
    const mark = this.mark();
    const table = this.gammaTable(g), lanes = this.put(noiseLanes(state));
    this.fn.gammaAffineNoise(data, n, table, GAMMA_TABLE_SIZE, lo, hi, scale, shift, sigma, lanes, this.normals);
    this.release(mark);
  }
}

export type NoiseState = readonly [number, number, number, number];

/** One axis's filter weights in the arena (Kernels.axis): byte pointers and the layout. */
export interface ArenaAxis { length: number; start: number; weights: number; taps: number; stride: number; lo: number; hi: number }

let compiled: WebAssembly.Module | null = null;
let instance: Kernels | null = null;

/** This thread's kernels. */
export function kernels(): Kernels {
  if (instance) return instance;
  if (!compiled) {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(KERNELS_WASM);
    } catch {
      throw new Error(`the pixel kernels are not built (${KERNELS_WASM} is missing): run \`npm run build\``);
    }
    // Synchronous compilation is fine in Node (the size limit applies to browsers' main threads only).
    compiled = new WebAssembly.Module(bytes);
  }
  instance = new Kernels(compiled);
  return instance;
}

// Typed-array entry points, for callers outside the crop loop (normalize, preview, tests): each copies its input into
// the arena, runs one kernel and copies the result back.

/**
 * Resamples the box `box` (continuous pixel coordinates) of channel `channel` of an interleaved (height, width,
 * channels) image onto an outWidth x outHeight grid through the tent filter (resample.ts), into `out` (one channel);
 * `flip` mirrors it left to right.
 */
export function resampleBox(src: Float32Array, width: number, channels: number, channel: number, box: { x: number; y: number; w: number; h: number }, outWidth: number, outHeight: number, out: Float32Array, flip = false): void {
  const k = kernels();
  const mark = k.mark();
  const n = src.length / channels;
  let plane: number;
  if (channels === 1) plane = k.put(src);
  else {
    const interleaved = k.put(src);
    plane = k.alloc(n);
    k.fn.deinterleave(interleaved, n, channels, channel, plane);
  }
  const x = k.axis(width, outWidth, box.x, box.w, flip, 'columns');
  const y = k.axis(n / width, outHeight, box.y, box.h, false, 'rows');
  const dst = k.alloc(outWidth * outHeight);
  k.resample(plane, width, x, y, dst);
  out.set(k.view(dst, outWidth * outHeight));
  k.release(mark);
}

/** Gamma g on [lo, hi] over `data` in place (see stages/augment/intensity.ts); returns the sum of the results. */
export function applyGamma(data: Float32Array, g: number, lo: number, hi: number): number {
  return inArena(data, (k, ptr) => k.gamma(ptr, data.length, g, lo, hi));
}

/** x' = scale * x + shift + sigma * z over `data` in place (see noise.ts); sigma 0 adds nothing. */
export function affineWithNoise(data: Float32Array, scale: number, shift: number, sigma: number, state: NoiseState): void {
  inArena(data, (k, ptr) => k.affineNoise(ptr, data.length, scale, shift, sigma, state));
}

/** Gamma, then the affine map and noise, in one pass over `data` in place. */
export function gammaAffineNoise(data: Float32Array, g: number, lo: number, hi: number, scale: number, shift: number, sigma: number, state: NoiseState): void {
  inArena(data, (k, ptr) => k.gammaAffineNoise(ptr, data.length, g, lo, hi, scale, shift, sigma, state));
}

function inArena<T>(data: Float32Array, run: (k: Kernels, ptr: number) => T): T {
  const k = kernels();
  const mark = k.mark();
  try {
    const ptr = k.put(data);
    const result = run(k, ptr);
    data.set(k.view(ptr, data.length));
    return result;
  } finally {
    k.release(mark);
  }
}
