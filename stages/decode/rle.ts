// DICOM RLE Lossless (PS3.5 Annex G): up to 15 PackBits segments per frame, one per byte plane of each sample,
// most significant byte first. Each segment is decoded straight into its strided place in the little-endian output.
import { MedsslError } from '../../pipeline/core/failures.js';

/**
 * Decodes one RLE frame into `out` (little-endian bytes, samples interleaved): rows*cols*samples*bytesPerSample bytes.
 * Throws MedsslError for a bad header or a segment that decodes short.
 */
export function decodeRleFrame(frame: Uint8Array, out: Uint8Array, pixels: number, samples: number, bytesPerSample: number, file: string): void {
  if (frame.length < 64) throw new MedsslError('corrupt', file, `RLE frame is ${frame.length} bytes, shorter than its 64-byte header`);
  const dv = new DataView(frame.buffer, frame.byteOffset, 64);
  const segments = dv.getUint32(0, true);
  const expected = samples * bytesPerSample;
  if (segments !== expected) throw new MedsslError('corrupt', file, `RLE header lists ${segments} segments, expected ${expected}`);
  const stride = samples * bytesPerSample;
  for (let s = 0; s < segments; s++) {
    const start = dv.getUint32(4 + 4 * s, true);
    const end = s + 1 < segments ? dv.getUint32(8 + 4 * s, true) : frame.length;
    if (start < 64 || start > end || end > frame.length) throw new MedsslError('corrupt', file, `RLE segment ${s} offsets ${start}..${end} are out of range`);
    const sample = Math.floor(s / bytesPerSample);
    const byte = bytesPerSample - 1 - (s % bytesPerSample); // segment 0 of a sample is its MSB
    const written = packBits(frame, start, end, out, sample * bytesPerSample + byte, stride, pixels);
    if (written < pixels) throw new MedsslError('corrupt', file, `RLE segment ${s} decodes to ${written} bytes, expected ${pixels}`);
  }
}

/** PackBits into out[base + k * stride] for k < count; returns how many bytes were produced (extra input is ignored). */
function packBits(src: Uint8Array, p: number, end: number, out: Uint8Array, base: number, stride: number, count: number): number {
  let k = 0;
  let o = base;
  while (p < end && k < count) {
    const n = src[p++];
    if (n < 128) {
      // Literal run of n + 1 bytes.
      let len = n + 1;
      if (len > end - p) len = end - p;
      if (len > count - k) len = count - k;
      for (let i = 0; i < len; i++, o += stride) out[o] = src[p + i];
      p += n + 1;
      k += len;
    } else if (n > 128) {
      // Replicate the next byte 257 - n times (n is -(len - 1) as a signed byte).
      if (p >= end) break;
      const v = src[p++];
      let len = 257 - n;
      if (len > count - k) len = count - k;
      for (let i = 0; i < len; i++, o += stride) out[o] = v;
      k += len;
    }
    // n === 128 (-128) is a no-op.
  }
  return k;
}
