// Every DICOM and NIfTI file in fixtures/ (the main job's data and the test-only copies) against its pydicom /
// nibabel reference (fixtures/corpus/reference): the check references.corpus.test.ts runs over the whole corpus.
import { describe, expect, it } from 'vitest';
import { type LossyCount, checkReference } from './checks.js';
import { fixtureReferences } from './reference.js';

const lossy: LossyCount = { seen: 0, exact: 0 };

describe.each(['dicom', 'nifti'] as const)('%s fixtures', (group) => {
  const refs = fixtureReferences(group);
  it('have references', () => expect(refs.length).toBeGreaterThanOrEqual(group === 'dicom' ? 25 : 7));
  for (const ref of refs) it(ref.rel, () => checkReference(ref, refs, group, lossy));
});

describe('lossy codestreams', () => {
  // JPEG DCT (8 and 12 bit) and irreversible J2K among the fixtures: each decodes to exactly the reference's values.
  it('all decode bit-exactly', () => {
    expect(lossy.seen).toBeGreaterThanOrEqual(8);
    expect(lossy.exact).toBe(lossy.seen);
  });
});
