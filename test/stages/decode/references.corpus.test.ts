// Every file of the corpus (../shared/data/dicom and nifti) against its pydicom / nibabel reference: bit-exact where
// the reference expects an exact decode, within the lossy tolerance of stages/decode/README.md otherwise, and a clean
// MedsslError for every file the reference could not decode (or decoded header-only). references.test.ts runs the
// same check on the fixture files.
import { describe, expect, it } from 'vitest';
import { type LossyCount, checkReference } from './checks.js';
import { corpusReferences } from './reference.js';

/** Lossy files seen, and those that matched the reference bit for bit. */
const lossy: LossyCount = { seen: 0, exact: 0 };

describe.each(['dicom', 'nifti'] as const)('%s corpus', (group) => {
  it('every file decodes as its reference says', async () => {
    const refs = corpusReferences(group);
    expect(refs.length).toBeGreaterThan(20);
    const failed: string[] = [];
    for (const ref of refs) {
      try {
        await checkReference(ref, refs, group, lossy);
      } catch (err) {
        failed.push(`${ref.rel}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    expect(failed).toEqual([]);
  });
});

describe('lossy codestreams', () => {
  // Beyond the tolerance: with libjpeg's islow IDCT for 12-bit JPEG and OpenJPEG for HTJ2K, every lossy file of the
  // corpus decodes to exactly the reference's values (a codec change that breaks this should be noticed).
  it('all decode bit-exactly', () => {
    expect(lossy.seen).toBeGreaterThanOrEqual(20);
    expect(lossy.exact).toBe(lossy.seen);
  });
});
