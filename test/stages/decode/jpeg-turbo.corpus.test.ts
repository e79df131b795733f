// The two 8-bit JPEG paths (jpeg.ts) on every 8-bit JPEG of the corpus: jpeg-turbo.test.ts does the fixture JPEGs.
import { afterEach, describe, expect, it } from 'vitest';
import { useNativeJpeg } from '../../../stages/decode/codecs.js';
import { checkBothPaths, corruptThroughNative, eightBitJpegs } from './jpeg.js';
import { corpusReferences } from './reference.js';

afterEach(() => useNativeJpeg(true));

describe('8-bit JPEG paths over the corpus', () => {
  it('native and WebAssembly decode every 8-bit JPEG of the corpus to the reference', async () => {
    // Grey, RGB without colour transform, YBR_FULL, YBR_FULL_422 multi-frame, odd sizes: all take the native path.
    const jpegs = eightBitJpegs(corpusReferences('dicom'));
    expect(jpegs.length).toBeGreaterThanOrEqual(6);
    await checkBothPaths(jpegs);
  });

  it('corrupt codestreams of every 8-bit corpus JPEG through the native path decode or fail with one-line MedsslErrors', async () => {
    await corruptThroughNative(eightBitJpegs(corpusReferences('dicom')), { nativeRejected: 10, nativeDecoded: 0, failed: 10 });
  });
});
