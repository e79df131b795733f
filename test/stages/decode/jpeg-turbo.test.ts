// The two 8-bit JPEG paths: native libjpeg-turbo (jpeg-turbo.ts) and its WebAssembly fallback. Both must give the
// reference's values on every 8-bit JPEG of the fixtures (jpeg-turbo.corpus.test.ts: of the whole corpus); streams
// the native path does not take (damaged marker structure) or rejects go to the WebAssembly build; corrupt
// codestreams through the native path end in a one-line MedsslError, never a crash.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { MedsslError } from '../../../pipeline/core/failures.js';
import { isLoaded, jpegSegmentsIntact, loadCodec, useNativeJpeg } from '../../../stages/decode/codecs.js';
import { checkBothPaths, corruptThroughNative, counted, decodeAll, eightBitJpegs, jpegFragment } from './jpeg.js';
import { fixtureReferences } from './reference.js';

const jpegs = eightBitJpegs(fixtureReferences('dicom'));

afterEach(() => useNativeJpeg(true));

describe('8-bit JPEG paths', () => {
  it('the native library loads on Linux', async () => {
    await loadCodec('jpegTurbo');
    if (process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64')) expect(isLoaded('jpegTurbo')).toBe(true);
  });

  it('native and WebAssembly decode every 8-bit JPEG of the fixtures to the reference', async () => {
    // Grey, RGB without colour transform, YBR_FULL, odd sizes: all take the native path.
    expect(jpegs.length).toBeGreaterThanOrEqual(4);
    await checkBothPaths(jpegs);
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
    await corruptThroughNative(jpegs, { nativeRejected: 10, nativeDecoded: 0, failed: 10 });
  });
});
