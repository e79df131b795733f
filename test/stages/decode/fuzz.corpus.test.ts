// Mutated corpus files (fuzz.ts): every small file of the corpus, 30 cases each; fuzz.test.ts does the fixture files.
import { describe, expect, it } from 'vitest';
import { CASES_PER_FILE, fuzz, fuzzFiles } from './fuzz.js';
import { corpusReferences } from './reference.js';

describe('decode fuzz over the corpus', () => {
  it(`survives ${CASES_PER_FILE} mutations of every small corpus file`, async () => {
    const files = fuzzFiles([...corpusReferences('dicom'), ...corpusReferences('nifti')]);
    expect(files.length).toBeGreaterThan(40);
    await fuzz(files, { decoded: 100, rejected: 100, codes: 3 });
  }, 600_000);
});
