import fs from 'node:fs';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readNpy, readNpz, writeNpy } from '../../../stages/source/npy.js';
import { sample } from '../../shared.js';

describe('npy', () => {
  it('round-trips every dtype', () => {
    for (const a of [new Uint8Array([1, 2, 255]), new Int16Array([-3, 0, 7]), new Float32Array([0.5, -1, 2]), new Float64Array([1e-300, 2, 3]), new Uint16Array([65535, 1, 2])]) {
      const back = readNpy(writeNpy(a, [1, 3]));
      expect(back.shape).toEqual([1, 3]);
      expect(back.data).toEqual(a);
      expect(back.fortranOrder).toBe(false);
    }
  });

  it('reads a reference decode and rejects damaged files with a reason', () => {
    const buf = zlib.gunzipSync(fs.readFileSync(sample('reference/dicom/pydicom/CT_small.dcm.npy.gz')));
    const a = readNpy(buf, 'CT_small.npy');
    expect(a.dtype).toBe('int16');
    expect(a.shape).toEqual([1, 128, 128]);
    expect(() => readNpy(buf.subarray(0, 200), 'cut.npy')).toThrow(/cut\.npy.*|data ends at byte 200/);
    expect(() => readNpy(Buffer.from('hello world'), 'x.npy')).toThrow(/not a \.npy file/);
  });
});

describe('npz', () => {
  it('reads MedMNIST archives', () => {
    const z = readNpz(fs.readFileSync(sample('medmnist/pneumoniamnist.npz')));
    expect(z.get('train_images')?.shape).toEqual([3882, 28, 28]);
    expect(z.get('train_labels')?.shape).toEqual([3882, 1]);
    expect(z.get('test_images')?.dtype).toBe('uint8');
  });

  it('rejects a truncated archive', () => {
    const buf = fs.readFileSync(sample('medmnist/pneumoniamnist.npz'));
    expect(() => readNpz(buf.subarray(0, 1000), 'cut.npz')).toThrow(/no end of central directory/);
  });
});
