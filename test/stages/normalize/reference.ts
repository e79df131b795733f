// DecodedImage records built from reference decodes (stored values + header JSON): those in fixtures (default tests)
// or those of the whole corpus in ../shared/data/reference (corpus tests).
import fs from 'node:fs';
import zlib from 'node:zlib';
import type { DecodedImage, Dtype } from '../../../schemas/records.js';
import { readNpy } from '../../../stages/source/npy.js';
import { fixture, readJson, sample, sharedData } from '../../shared.js';

interface ReferenceJson {
  modality: string; photometricInterpretation: string; rescaleSlope: number | null; rescaleIntercept: number | null;
  bitsStored: number; windowCenter: number | null; windowWidth: number | null; samplesPerPixel: number;
  modalityStats?: { min: number; max: number };
}

/**
 * Frame 0 of `dicom/<rel>` as the decode stage would emit it (no pixel spacing in the references), from the
 * reference in fixtures or, with `from: 'corpus'`, in the corpus.
 */
export function referenceImage(rel: string, from: 'fixtures' | 'corpus' = 'fixtures'): DecodedImage & { reference: ReferenceJson } {
  // fixtures/ct holds the CT slice's reference (the same bytes as the corpus's), which the augment bench reads too.
  const base = from === 'corpus' ? sharedData(`reference/dicom/${rel}`) : rel === CT ? fixture('ct/ct-slice-512') : sample(`reference/dicom/${rel}.json`).slice(0, -'.json'.length);
  const meta = readJson<ReferenceJson>(`${base}.json`);
  const a = readNpy(zlib.gunzipSync(fs.readFileSync(`${base}.npy.gz`)), rel);
  const [, rows, cols, samples = 1] = a.shape;
  const data = a.data.subarray(0, rows * cols * samples);
  return {
    id: `${rel}#0`, sourceId: rel, path: rel, format: 'dicom', frame: 0, frames: a.shape[0], modality: meta.modality,
    rows, cols, samples, dtype: a.dtype as Dtype, data, photometric: meta.photometricInterpretation, bitsStored: meta.bitsStored,
    rescale: { slope: meta.rescaleSlope ?? 1, intercept: meta.rescaleIntercept ?? 0 },
    ...(meta.windowCenter != null && meta.windowWidth != null ? { window: { center: meta.windowCenter, width: meta.windowWidth } } : {}),
    spacing: null, reference: meta,
  };
}

export const CT = 'cornerstone3D/CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm';
