// The checks of the two 8-bit JPEG paths (native libjpeg-turbo and its WebAssembly fallback) that jpeg-turbo.test.ts
// runs on the fixture JPEGs and jpeg-turbo.corpus.test.ts on every 8-bit JPEG of the corpus.
import fs from 'node:fs';
import { expect } from 'vitest';
import { MedsslError } from '../../../pipeline/core/failures.js';
import { random } from '../../../pipeline/core/random.js';
import { codecStats, isLoaded, loadCodec, useNativeJpeg } from '../../../stages/decode/codecs.js';
import { decodeItem } from '../../../stages/decode/decode.js';
import { type Reference, sha256 } from './reference.js';

const EIGHT_BIT_DCT = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.53', '1.2.840.10008.1.2.4.55']);

/** The 8-bit DCT JPEGs among `refs` that the reference decoded. */
export const eightBitJpegs = (refs: Reference[]) => refs.filter((r) => r.array && EIGHT_BIT_DCT.has(r.json.transferSyntaxUID) && r.json.bitsAllocated === 8);

/** Decodes a whole file (bytes given) and returns the SHA-256 of each frame. */
export async function decodeAll(file: string, bytes?: Uint8Array): Promise<string[]> {
  const out: string[] = [];
  for await (const f of decodeItem({ id: file, path: file }, bytes, {})) out.push(sha256(f.data));
  return out;
}

/** Decoded/rejected counts of one codec, as a delta around `run`. */
export async function counted<T>(codec: 'jpegTurbo' | 'jpeg8', run: () => Promise<T>): Promise<{ value: T; decoded: number; rejected: number }> {
  const before = { ...{ decoded: 0, rejected: 0 }, ...codecStats[codec] };
  const value = await run();
  const after = { ...{ decoded: 0, rejected: 0 }, ...codecStats[codec] };
  return { value, decoded: after.decoded - before.decoded, rejected: after.rejected - before.rejected };
}

/** The first fragment holding a JPEG stream: [start, end) of the stream within the file, and the item length offset. */
export function jpegFragment(bytes: Uint8Array): { start: number; end: number; lengthAt: number } {
  for (let p = 8; p + 3 < bytes.length; p++) {
    if (bytes[p] === 0xff && bytes[p + 1] === 0xd8 && bytes[p + 2] === 0xff && bytes[p - 8] === 0xfe && bytes[p - 7] === 0xff && bytes[p - 6] === 0x00 && bytes[p - 5] === 0xe0) {
      const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(p - 4, true);
      return { start: p, end: p + len, lengthAt: p - 4 };
    }
  }
  throw new Error('no JPEG fragment');
}

/** Native and WebAssembly decode every one of `jpegs` to the same values, the reference's; all take the native path. */
export async function checkBothPaths(jpegs: Reference[]): Promise<void> {
  let native = 0;
  for (const ref of jpegs) {
    useNativeJpeg(true);
    const a = await counted('jpegTurbo', () => decodeAll(ref.file));
    useNativeJpeg(false);
    const b = await counted('jpegTurbo', () => decodeAll(ref.file));
    expect(b.decoded, ref.rel).toBe(0);
    expect(a.value, ref.rel).toEqual(b.value);
    if (a.value.length === 1) expect(a.value[0], ref.rel).toBe(ref.array!.sha256);
    native += a.decoded > 0 ? 1 : 0;
  }
  if (isLoaded('jpegTurbo')) expect(native).toBe(jpegs.length);
}

/**
 * 40 damaged codestreams of each of `jpegs` through the native path: each decodes or fails with a one-line
 * MedsslError; `min` are the least counts of native rejections, native decodes and failures.
 */
export async function corruptThroughNative(jpegs: Reference[], min: { nativeRejected: number; nativeDecoded: number; failed: number }): Promise<void> {
  await loadCodec('jpegTurbo');
  if (!isLoaded('jpegTurbo')) return;
  let nativeRejected = 0, nativeDecoded = 0, failed = 0;
  for (const ref of jpegs) {
    const src = new Uint8Array(fs.readFileSync(ref.file));
    const { start, end } = jpegFragment(src);
    for (let k = 0; k < 40; k++) {
      // Damage inside the codestream only (headers, tables, entropy data), lengths kept: the DICOM layer cannot
      // see it, so every case reaches a JPEG decoder.
      const rng = random(11).stream({ sample: ref.rel, crop: k, purpose: 'jpeg-fuzz' });
      const b = new Uint8Array(src);
      const n = 1 + rng.int(6);
      for (let i = 0; i < n; i++) {
        const at = start + 2 + rng.int(end - start - 4);
        if (rng.bernoulli(0.5)) b[at] ^= 1 << rng.int(8);
        else b[at] = rng.int(256);
      }
      const r = await counted('jpegTurbo', () => decodeAll(ref.file, b).then(() => undefined, (e: unknown) => e));
      nativeDecoded += r.decoded;
      nativeRejected += r.rejected;
      if (r.value !== undefined) {
        failed++;
        expect(r.value, `${ref.rel} case ${k}`).toBeInstanceOf(MedsslError);
        expect((r.value as MedsslError).message).not.toMatch(/\n/);
      }
    }
  }
  // The native decoder saw corrupt streams, refused some (each then tried by the WebAssembly build) and the
  // process is still here.
  expect(nativeRejected).toBeGreaterThan(min.nativeRejected);
  expect(nativeDecoded).toBeGreaterThan(min.nativeDecoded);
  expect(failed).toBeGreaterThan(min.failed);
}
