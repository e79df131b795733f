// Mutated fixture files (truncations, bit flips, absurd lengths and dimensions; fuzz.ts): every case decodes or fails
// with a one-line MedsslError, in bounded time and memory. fuzz.corpus.test.ts does the same over the whole corpus.
import { describe, expect, it } from 'vitest';
import { CASES_PER_FILE, fuzz, fuzzFiles } from './fuzz.js';
import { fixtureReferences } from './reference.js';

describe('decode fuzz', () => {
  const files = fuzzFiles([...fixtureReferences('dicom'), ...fixtureReferences('nifti')]);
  it(`survives ${files.length * CASES_PER_FILE} mutated fixture files`, async () => {
    expect(files.length).toBeGreaterThan(20);
    await fuzz(files, { decoded: 100, rejected: 100, codes: 3 });
  }, 600_000);
});
