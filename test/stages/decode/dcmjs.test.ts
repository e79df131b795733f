// Files written by dcmjs (the DICOM toolkit in medssl's stack) decode to what was written: pixel values, frames and
// the metadata the pipeline keeps. dcmjs writes explicit and implicit VR little endian correctly; the other transfer
// syntaxes are covered by the real corpus (corpus.test.ts).
import dcmjs from 'dcmjs';
import { describe, expect, it } from 'vitest';
import type { DecodedImage } from '../../../schemas/records.js';
import { decodeItem } from '../../../stages/decode/decode.js';
import { privacyKeyring } from '../../../pipeline/core/privacy.js';

const { DicomMetaDictionary, DicomDict } = dcmjs.data;

function writeDicom(dataset: Record<string, unknown>, transferSyntax: string): Uint8Array {
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: dataset.SOPClassUID,
    MediaStorageSOPInstanceUID: dataset.SOPInstanceUID,
    TransferSyntaxUID: transferSyntax,
    ImplementationClassUID: '1.2.826.0.1.3680043.9.7433.1',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  return new Uint8Array(dict.write());
}

async function decodeBytes(name: string, bytes: Uint8Array): Promise<DecodedImage[]> {
  const frames: DecodedImage[] = [];
  for await (const f of decodeItem({ id: name, path: name }, bytes, {})) frames.push(f);
  return frames;
}

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const IMPLICIT_LE = '1.2.840.10008.1.2';

describe('DICOM written by dcmjs', () => {
  for (const [syntax, uid] of [['explicit', EXPLICIT_LE], ['implicit', IMPLICIT_LE]]) {
    it(`reads a signed 12-bit CT slice with its metadata (${syntax} VR little endian)`, async () => {
      const rows = 5, cols = 7;
      const pixels = Int16Array.from({ length: rows * cols }, (_, i) => ((i * 397) % 4096) - 2048); // the 12-bit range
      const bytes = writeDicom({
        SOPClassUID: '1.2.840.10008.5.1.4.1.1.2', SOPInstanceUID: '1.2.3.4.5', Modality: 'CT',
        PatientID: 'PATIENT-1', StudyInstanceUID: '1.2.3', SeriesInstanceUID: '1.2.3.1',
        Rows: rows, Columns: cols, BitsAllocated: 16, BitsStored: 12, HighBit: 11, PixelRepresentation: 1,
        SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2',
        RescaleSlope: '1.5', RescaleIntercept: '-1024', WindowCenter: '40', WindowWidth: '80', PixelSpacing: ['0.5', '0.7'],
        ImagePositionPatient: ['-10', '20.5', '30'], ImageOrientationPatient: ['1', '0', '0', '0', '1', '0'],
        PixelData: [pixels.buffer], _vrMap: { PixelData: 'OW' },
      }, uid);
      const [frame, ...rest] = await decodeBytes(`ct-${syntax}.dcm`, bytes);
      expect(rest).toHaveLength(0);
      expect(frame).toMatchObject({
        format: 'dicom', modality: 'CT', rows, cols, samples: 1, dtype: 'int16', photometric: 'MONOCHROME2', bitsStored: 12,
        rescale: { slope: 1.5, intercept: -1024 }, window: { center: 40, width: 80 }, spacing: [0.5, 0.7],
        position: [-10, 20.5, 30], orientation: [1, 0, 0, 0, 1, 0],
      });
      expect(Array.from(frame.data)).toEqual(Array.from(pixels));
      // Patient ids become keyed hashes: the same id gives the same key, and the id itself is not in the record.
      expect(frame.patientKey).toBe(privacyKeyring().key('patient', 'PATIENT-1'));
      expect(JSON.stringify({ ...frame, data: [] })).not.toContain('PATIENT-1');
    });
  }

  it('reads every frame of an unsigned 8-bit multi-frame MONOCHROME1 file', async () => {
    const rows = 3, cols = 4, frames = 3;
    const pixels = Uint8Array.from({ length: rows * cols * frames }, (_, i) => (i * 37) % 256);
    const bytes = writeDicom({
      SOPClassUID: '1.2.840.10008.5.1.4.1.1.1.1', SOPInstanceUID: '1.2.3.4.6', Modality: 'DX',
      Rows: rows, Columns: cols, NumberOfFrames: String(frames), BitsAllocated: 8, BitsStored: 8, HighBit: 7,
      PixelRepresentation: 0, SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME1',
      PixelData: [pixels.buffer], _vrMap: { PixelData: 'OB' },
    }, EXPLICIT_LE);
    const out = await decodeBytes('dx.dcm', bytes);
    expect(out.map((f) => [f.frame, f.frames, f.dtype, f.photometric, f.modality])).toEqual(
      [0, 1, 2].map((i) => [i, frames, 'uint8', 'MONOCHROME1', 'DX']),
    );
    out.forEach((f, i) => expect(Array.from(f.data)).toEqual(Array.from(pixels.subarray(i * rows * cols, (i + 1) * rows * cols))));
  });
});
