// Pixel kernels of the decode stage: tight loops over typed arrays, no per-element calls.
import type { Dtype, PixelArray } from '../../schemas/records.js';

export const CTORS = {
  uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array,
  uint32: Uint32Array, int32: Int32Array, float32: Float32Array, float64: Float64Array,
} as const;
export const BYTES: Record<Dtype, number> = { uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, float64: 8 };

/** A fresh typed array of `dtype` holding a copy of `bytes` (little endian; swapped when `bigEndian`). */
export function typedCopy(bytes: Uint8Array, dtype: Dtype, bigEndian: boolean): PixelArray {
  const size = BYTES[dtype];
  const n = Math.floor(bytes.length / size);
  const buf = Buffer.allocUnsafeSlow(n * size);
  buf.set(bytes.subarray(0, n * size));
  if (bigEndian) {
    if (size === 2) buf.swap16();
    else if (size === 4) buf.swap32();
    else if (size === 8) buf.swap64();
  }
  return new CTORS[dtype](buf.buffer, buf.byteOffset, n);
}

/**
 * Keeps the low `bits` bits of every value and, for signed arrays, sign-extends from bit `bits - 1` (what pydicom's
 * correct_unused_bits does: bits above BitsStored may hold overlays or garbage, PS3.5 section 8.1.1).
 */
export function keepLowBits(a: PixelArray, bits: number): void {
  if (a instanceof Float32Array || a instanceof Float64Array) return;
  const width = a.BYTES_PER_ELEMENT * 8;
  if (bits >= width || bits <= 0) return;
  const n = a.length;
  if (a instanceof Int8Array || a instanceof Int16Array || a instanceof Int32Array) {
    const shift = 32 - bits;
    for (let i = 0; i < n; i++) a[i] = (a[i] << shift) >> shift;
  } else {
    const mask = bits === 32 ? 0xffffffff : (2 ** bits - 1);
    if (a instanceof Uint32Array) for (let i = 0; i < n; i++) a[i] = (a[i] & mask) >>> 0;
    else for (let i = 0; i < n; i++) a[i] &= mask;
  }
}

/** BitsAllocated 1: bits packed LSB first (PS3.5 section 8.1.1), frames contiguous at the bit level. */
export function unpackBits(bytes: Uint8Array, firstBit: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const bit = firstBit + i;
    out[i] = (bytes[bit >>> 3] >>> (bit & 7)) & 1;
  }
  return out;
}

/**
 * BitsAllocated 12 (ACR-NEMA packing): values 2k and 2k+1 share bytes 3k..3k+2 as v0 = b0 | (b1 & 15) << 8 and
 * v1 = b1 >> 4 | b2 << 4, the little-endian nibble order the reference decodes use (`packed12` in their README:
 * GDCM's other order gives a far rougher image). `count` values from value index `first`, as 16-bit integers.
 */
export function unpack12(bytes: Uint8Array, first: number, count: number, signed: boolean): Uint16Array | Int16Array {
  const out = signed ? new Int16Array(count) : new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    const v = first + i;
    const o = (v >>> 1) * 3;
    out[i] = v & 1 ? (bytes[o + 1] >>> 4) | (bytes[o + 2] << 4) : bytes[o] | ((bytes[o + 1] & 15) << 8);
  }
  return out;
}

/** PlanarConfiguration 1 (RRR..GGG..BBB) to interleaved samples (RGBRGB...). */
export function interleave<T extends PixelArray>(planar: T, pixels: number, samples: number): T {
  const out = new (planar.constructor as new (n: number) => T)(pixels * samples);
  for (let s = 0; s < samples; s++) {
    const base = s * pixels;
    for (let i = 0, o = s; i < pixels; i++, o += samples) out[o] = planar[base + i];
  }
  return out;
}

/** Native YBR_FULL_422 (Y0 Y1 Cb Cr per pixel pair, PS3.3 C.7.6.3.1.2) to 3 samples per pixel, chroma repeated. */
export function expandYbr422(src: Uint8Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(rows * cols * 3);
  const pairs = (rows * cols) >>> 1;
  for (let p = 0; p < pairs; p++) {
    const i = p * 4, o = p * 6;
    const cb = src[i + 2], cr = src[i + 3];
    out[o] = src[i]; out[o + 1] = cb; out[o + 2] = cr;
    out[o + 3] = src[i + 1]; out[o + 4] = cb; out[o + 5] = cr;
  }
  return out;
}

/** Places a smaller decoded tile at the top-left of a zero frame (whole-slide edge tiles). */
export function padFrame<T extends PixelArray>(tile: T, width: number, height: number, cols: number, rows: number, samples: number): T {
  const out = new (tile.constructor as new (n: number) => T)(rows * cols * samples);
  const w = Math.min(width, cols) * samples;
  for (let r = 0; r < Math.min(height, rows); r++) out.set(tile.subarray(r * width * samples, r * width * samples + w), r * cols * samples);
  return out;
}
