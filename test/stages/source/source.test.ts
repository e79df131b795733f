import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MedsslError } from '../../../pipeline/core/failures.js';
import type { SourceItem } from '../../../schemas/records.js';
import { listSources } from '../../../stages/source/source.js';
import { fixture, sample } from '../../shared.js';

async function collect(inputs: string[]): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const item of listSources(inputs)) out.push(item);
  return out;
}

describe('listSources', () => {
  it('walks a NIfTI folder: sorted relative ids, formats from magic bytes, .img files folded into their .hdr', async () => {
    // The test-only NIfTI copies (source.corpus.test.ts walks the whole NIfTI corpus).
    const items = await collect([fixture('corpus/nifti')]);
    const ids = items.map((i) => i.id);
    expect(ids).toEqual([...ids].sort());
    expect(ids).toEqual(['NIFTI-Reader-JS/5D_small.nii', 'NIFTI-Reader-JS/air.hdr.gz', 'nibabel/standard.nii.gz']);
    expect(items.every((i) => i.format === 'nifti')).toBe(true);
    // A .nii that is not NIfTI is still listed so that the decode stage reports it.
    expect((await collect([fixture('data/nifti')])).find((i) => i.id === 'NIFTI-Reader-JS/not-nifti.nii')).toBeDefined();
  });

  it('skips the files inside a folder that are not medical images', async () => {
    // fixtures/corpus holds SOURCES.md, LICENSES.md and the reference decodes (.json, .npy.gz) beside the images.
    const ids = (await collect([fixture('corpus')])).map((i) => i.id);
    expect(ids.length).toBeGreaterThan(10);
    expect(ids.every((i) => /^(dicom|nifti)\//.test(i))).toBe(true);
  });

  it('finds DICOM without preamble or extension and gzip-wrapped DICOM', async () => {
    const root = fixture('corpus/dicom/pydicom');
    const items = await collect([root]);
    const byId = new Map(items.map((i) => [i.id, i]));
    expect(byId.get('dicomdir_CT2/17106')?.format).toBe('dicom');
    expect(byId.get('no_meta.dcm')?.format).toBe('dicom');
    expect(byId.get('zipMR.gz')?.format).toBe('dicom');
    expect(byId.get('SC_rgb_rle_2frame.dcm')?.path).toBe(path.join(root, 'SC_rgb_rle_2frame.dcm'));
  });

  it('is deterministic', async () => {
    const a = await collect([fixture('data/dicom/cornerstone3D')]);
    const b = await collect([fixture('data/dicom/cornerstone3D')]);
    expect(a).toEqual(b);
    expect(a.length).toBe(fs.readdirSync(fixture('data/dicom/cornerstone3D')).length);
  });

  it('lists one item per MedMNIST image with label and split', async () => {
    const items = await collect([sample('medmnist/pneumoniamnist.npz')]);
    expect(items.length).toBe(3882 + 524 + 624);
    expect(items[0]).toMatchObject({ id: 'pneumoniamnist.npz#train/0', entry: 'train/0', split: 'train', format: 'npz', modality: 'CR' });
    expect(items[0].label).toHaveLength(1);
    expect(items.filter((i) => i.split === 'test').length).toBe(624);
    const positives = items.filter((i) => i.split === 'test' && i.label?.[0] === 1).length;
    expect(positives).toBeGreaterThan(0);
    expect(positives).toBeLessThan(624);
  });

  it('reads CSV and JSONL manifests relative to the manifest', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-src-'));
    fs.copyFileSync(sample('dicom/pydicom/CT_small.dcm'), path.join(dir, 'a.dcm'));
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.copyFileSync(sample('nifti/nibabel/standard.nii.gz'), path.join(dir, 'sub', 'b.nii.gz'));
    fs.writeFileSync(path.join(dir, 'm.csv'), 'path,label,patient_id,modality,split\na.dcm,1,P1,ct,train\n"sub/b.nii.gz","[0,1]",P2,MR,val\n');
    fs.writeFileSync(path.join(dir, 'm.jsonl'), '{"path":"a.dcm","label":[1],"patientId":"P1"}\n\n{"path":"sub/b.nii.gz","split":"test"}\n');
    const csv = await collect([path.join(dir, 'm.csv')]);
    expect(csv).toEqual([
      { id: 'a.dcm', path: path.join(dir, 'a.dcm'), label: [1], patientId: 'P1', modality: 'CT', split: 'train', format: 'dicom' },
      { id: 'sub/b.nii.gz', path: path.join(dir, 'sub', 'b.nii.gz'), label: [0, 1], patientId: 'P2', modality: 'MR', split: 'val', format: 'nifti' },
    ]);
    const jsonl = await collect([path.join(dir, 'm.jsonl')]);
    expect(jsonl.map((i) => [i.id, i.patientId, i.split])).toEqual([['a.dcm', 'P1', undefined], ['sub/b.nii.gz', undefined, 'test']]);
    fs.writeFileSync(path.join(dir, 'bad.csv'), 'path,split\na.dcm,holdout\n');
    await expect(collect([path.join(dir, 'bad.csv')])).rejects.toThrow(/split 'holdout'/);
    fs.rmSync(dir, { recursive: true });
  });

  it('rejects missing inputs and non-medical files named explicitly', async () => {
    await expect(collect([fixture('corpus/nope/missing.dcm')])).rejects.toBeInstanceOf(MedsslError);
    await expect(collect([fixture('corpus/SOURCES.md')])).rejects.toThrow(/not a DICOM/);
    await expect(collect([sample('nifti/NIFTI-Reader-JS/air.img.gz')])).rejects.toThrow(/name its .hdr/);
  });
});

describe('MedMNIST modalities', () => {
  it('tags each dataset with its DICOM modality, so uni-modal clustering can separate them', async () => {
    const { medmnistModality } = await import('../../../stages/source/source.js');
    expect(medmnistModality('data/pneumoniamnist.npz')).toBe('CR');
    expect(medmnistModality('adrenalmnist3d.npz')).toBe('CT');
    expect(medmnistModality('organamnist_224.npz')).toBe('CT');
    expect(medmnistModality('breastmnist.npz')).toBe('US');
    expect(medmnistModality('vesselmnist3d.npz')).toBe('MR');
    expect(medmnistModality('my-archive.npz')).toBeUndefined();
  });
});
