import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { PNG } from 'pngjs';
import { toBytes } from '../../../pipeline/app/preview.js';
import { readNpy } from '../../../stages/source/npy.js';
import { cli, fixture, sample } from '../../shared.js';

const exec = promisify(execFile);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-preview-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function preview(file: string, seed: number, out: string, ...extra: string[]) {
  const { stdout } = await exec(process.execPath, [cli, 'preview', file, '--seed', String(seed), '--out', out, ...extra], { timeout: 60_000 });
  return JSON.parse(stdout) as { crops: Array<{ kind: string; size: number; params: Record<string, unknown> }>; image: { modality: string; renderings: number; range: [number, number] } };
}
const files = (dir: string) => fs.readdirSync(dir).sort();
const bytes = (dir: string) => files(dir).map((f) => fs.readFileSync(path.join(dir, f)).toString('base64'));

describe('medssl preview', () => {
  const ct = fixture('ct/ct-slice-512.npy.gz');

  it('writes every crop as .npy and .png plus a sheet, byte-identical for the same seed', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((d) => path.join(tmp, d));
    const report = await preview(ct, 5, a);
    await preview(ct, 5, b);
    await preview(ct, 6, c);
    expect(report.image).toMatchObject({ modality: 'CT', renderings: 3 });
    expect(report.crops.map((x) => [x.kind, x.size])).toEqual([['global', 224], ['global', 224], ...Array(6).fill(['local', 96])]);
    expect(files(a)).toEqual([...Array.from({ length: 8 }, (_, i) => [`crop_${i}.npy`, `crop_${i}.png`]).flat(), 'sheet.png'].sort());
    expect(bytes(b)).toEqual(bytes(a));
    expect(bytes(c)).not.toEqual(bytes(a));
    const crop = readNpy(fs.readFileSync(path.join(a, 'crop_2.npy')));
    expect([crop.dtype, crop.shape]).toEqual(['float32', [96, 96]]);
    expect(fs.readFileSync(path.join(a, 'sheet.png')).subarray(1, 4).toString()).toBe('PNG');
    // The PNG holds exactly the 8-bit rendering of the crop's values over the image's range (grey, so R = G = B).
    const png = PNG.sync.read(fs.readFileSync(path.join(a, 'crop_2.png')));
    expect([png.width, png.height]).toEqual([96, 96]);
    const want = toBytes(crop.data as Float32Array, report.image.range);
    const grey = Uint8Array.from({ length: 96 * 96 }, (_, i) => png.data[4 * i]);
    expect(Buffer.from(grey).equals(Buffer.from(want))).toBe(true);
    const sheet = PNG.sync.read(fs.readFileSync(path.join(a, 'sheet.png')));
    expect(sheet.width).toBeGreaterThan(256 + 2 * 224);
  });

  it('reads a MedMNIST entry with a quick config', async () => {
    const config = path.join(tmp, 'quick.yaml');
    fs.writeFileSync(config, 'augment:\n  global: { count: 2, size: 28, scale: [0.4, 1] }\n  local: { count: 4, size: 14, scale: [0.05, 0.4] }\n');
    const report = await preview(`${sample('medmnist/pneumoniamnist.npz')}#train/3`, 1, path.join(tmp, 'm'), '--config', config);
    expect(report.crops.map((x) => x.size)).toEqual([28, 28, 14, 14, 14, 14]);
  });

  it('reports bad input in one line with exit code 1', async () => {
    const err = await exec(process.execPath, [cli, 'preview', path.join(tmp, 'nope.npy'), '--out', path.join(tmp, 'x')]).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).toBe(1);
    expect((err as { stderr: string }).stderr.trim().split('\n')).toEqual([expect.stringMatching(/^medssl: .*nope\.npy: no such file$/)]);
    const bad = await exec(process.execPath, [cli, 'preview', `${sample('medmnist/pneumoniamnist.npz')}#train/999999`, '--out', path.join(tmp, 'y')]).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { stderr: string }).stderr).toMatch(/has 3882 images/);
  });
});
