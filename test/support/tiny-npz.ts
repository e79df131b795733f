// A tiny labelled MedMNIST-layout archive (8x8 images, train/val/test with labels) for end-to-end tests.
import fs from 'node:fs';
import zlib from 'node:zlib';
import { random } from '../../pipeline/core/random.js';
import { writeNpy } from '../../stages/source/npy.js';

/** Images whose label 1 adds a bright band, so an encoder can learn it in a few steps. */
/** A stored (uncompressed) zip of .npy entries: what numpy.savez writes. */
export function writeNpz(file: string, arrays: Record<string, { data: Uint8Array; shape: number[] }>): void {
  const locals: Buffer[] = [], centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, a] of Object.entries(arrays)) {
    const body = writeNpy(a.data, a.shape), fname = Buffer.from(`${name}.npy`);
    const crc = zlib.crc32(body);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18); local.writeUInt32LE(body.length, 22); local.writeUInt16LE(fname.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(20, 4); central.writeUInt16LE(20, 6); central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20); central.writeUInt32LE(body.length, 24); central.writeUInt16LE(fname.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, fname, body);
    centrals.push(central, fname);
    offset += local.length + fname.length + body.length;
  }
  const cd = Buffer.concat(centrals), end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(Object.keys(arrays).length, 8); end.writeUInt16LE(Object.keys(arrays).length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  fs.writeFileSync(file, Buffer.concat([...locals, cd, end]));
}

export function tinyArchive(file: string): void {
  const size = 8, arrays: Record<string, { data: Uint8Array; shape: number[] }> = {};
  for (const [split, n, seed] of [['train', 60, 1], ['val', 30, 2], ['test', 30, 3]] as const) {
    const images = new Uint8Array(n * size * size), labels = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const rs = random(seed).stream({ sample: i, purpose: 'tiny-npz' });
      labels[i] = i % 3 === 0 ? 1 : 0;
      for (let p = 0; p < size * size; p++) images[i * size * size + p] = rs.int(80) + (labels[i] && p % size > 3 ? 150 : 0);
    }
    arrays[`${split}_images`] = { data: images, shape: [n, size, size] };
    arrays[`${split}_labels`] = { data: labels, shape: [n, 1] };
  }
  writeNpz(file, arrays);
}

