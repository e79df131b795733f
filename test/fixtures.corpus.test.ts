// The copies in fixtures/ are the corpus's files, byte for byte (fixtures.test.ts checks their SOURCES rows).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, readJson, sharedData, sharedVectors } from './shared.js';

const files = (dir: string): string[] =>
  fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => fs.statSync(path.join(dir, f)).isFile() && !/^(SOURCES|LICENSES)\.md$/.test(f)).map((f) => f.split(path.sep).join('/'));

describe('fixtures against the corpus', () => {
  it('every file in fixtures/data and fixtures/corpus is the corpus file of the same path', () => {
    const differ: string[] = [];
    for (const dir of ['data', 'corpus']) {
      for (const rel of files(fixture(dir))) {
        const copy = sharedData(rel);
        if (!fs.existsSync(copy) || !fs.readFileSync(fixture(`${dir}/${rel}`)).equals(fs.readFileSync(copy))) differ.push(`${dir}/${rel}`);
      }
    }
    expect(differ).toEqual([]);
  });

  it('fixtures/ct holds the reference decode of the corpus CT slice', () => {
    const ref = sharedData('reference/dicom/cornerstone3D/CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm');
    for (const ext of ['json', 'npy.gz']) expect(fs.readFileSync(fixture(`ct/ct-slice-512.${ext}`)).equals(fs.readFileSync(`${ref}.${ext}`))).toBe(true);
  });

  it('the sample SwAV vectors are unmodified cases of the corpus file', () => {
    type Vectors = { about: string; cases: Array<{ id: number }> };
    const all = readJson<Vectors>(sharedVectors('swav_vectors.json'));
    const sample = readJson<Vectors>(fixture('vectors/swav_vectors.sample.json'));
    expect(sample.about).toBe(all.about);
    for (const c of sample.cases) expect(c).toEqual(all.cases.find((x) => x.id === c.id));
  });
});
