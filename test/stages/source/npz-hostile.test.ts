// Hostile .npz archives, crafted here: a zip bomb spread over many entries, a lying entry size, a bomb hidden in an
// entry that is not .npy, and zip64 records that point outside the file. Each must be a typed error (or be read
// without the hidden entry), never a RangeError or an allocation past the archive's cap.
import { describe, expect, it } from 'vitest';
import { MedsslError } from '../../../pipeline/core/failures.js';
import { readNpz, writeNpy } from '../../../stages/source/npy.js';
import { zip } from './zip.js';

const image = () => writeNpy(new Uint8Array(16).fill(7), [1, 4, 4]);

describe('npz: hostile archives', () => {
  it('reads an honest archive, skipping entries that are not .npy without inflating them', () => {
    const hidden = Buffer.alloc(4 << 20); // 4 MiB of zeros, a few KB deflated, claiming far more
    const z = zip([
      { name: 'train_images.npy', body: image(), deflate: true },
      { name: 'notes/bomb.bin', body: hidden, deflate: true, claim: 0xfffffff0 },
    ]);
    const arrays = readNpz(z, 'ok.npz', 1 << 20);
    expect([...arrays.keys()]).toEqual(['train_images']);
    expect(arrays.get('train_images')?.shape).toEqual([1, 4, 4]);
  });

  it('caps the archive as a whole: many entries that each fit are too large together', () => {
    const zeros = writeNpy(new Uint8Array(1 << 20), [1024, 1024]); // 1 MiB each, ~1 KB deflated
    const z = zip(Array.from({ length: 40 }, (_, i) => ({ name: `a${i}.npy`, body: zeros, deflate: true })));
    expect(z.length).toBeLessThan(100_000);
    const rss0 = process.memoryUsage().rss;
    const err = catchError(() => readNpz(z, 'bomb.npz', 8 << 20));
    expect(err.code).toBe('too-large');
    expect(err.message).toMatch(/claim \d+ bytes in all \(limit 8388608\)/);
    // Refused from the directory: nothing near the 40 MiB it claims was inflated.
    expect(process.memoryUsage().rss - rss0).toBeLessThan(32 << 20);
    // Under a cap that holds them all it reads (the cap is on the total, not per entry).
    expect(readNpz(z, 'bomb.npz', 64 << 20).size).toBe(40);
  });

  it('an entry that inflates past the size it claims is corrupt', () => {
    const big = writeNpy(new Uint8Array(1 << 20), [1 << 20]);
    const z = zip([{ name: 'x.npy', body: big, deflate: true, claim: 1000 }]);
    const err = catchError(() => readNpz(z, 'liar.npz'));
    expect(err.code).toBe('corrupt');
    expect(err.message).toMatch(/does not inflate to its 1000 bytes/);
  });

  it('zip64 offsets outside the file are corrupt, not RangeErrors', () => {
    for (const bad of [0xffffffffffn, 0x7fffffffffffffffn, 3n]) {
      const err = catchError(() => readNpz(zip([{ name: 'x.npy', body: image() }], { zip64Offset: bad }), 'z64.npz'));
      expect(err.code).toBe('corrupt');
      expect(err.message).not.toMatch(/\n/);
    }
  });

  it('an entry count the directory cannot hold is corrupt', () => {
    const z = zip([{ name: 'x.npy', body: image() }]);
    z.writeUInt16LE(0xfffe, z.length - 22 + 10);
    expect(catchError(() => readNpz(z, 'count.npz')).code).toBe('corrupt');
  });
});

function catchError(f: () => unknown): MedsslError {
  try {
    f();
  } catch (e) {
    if (e instanceof MedsslError) return e;
    throw e;
  }
  throw new Error('expected a MedsslError');
}
