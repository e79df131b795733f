// The streaming path over the whole corpus: listSources -> Gate -> decode, as the pipeline runs it (pipeline.test.ts
// does the same over the fixture files).
import { describe, it } from 'vitest';
import { sharedData } from '../../shared.js';
import { checkSourceToDecode } from './checks.js';
import { corpusReferences } from './reference.js';

describe('source -> decode over the corpus', () => {
  it('emits every frame of every decodable file and one failure per bad file', async () => {
    await checkSourceToDecode([sharedData('dicom'), sharedData('nifti')], [...corpusReferences('dicom'), ...corpusReferences('nifti')]);
  });
});
