import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MedsslError } from '../../../pipeline/failures.js';
import type { SourceItem } from '../../../schemas/records.js';
import { listSources } from '../../../stages/source/source.js';
import { sharedData } from '../../shared.js';

async function collect(inputs: string[]): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const item of listSources(inputs)) out.push(item);
  return out;
}

describe('listSources', () => {
  it('walks the NIfTI corpus: sorted relative ids, formats from magic bytes, .img files folded into their .hdr', async () => {
    const items = await collect([sharedData('nifti')]);
    const ids = items.map((i) => i.id);
    expect(ids).toEqual([...ids].sort());
    expect(ids).toContain('nibabel/anatomical.nii');
    expect(ids).toContain('NIFTI-Reader-JS/air.hdr.gz');
    expect(ids.some((i) => /\.img(\.gz)?$/.test(i))).toBe(false);
    expect(ids.some((i) => i.endsWith('SOURCES.md'))).toBe(false);
    // A .nii that is not NIfTI is still listed so that the decode stage reports it.
    expect(items.find((i) => i.id === 'NIFTI-Reader-JS/not-nifti.nii')).toBeDefined();
    expect(items.filter((i) => i.format === 'nifti').length).toBeGreaterThan(15);
  });

  it('finds DICOM without preamble or extension and gzip-wrapped DICOM', async () => {
    const items = await collect([sharedData('dicom/pydicom')]);
    const byId = new Map(items.map((i) => [i.id, i]));
    expect(byId.get('dicomdir_CT2/17106')?.format).toBe('dicom');
    expect(byId.get('no_meta.dcm')?.format).toBe('dicom');
    expect(byId.get('zipMR.gz')?.format).toBe('dicom');
    expect(byId.get('CT_small.dcm')?.path).toBe(path.join(sharedData('dicom/pydicom'), 'CT_small.dcm'));
  });

  it('is deterministic', async () => {
    const a = await collect([sharedData('dicom/cornerstone3D')]);
    const b = await collect([sharedData('dicom/cornerstone3D')]);
    expect(a).toEqual(b);
    expect(a.length).toBe(fs.readdirSync(sharedData('dicom/cornerstone3D')).length);
  });

  it('lists one item per MedMNIST image with label and split', async () => {
    const items = await collect([sharedData('medmnist/pneumoniamnist.npz')]);
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
    fs.copyFileSync(sharedData('dicom/pydicom/CT_small.dcm'), path.join(dir, 'a.dcm'));
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.copyFileSync(sharedData('nifti/nibabel/standard.nii.gz'), path.join(dir, 'sub', 'b.nii.gz'));
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
    await expect(collect([sharedData('nope/missing.dcm')])).rejects.toBeInstanceOf(MedsslError);
    await expect(collect([sharedData('dicom/SOURCES.md')])).rejects.toThrow(/not a DICOM/);
    await expect(collect([sharedData('nifti/NIFTI-Reader-JS/air.img.gz')])).rejects.toThrow(/name its .hdr/);
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
