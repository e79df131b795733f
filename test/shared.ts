// Test data: fixtures/ (in the repository) and the external test corpus beside the project (../shared).
//
// Default tests (`npm test`, every *.test.ts but *.corpus.test.ts) read fixtures only: `sample(rel)` names a corpus
// file by its corpus-relative path and finds the copy in fixtures/data (the main job's data) or fixtures/corpus
// (test-only copies, with their SOURCES rows). Corpus tests (*.corpus.test.ts, `npm run test:corpus`) check the
// whole corpus through `sharedData` and `sharedVectors`; they read it only inside tests and hooks, never while the
// file is being collected, so that `vitest list` can count them where the corpus is missing.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const fixture = (rel = '') => path.join(projectRoot, 'fixtures', rel);

/** The external corpus: `../shared` beside the project. */
export const corpusRoot = path.join(projectRoot, '..', 'shared');

function corpus(dir: string, rel: string): string {
  // vitest.config.ts sets this for the default suite: a default test that reaches for the corpus fails here, even
  // on a machine that has it, instead of passing there and failing in a fresh clone.
  if (process.env.MEDSSL_TEST_SUITE === 'default') {
    throw new Error(`${dir}/${rel} is in the external corpus: default tests read fixtures only (sample()); a test over the corpus goes in a *.corpus.test.ts file`);
  }
  return path.join(corpusRoot, dir, rel);
}

/** `../shared/data/<rel>`: the real corpus and its reference decodes (corpus tests only). */
export const sharedData = (rel = '') => corpus('data', rel);
/** `../shared/vectors/<rel>` (corpus tests only). */
export const sharedVectors = (rel = '') => corpus('vectors', rel);

/**
 * The copy in fixtures of the corpus file `rel` (a path relative to ../shared/data, e.g. 'dicom/pydicom/CT_small.dcm'
 * or 'reference/dicom/pydicom/CT_small.dcm.json'): fixtures/data/<rel>, else fixtures/corpus/<rel>. Files only (a
 * folder may exist in both places: walk `fixture('data/...')` or `fixture('corpus/...')`).
 */
export function sample(rel: string): string {
  for (const root of ['data', 'corpus']) {
    const file = fixture(path.join(root, rel));
    if (fs.existsSync(file) && fs.statSync(file).isFile()) return file;
  }
  throw new Error(`${rel}: not in fixtures/data or fixtures/corpus (copy it from the corpus byte for byte, with its SOURCES row)`);
}

/** The built CLI (npm test builds dist/ before running vitest). */
export const cli = path.join(projectRoot, 'dist', 'pipeline', 'app', 'cli.js');
export const readJson = <T = unknown>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;
