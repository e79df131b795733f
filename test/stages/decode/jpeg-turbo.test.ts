// The two 8-bit JPEG paths: native libjpeg-turbo (jpeg-turbo.ts) and its WebAssembly fallback. Both must give the
// reference's values on every 8-bit JPEG of the corpus; streams the native path does not take (damaged marker
// structure) or rejects go to the WebAssembly build; corrupt codestreams through the native path end in a one-line
// MedsslError, never a crash.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { MedsslError } from '../../../pipeline/failures.js';
import { random } from '../../../pipeline/random.js';
import { codecStats, isLoaded, jpegSegmentsIntact, loadCodec, useNativeJpeg } from '../../../stages/decode/codecs.js';
import { decodeItem } from '../../../stages/decode/decode.js';
import { references, sha256 } from './reference.js';

const EIGHT_BIT_DCT = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.53', '1.2.840.10008.1.2.4.55']);
const jpegs = references('dicom').filter((r) => r.array && EIGHT_BIT_DCT.has(r.json.transferSyntaxUID) && r.json.bitsAllocated === 8);

/** Decodes a whole file (bytes given) and returns the SHA-256 of each frame. */
async function decodeAll(file: string, bytes?: Uint8Array): Promise<string[]> {
  const out: string[] = [];
  for await (const f of decodeItem({ id: file, path: file }, bytes, {})) out.push(sha256(f.data));
  return out;
}

/** Decoded/rejected counts of one codec, as a delta around `run`. */
async function counted<T>(codec: 'jpegTurbo' | 'jpeg8', run: () => Promise<T>): Promise<{ value: T; decoded: number; rejected: number }> {
  const before = { ...{ decoded: 0, rejected: 0 }, ...codecStats[codec] };
  const value = await run();
  const after = { ...{ decoded: 0, rejected: 0 }, ...codecStats[codec] };
  return { value, decoded: after.decoded - before.decoded, rejected: after.rejected - before.rejected };
}

/** The first fragment holding a JPEG stream: [start, end) of the stream within the file, and the item length offset. */
function jpegFragment(bytes: Uint8Array): { start: number; end: number; lengthAt: number } {
  for (let p = 8; p + 3 < bytes.length; p++) {
    if (bytes[p] === 0xff && bytes[p + 1] === 0xd8 && bytes[p + 2] === 0xff && bytes[p - 8] === 0xfe && bytes[p - 7] === 0xff && bytes[p - 6] === 0x00 && bytes[p - 5] === 0xe0) {
      const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(p - 4, true);
      return { start: p, end: p + len, lengthAt: p - 4 };
    }
  }
  throw new Error('no JPEG fragment');
}

afterEach(() => useNativeJpeg(true));

describe('8-bit JPEG paths', () => {
  it('the native library loads on Linux', async () => {
    await loadCodec('jpegTurbo');
    if (process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64')) expect(isLoaded('jpegTurbo')).toBe(true);
  });

  it('native and WebAssembly decode every 8-bit JPEG of the corpus to the reference', async () => {
    expect(jpegs.length).toBeGreaterThanOrEqual(6);
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
    // Grey, RGB without colour transform, YBR_FULL, YBR_FULL_422 multi-frame, odd sizes: all take the native path.
    if (isLoaded('jpegTurbo')) expect(native).toBe(jpegs.length);
  });

  it('a stream whose marker structure is damaged goes to the WebAssembly build', async () => {
    const ref = jpegs.find((r) => r.rel.endsWith('JPEGBaseline_1s_1f_u_08_08.dcm'))!;
    const src = new Uint8Array(fs.readFileSync(ref.file));
    const { end, lengthAt } = jpegFragment(src);
    // Two stray bytes after EOI (the fragment grows by 2): libjpeg stops at EOI, so the frame is intact.
    const grown = new Uint8Array(src.length + 2);
    grown.set(src.subarray(0, end));
    grown.set([0x12, 0x34], end);
    grown.set(src.subarray(end), end + 2);
    const view = new DataView(grown.buffer);
    view.setUint32(lengthAt, view.getUint32(lengthAt, true) + 2, true);
    expect(jpegSegmentsIntact(grown.subarray(lengthAt + 4, end + 2))).toBe(false);
    const wasm = await counted('jpeg8', () => decodeAll(ref.file, grown));
    expect(wasm.value).toEqual([ref.array!.sha256]);
    expect(wasm.decoded).toBe(1);

    // EOI overwritten: the entropy data runs to the end of the fragment; rejected as before, in one line.
    const cut = new Uint8Array(src);
    cut[end - 2] = 0;
    cut[end - 1] = 0;
    expect(jpegSegmentsIntact(cut.subarray(lengthAt + 4, end))).toBe(false);
    const err = await decodeAll(ref.file, cut).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MedsslError);
    expect((err as MedsslError).code).toBe('decode-error');
    expect((err as MedsslError).message).not.toMatch(/\n/);
  });

  it('corrupt codestreams through the native path decode or fail with one-line MedsslErrors', async () => {
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
    expect(nativeRejected).toBeGreaterThan(10);
    expect(nativeDecoded).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(10);
  });
});
