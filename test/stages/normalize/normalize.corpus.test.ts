// Normalize checks on reference decodes of the corpus too large for fixtures/ (1.9 MB and 1.2 MB of stored values);
// normalize.test.ts runs them on small ones.
import { describe, it } from 'vitest';
import { checkMonochrome1, checkYbrToRgb } from './checks.js';
import { referenceImage } from './reference.js';

describe('normalize on large corpus images', () => {
  it('inverts pydicom-data/RG3_J2KI.dcm (MONOCHROME1, 1760 x 1760): the brightest stored value is black, the darkest white', () => {
    checkMonochrome1(referenceImage('pydicom-data/RG3_J2KI.dcm', 'corpus'));
  });

  it('converts pydicom/examples_ybr_color.dcm (YBR_FULL_422 ultrasound) to RGB, or to luma with one channel', () => {
    checkYbrToRgb(referenceImage('pydicom/examples_ybr_color.dcm', 'corpus'), 120 * 320 + 160);
  });
});
