import path from 'node:path';
import { firstValueFrom, from, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { NormalizeConfig } from '../../../schemas/config.js';
import type { DecodedImage, NormalizedImage, SourceItem } from '../../../schemas/records.js';
import { FailureLog } from '../../../pipeline/core/failures.js';
import { listInputs } from '../../../pipeline/compose/prepare.js';
import { decode } from '../../../stages/decode/decode.js';
import { normalize, normalizeThreads } from '../../../stages/normalize/normalize.js';
import { sample } from '../../shared.js';
import { tempDir, writeSyntheticNpy } from '../cache/data.js';

/** Frames of real fixtures, decoded on this thread: DICOM CT and MR, a NIfTI volume, MedMNIST 2-D and 3-D, .npy. */
async function decodedFixtures(): Promise<DecodedImage[]> {
  const items: SourceItem[] = [];
  for (const f of ['dicom/pydicom/CT_small.dcm', 'dicom/pydicom/MR_small.dcm', 'dicom/pydicom/MR_truncated.dcm', 'nifti/nibabel/anatomical.nii']) {
    for await (const item of listInputs([sample(f)])) items.push(item);
  }
  for (const [f, n] of [['medmnist/pneumoniamnist.npz', 4], ['medmnist/adrenalmnist3d.npz', 1]] as const) {
    let k = 0;
    for await (const item of listInputs([sample(f)])) if (k++ < n) items.push(item);
  }
  for await (const item of listInputs([path.dirname(writeSyntheticNpy(tempDir(), 2, 24, 3)[0])])) items.push(item);
  const failures = new FailureLog();
  const frames = await firstValueFrom(from(items).pipe(decode({ failures }), toArray()));
  // The truncated DICOM fails in decode, before normalize sees it.
  expect(failures.records.map((f) => [path.basename(f.file), f.stage])).toEqual([['MR_truncated.dcm', 'decode']]);
  const first = frames[0];
  // Frames normalize refuses (a size that does not match the data, two samples per pixel) and a frame of one value.
  frames.push(
    { ...first, id: 'short#0', path: 'short.dcm', data: first.data.slice(0, 10) },
    { ...first, id: 'two-samples#0', path: 'two-samples.dcm', samples: 2, data: new Uint16Array(first.rows * first.cols * 2) },
    { ...first, id: 'constant#0', path: 'constant.dcm', data: new Int16Array(first.rows * first.cols).fill(7) },
  );
  return frames;
}

const bytes = (images: NormalizedImage[]) => images.map(({ data, ...fields }) => ({ ...fields, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') }));

describe('normalize on worker threads', () => {
  it('gives exactly the records and failures of this thread (DICOM, NIfTI, .npz, .npy, bad frames)', async () => {
    const decoded = await decodedFixtures();
    expect(new Set(decoded.map((d) => d.format))).toEqual(new Set(['dicom', 'nifti', 'npz', 'npy']));
    // Every frame to a thread, however small (MedMNIST's would otherwise stay here).
    const threads = await normalizeThreads(2, { inlineBelow: 0 });
    try {
      for (const config of [NormalizeConfig.parse({}), NormalizeConfig.parse({ channels: 3, spacing: [0.8, 0.8] })]) {
        const run = async (withThreads: boolean) => {
          const failures = new FailureLog();
          // A fresh copy each run: the threaded path moves the pixels it is given.
          const images = await firstValueFrom(from(structuredClone(decoded)).pipe(
            normalize({ failures, config, preparation: 'p', skipConstantFrames: true, threads: withThreads ? threads : undefined }),
            toArray(),
          ));
          return { images: bytes(images), failures: failures.records };
        };
        const here = await run(false);
        const there = await run(true);
        // Less the two refused frames and the frames of one value (the crafted one, the empty slices of volumes).
        expect(here.images.length).toBeGreaterThan(40);
        expect(here.images.map((i) => i.id)).not.toContain('constant#0');
        expect(here.failures.map((f) => [f.id, f.stage, f.code])).toEqual([['short#0', 'normalize', 'invalid-value'], ['two-samples#0', 'normalize', 'unsupported']]);
        expect(there).toEqual(here);
      }
    } finally {
      await threads.close();
    }
  });

  it('leaves a frame that views a larger buffer intact (it is copied, not moved)', async () => {
    const threads = await normalizeThreads(1, { inlineBelow: 0 });
    try {
      const [frame] = (await decodedFixtures()).filter((d) => d.format === 'dicom');
      const file = new Int16Array(frame.data.length + 16);
      file.set(frame.data as Int16Array, 16);
      const view = file.subarray(16);
      const out = await firstValueFrom(from([{ ...frame, data: view }]).pipe(normalize({ failures: new FailureLog(), config: NormalizeConfig.parse({}), preparation: 'p', threads }), toArray()));
      expect(out).toHaveLength(1);
      expect(file.byteLength).toBe((frame.data.length + 16) * 2);
    } finally {
      await threads.close();
    }
  });
});
