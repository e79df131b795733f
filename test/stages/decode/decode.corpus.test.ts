// Decode checks on corpus files too large for fixtures/ (decode.test.ts reads a 12-bit JPEG copy of the same dataset).
import { describe, expect, it } from 'vitest';
import type { DecodedImage } from '../../../schemas/records.js';
import { decodeItem } from '../../../stages/decode/decode.js';
import { sharedData } from '../../shared.js';

describe('DICOM records from the corpus', () => {
  it('read geometry and rescale of the enhanced CT eCT_Supplemental.dcm (1 MB) from its functional groups', async () => {
    // No top-level rescale or spacing; shared groups give them, per-frame groups give each position.
    const ct: DecodedImage[] = [];
    for await (const f of decodeItem({ id: 'e', path: sharedData('dicom/pydicom-data/eCT_Supplemental.dcm') }, undefined, {})) ct.push(f);
    expect(ct).toHaveLength(2);
    expect(ct[0].rescale).toEqual({ slope: 1, intercept: -1024 });
    expect(ct[0].spacing).toEqual([0.388672, 0.388672]);
    expect(ct[0].position?.[2]).not.toBe(ct[1].position?.[2]);
  });
});
