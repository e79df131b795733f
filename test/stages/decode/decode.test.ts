import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { from, lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { FailureLog } from '../../../pipeline/core/failures.js';
import { DecodedImage, type SourceItem } from '../../../schemas/records.js';
import { decode, decodeFile, decodeItem } from '../../../stages/decode/decode.js';
import { Keyring, privacyKeyring } from '../../../pipeline/core/privacy.js';
import { readNpy } from '../../../stages/source/npy.js';
import { cli, fixture, readJson, sample } from '../../shared.js';

async function frames(item: SourceItem, opts = {}): Promise<DecodedImage[]> {
  const out: DecodedImage[] = [];
  for await (const f of decodeItem(item, undefined, opts)) out.push(f);
  return out;
}

describe('decode operator', () => {
  it('emits every frame in order, turns bad files into failure records and goes on', async () => {
    const failures = new FailureLog();
    const items: SourceItem[] = [
      { id: 'emri_small.dcm', path: sample('dicom/pydicom-data/emri_small.dcm') },
      { id: 'MR_truncated.dcm', path: sample('dicom/pydicom/MR_truncated.dcm') },
      { id: 'not-nifti.nii', path: sample('nifti/NIFTI-Reader-JS/not-nifti.nii') },
      { id: 'standard.nii.gz', path: sample('nifti/nibabel/standard.nii.gz') },
      { id: 'missing.dcm', path: fixture('corpus/dicom/none/missing.dcm') },
    ];
    const out = await lastValueFrom(from(items).pipe(decode({ failures }), toArray()));
    expect(out.map((f) => f.id)).toEqual([...Array.from({ length: 10 }, (_, i) => `emri_small.dcm#${i}`), ...Array.from({ length: 7 }, (_, i) => `standard.nii.gz#${i}`)]);
    for (const f of out) expect(DecodedImage.safeParse(f).success).toBe(true);
    expect(failures.records.map((r) => [path.basename(r.file), r.stage, r.code])).toEqual([
      ['MR_truncated.dcm', 'decode', 'truncated'],
      ['not-nifti.nii', 'decode', 'wrong-format'],
      ['missing.dcm', 'decode', 'not-found'],
    ]);
  });
});

describe('DICOM records', () => {
  it('carry the metadata downstream needs and only keyed hashes of ids', async () => {
    const [f] = await frames({ id: 'ct', path: sample('dicom/pydicom/CT_small.dcm') }, { privacy: new Keyring(Buffer.from('site-a secret, 16+ bytes'), 'key file') });
    const ref = readJson<Record<string, any>>(sample('reference/dicom/pydicom/CT_small.dcm.json'));
    expect(f).toMatchObject({ modality: 'CT', rows: 128, cols: 128, samples: 1, dtype: 'int16', photometric: 'MONOCHROME2', frame: 0, frames: 1 });
    expect(f.rescale).toEqual({ slope: ref.rescaleSlope ?? 1, intercept: ref.rescaleIntercept });
    expect(f.spacing?.length).toBe(2);
    expect(f.position).toHaveLength(3);
    expect(f.orientation).toHaveLength(6);
    expect(f.patientKey).toMatch(/^[0-9a-f]{32}$/);
    const [g] = await frames({ id: 'ct', path: sample('dicom/pydicom/CT_small.dcm') }, { privacy: new Keyring(Buffer.from('site-b secret, 16+ bytes'), 'key file') });
    expect(g.patientKey).not.toBe(f.patientKey);
    // The raw PatientID is nowhere in the record.
    const raw = fs.readFileSync(sample('dicom/pydicom/CT_small.dcm'), 'latin1');
    const pid = /\x10\x00\x20\x00LO(..)([^\x00]*)/s.exec(raw);
    const json = JSON.stringify({ ...f, data: undefined });
    if (pid) expect(json).not.toContain(pid[2].trim());
  });

  it('reads geometry and rescale of enhanced multi-frame objects from their functional groups', async () => {
    // Enhanced CT (the eCT_Supplemental.dcm dataset as 12-bit JPEG; decode.corpus.test.ts reads the original): no
    // top-level rescale or spacing; shared groups give them, per-frame groups give each position.
    const ct = await frames({ id: 'e', path: sample('dicom/cornerstone3D/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm') });
    expect(ct).toHaveLength(2);
    expect(ct[0].rescale).toEqual({ slope: 1, intercept: -1024 });
    expect(ct[0].spacing).toEqual([0.388672, 0.388672]);
    expect(ct[0].position?.[2]).not.toBe(ct[1].position?.[2]);
    const mr = await frames({ id: 'm', path: sample('dicom/nibabel/philips_mprage.dcm.gz') });
    expect(mr).toHaveLength(176);
    expect(new Set(mr.map((f) => f.position?.join())).size).toBe(176);
    expect(mr[0].orientation).toHaveLength(6);
    // No top-level RescaleSlope (the reference reads none): each frame's functional groups give it.
    expect(readJson<Record<string, any>>(sample('reference/dicom/nibabel/philips_mprage.dcm.gz.json')).rescaleSlope).toBeNull();
    for (const f of mr) expect(f.rescale.slope).toBeCloseTo(2.1079365079365, 12);
  });

  it('prefers the manifest patient id for the patient key', async () => {
    const [f] = await frames({ id: 'ct', path: sample('dicom/pydicom/CT_small.dcm'), patientId: 'P7', modality: 'CT' });
    expect(f.patientKey).toBe(privacyKeyring().key('patient', 'P7'));
  });

  it('rejects absurd header sizes before allocating', async () => {
    const dcm = new Uint8Array(fs.readFileSync(sample('dicom/pydicom/CT_small.dcm')));
    const dv = new DataView(dcm.buffer);
    for (let i = 132; i + 10 < dcm.length; i++) {
      // (0028,0010) Rows and (0028,0011) Columns, explicit VR "US": value at +8.
      if (dv.getUint16(i, true) === 0x0028 && (dv.getUint16(i + 2, true) === 0x0010 || dv.getUint16(i + 2, true) === 0x0011) && dcm[i + 4] === 0x55) dv.setUint16(i + 8, 0xffff, true);
    }
    const item = { id: 'huge', path: 'huge.dcm' };
    const rss = process.memoryUsage().rss;
    await expect((async () => { for await (const _ of decodeItem(item, dcm, {})) void _; })()).rejects.toMatchObject({ code: 'too-large' });
    const nii = new Uint8Array(fs.readFileSync(sample('nifti/nibabel/anatomical.nii'))); // big endian
    const nv = new DataView(nii.buffer);
    for (const at of [42, 44, 46]) nv.setInt16(at, 32767, false);
    await expect((async () => { for await (const _ of decodeItem({ id: 'n', path: 'huge.nii', format: 'nifti' }, nii, {})) void _; })()).rejects.toMatchObject({ code: 'too-large' });
    expect(process.memoryUsage().rss - rss).toBeLessThan(200 * 1024 ** 2);
  });

  it('rejects a frame larger than maxPixels from the header', async () => {
    await expect(frames({ id: 'x', path: sample('dicom/pydicom/CT_small.dcm') }, { maxPixels: 1000 })).rejects.toMatchObject({ code: 'too-large' });
  });
});

describe('NIfTI slices', () => {
  const file = sample('nifti/nibabel/anatomical.nii'); // 33 x 41 x 25, big endian int16, pixdim 2 mm
  it.each([0, 1, 2] as const)('along axis %i hold the voxels of the volume, with in-plane spacing', async (axis) => {
    const vol = await decodeFile(file);
    const [nx, ny, nz] = [33, 41, 25];
    const at = (i: number, j: number, k: number) => vol.data[(k * ny + j) * nx + i];
    const slices = await frames({ id: 'a', path: file }, { sliceAxis: axis });
    expect(slices.length).toBe([nx, ny, nz][axis]);
    const s = slices[7];
    const [lo, hi] = [0, 1, 2].filter((a) => a !== axis);
    expect([s.rows, s.cols]).toEqual([[nx, ny, nz][hi], [nx, ny, nz][lo]]);
    expect(s.spacing).toEqual([2, 2]);
    for (const [r, c] of [[0, 0], [3, 5], [s.rows - 1, s.cols - 1]]) {
      const idx = [0, 0, 0];
      idx[axis] = 7; idx[hi] = r; idx[lo] = c;
      expect(s.data[r * s.cols + c]).toBe(at(idx[0], idx[1], idx[2]));
    }
  });

  it('applies the scl_slope rule (0 means no scaling) and reports RAS affine positions as LPS', async () => {
    const ref = readJson<Record<string, any>>(sample('reference/nifti/nibabel/anatomical.nii.json'));
    const [s0] = await frames({ id: 'a', path: file });
    expect(s0.rescale).toEqual({ slope: ref.effectiveScaling.slope, intercept: ref.effectiveScaling.inter });
    const A = ref.affine as number[][];
    expect(s0.position).toEqual([-A[0][3], -A[1][3], A[2][3]]);
    const dir = await frames({ id: 'b', path: sample('nifti/NIFTI-Reader-JS/5D_small.nii') });
    const r = readJson<Record<string, any>>(sample('reference/nifti/NIFTI-Reader-JS/5D_small.nii.json'));
    expect(dir[0].rescale.slope).toBe(r.effectiveScaling.slope ?? 1);
    expect(dir.length).toBe(r.shape.slice(2).reduce((a: number, b: number) => a * b, 1));
  });
});

describe('MedMNIST entries', () => {
  it('2-D: one 28 x 28 frame with label and split', async () => {
    const f = await frames({ id: 'p#val/3', path: sample('medmnist/pneumoniamnist.npz'), format: 'npz', entry: 'val/3', label: [1], split: 'val' });
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ rows: 28, cols: 28, samples: 1, dtype: 'uint8', photometric: 'MONOCHROME2', label: [1], split: 'val', modality: 'OT' });
  });

  it('3-D: 28 slices along the slice axis', async () => {
    const f = await frames({ id: 'a#test/0', path: sample('medmnist/adrenalmnist3d.npz'), format: 'npz', entry: 'test/0', label: [0] }, { sliceAxis: 2 });
    expect(f).toHaveLength(28);
    expect(f.map((x) => x.frame)).toEqual(Array.from({ length: 28 }, (_, i) => i));
    expect(new Set(f.flatMap((x) => Array.from(x.data))).size).toBeLessThanOrEqual(2);
  });
});

describe('medssl decode', () => {
  it('prints metadata and writes the stored values as .npy', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-dec-'));
    const out = path.join(dir, 'x.npy');
    const meta = JSON.parse(execFileSync(process.execPath, [cli, 'decode', sample('dicom/pydicom/SC_rgb_rle_2frame.dcm'), '--npy', out, '--json'], { encoding: 'utf8' }));
    const ref = readJson<Record<string, any>>(sample('reference/dicom/pydicom/SC_rgb_rle_2frame.dcm.json'));
    expect(meta.shape).toEqual(ref.shape);
    const arr = readNpy(fs.readFileSync(out));
    expect(arr.shape).toEqual(ref.shape);
    expect(arr.dtype).toBe(ref.dtype);
    fs.rmSync(dir, { recursive: true });
  });

  it('bad input: exit 1, one line on stderr, no stack', () => {
    const bad = sample('dicom/pydicom/MR_truncated.dcm');
    const r = spawnSync(process.execPath, [cli, 'decode', bad, '--npy', path.join(os.tmpdir(), 'never.npy')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^medssl: ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
  });
});
