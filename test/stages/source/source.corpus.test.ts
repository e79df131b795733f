// listSources over the corpus's folders (source.test.ts walks the fixture copies).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SourceItem } from '../../../schemas/records.js';
import { listSources } from '../../../stages/source/source.js';
import { sharedData } from '../../shared.js';

async function collect(inputs: string[]): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const item of listSources(inputs)) out.push(item);
  return out;
}

describe('listSources over the corpus', () => {
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

  it('finds DICOM without preamble or extension and gzip-wrapped DICOM among the pydicom files', async () => {
    const items = await collect([sharedData('dicom/pydicom')]);
    const byId = new Map(items.map((i) => [i.id, i]));
    expect(byId.get('dicomdir_CT2/17106')?.format).toBe('dicom');
    expect(byId.get('no_meta.dcm')?.format).toBe('dicom');
    expect(byId.get('zipMR.gz')?.format).toBe('dicom');
    expect(byId.get('CT_small.dcm')?.path).toBe(path.join(sharedData('dicom/pydicom'), 'CT_small.dcm'));
  });

  it('is deterministic, and lists every file of the cornerstone3D folder', async () => {
    const a = await collect([sharedData('dicom/cornerstone3D')]);
    const b = await collect([sharedData('dicom/cornerstone3D')]);
    expect(a).toEqual(b);
    expect(a.length).toBe(fs.readdirSync(sharedData('dicom/cornerstone3D')).length);
  });

  it('rejects a non-medical file of the corpus named explicitly', async () => {
    await expect(collect([sharedData('dicom/SOURCES.md')])).rejects.toThrow(/not a DICOM/);
  });
});
