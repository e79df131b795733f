// Every file of the shared corpus against its pydicom / nibabel reference: bit-exact where the reference expects
// an exact decode, within the lossy tolerance of stages/decode/README.md otherwise, and a clean MedsslError for
// every file the reference could not decode (or decoded header-only).
import { describe, expect, it } from 'vitest';
import { MedsslError } from '../../../pipeline/failures.js';
import { decodeFile } from '../../../stages/decode/decode.js';
import { referenceArray, references, sha256 } from './reference.js';

/** Max |difference| allowed for lossy codestreams (JPEG DCT / irreversible J2K), in stored units; see README. */
const LOSSY_TOLERANCE: Record<string, number> = {};
const DEFAULT_LOSSY = { maxAbs: 1, meanAbs: 0.05 };

/**
 * Files the reference tool could not decode but medssl does (README: "Files read after all"), each mapped to the
 * reference its result must equal: pydicom stops before the pixel data of this file, a tolerant parser does not,
 * and the pixels are those of the intact file it was cut from.
 */
const READ_AFTER_ALL: Record<string, string> = {
  'dicom/pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm': 'dicom/pydicom-data/emri_small_jpeg_2k_lossless.dcm',
};

/** Files the reference decodes that medssl rejects on purpose (README: "Unsupported"). */
const UNSUPPORTED = new Set<string>([]);

async function tryDecode(file: string) {
  try {
    return { out: await decodeFile(file) };
  } catch (err) {
    return { err };
  }
}

/** Lossy files seen, and those that matched the reference bit for bit. */
const lossy = { seen: 0, exact: 0 };

describe.each(['dicom', 'nifti'] as const)('%s corpus', (group) => {
  const refs = references(group);
  it('has references', () => expect(refs.length).toBeGreaterThan(20));
  for (const ref of refs) {
    it(ref.rel, async () => {
      const { out, err } = await tryDecode(ref.file);
      if (!ref.array) {
        const twin = READ_AFTER_ALL[ref.rel];
        if (twin) {
          expect(err).toBeUndefined();
          expect(sha256(out!.data)).toBe(refs.find((r) => r.rel === twin)?.array?.sha256);
          return;
        }
        expect(err, 'expected a clean MedsslError').toBeInstanceOf(MedsslError);
        expect((err as MedsslError).message).not.toMatch(/\n/);
        return;
      }
      if (UNSUPPORTED.has(ref.rel)) {
        expect(err).toBeInstanceOf(MedsslError);
        expect((err as MedsslError).code).toBe('unsupported');
        return;
      }
      if (err) throw err;
      const { data, shape } = out!;
      const expectedShape = group === 'nifti' ? [...ref.array.shape.slice(0, ref.json.shape.length)].reverse().concat(ref.array.shape.slice(ref.json.shape.length)) : ref.array.shape;
      expect(shape).toEqual(expectedShape);
      expect(out!.meta.dtype ?? dtypeName(data)).toBe(ref.array.dtype);
      const exact = group === 'nifti' || ref.json.exactDecodeExpected !== false;
      const digest = sha256(data);
      if (exact) {
        expect(digest).toBe(group === 'nifti' ? ref.array.sha256DiskOrder : ref.array.sha256);
        return;
      }
      lossy.seen++;
      if (digest === ref.array.sha256) {
        lossy.exact++;
        return;
      }
      const want = referenceArray(ref);
      expect(want.length).toBe(data.length);
      let max = 0, sum = 0;
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(Number(data[i]) - Number(want[i]));
        sum += d;
        if (d > max) max = d;
      }
      const tol = LOSSY_TOLERANCE[ref.rel] ?? DEFAULT_LOSSY.maxAbs;
      expect(max, `max |diff| (mean ${sum / want.length})`).toBeLessThanOrEqual(tol);
      expect(sum / want.length).toBeLessThanOrEqual(DEFAULT_LOSSY.meanAbs * Math.max(1, tol / DEFAULT_LOSSY.maxAbs));
    });
  }
});

describe('lossy codestreams', () => {
  // Beyond the tolerance: with libjpeg's islow IDCT for 12-bit JPEG and OpenJPEG for HTJ2K, every lossy file of the
  // corpus decodes to exactly the reference's values (a codec change that breaks this should be noticed).
  it('all decode bit-exactly', () => {
    expect(lossy.seen).toBeGreaterThanOrEqual(20);
    expect(lossy.exact).toBe(lossy.seen);
  });
});

function dtypeName(a: unknown): string {
  return (a as object).constructor.name.replace('Array', '').toLowerCase();
}
