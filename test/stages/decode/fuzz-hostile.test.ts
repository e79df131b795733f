// The fuzz test's hostile cases, on fixtures only: a folder holding a symbolic-link loop, a FIFO, a link out of the
// tree, an npz bomb, JP2 boxes without a length, megabyte text elements and a NIfTI claiming more than it holds goes
// through `ingestInputs` (what `medssl ingest` runs) beside good files; then the crafted JPEG XL and packed 12-bit
// files are mutated (truncations, bit flips, absurd lengths). Nothing may hang, crash, lose a good file's records,
// or allocate past the caps; every bad input becomes a one-line failure naming its file.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../pipeline/core/config.js';
import { FailureLog, MedsslError } from '../../../pipeline/core/failures.js';
import { ingestInputs } from '../../../pipeline/compose/prepare.js';
import { random, type RandomStream } from '../../../pipeline/core/random.js';
import { decodeItem } from '../../../stages/decode/decode.js';
import { readNifti } from '../../../stages/decode/nifti.js';
import { parseDicom } from '../../../stages/decode/dicom.js';
import { writeNpy } from '../../../stages/source/npy.js';
import { fixture } from '../../shared.js';

const CAP = 64 * 1024 * 1024;

/** A deflated zip of `count` .npy entries of `bytes` zeros each: a few KB on disk. */
function npzBomb(file: string, count: number, bytes: number): void {
  const body = zlib.deflateRawSync(writeNpy(new Uint8Array(bytes), [bytes]));
  const locals: Buffer[] = [], centrals: Buffer[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const name = Buffer.from(`train_images${i ? i : ''}.npy`);
    const usize = bytes + 128;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(8, 8); local.writeUInt32LE(body.length, 18); local.writeUInt32LE(usize, 22); local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(8, 10); central.writeUInt32LE(body.length, 20); central.writeUInt32LE(usize, 24);
    central.writeUInt16LE(name.length, 28); central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals), end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(count, 8); end.writeUInt16LE(count, 10); end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  fs.writeFileSync(file, Buffer.concat([...locals, cd, end]));
}

/** JPEG2000.dcm with its codestream wrapped in JP2 boxes whose lengths are 0 (to the end) before the codestream box. */
function jp2WithoutLengths(file: string): void {
  const src = new Uint8Array(fs.readFileSync(fixture('data/dicom/pydicom/JPEG2000.dcm')));
  const d = parseDicom(src, 'JPEG2000.dcm');
  if (d.pixelData?.kind !== 'encapsulated') throw new Error('expected encapsulated pixel data');
  const [o, n] = d.pixelData.fragments[0];
  const boxes = Buffer.concat([
    Buffer.from([0, 0, 0, 12, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]),
    Buffer.from([0, 0, 0, 0, 0x6a, 0x70, 0x32, 0x68]), Buffer.alloc(32),
    Buffer.from([0, 0, 0, 0, 0x6a, 0x70, 0x32, 0x63]), src.subarray(o, o + n),
  ]);
  const even = boxes.length % 2 ? Buffer.concat([boxes, Buffer.alloc(1)]) : boxes;
  const item = Buffer.alloc(8);
  item.writeUInt16LE(0xfffe, 0); item.writeUInt16LE(0xe000, 2); item.writeUInt32LE(even.length, 4);
  fs.writeFileSync(file, Buffer.concat([src.subarray(0, o - 8), item, even, Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0])]));
}

/** A raw implicit VR dataset (4 x 4, 8-bit) whose PatientID is `bytes` long. */
function hugeText(file: string, bytes: number): void {
  const el = (g: number, e: number, v: Buffer) => {
    const h = Buffer.alloc(8);
    h.writeUInt16LE(g, 0); h.writeUInt16LE(e, 2); h.writeUInt32LE(v.length, 4);
    return Buffer.concat([h, v]);
  };
  const us = (x: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(x); return b; };
  fs.writeFileSync(file, Buffer.concat([
    el(0x0008, 0x0060, Buffer.from('OT')), el(0x0010, 0x0020, Buffer.alloc(bytes, 0x41)), el(0x0028, 0x0002, us(1)),
    el(0x0028, 0x0004, Buffer.from('MONOCHROME2 ')), el(0x0028, 0x0010, us(4)), el(0x0028, 0x0011, us(4)), el(0x0028, 0x0100, us(8)),
    el(0x7fe0, 0x0010, Buffer.alloc(16, 9)),
  ]));
}

describe('hostile folder through ingest', () => {
  it('lists, reports and survives every case, and keeps every good file', async () => {
    const top = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-hostile-'));
    const root = path.join(top, 'in');
    const outside = path.join(top, 'outside');
    fs.mkdirSync(path.join(root, 'loop'), { recursive: true });
    fs.mkdirSync(outside);
    fs.copyFileSync(fixture('data/dicom/pydicom/CT_small.dcm'), path.join(root, 'good-ct.dcm'));
    fs.copyFileSync(fixture('crafted/jxl-lossless-12bit.dcm'), path.join(root, 'good-jxl.dcm'));
    fs.copyFileSync(fixture('data/dicom/pydicom/MR_small.dcm'), path.join(outside, 'far.dcm'));
    fs.symlinkSync('..', path.join(root, 'loop', 'again'));
    fs.symlinkSync(root, path.join(root, 'loop', 'root'));
    fs.symlinkSync(outside, path.join(root, 'outside-link'));
    execFileSync('mkfifo', [path.join(root, 'pipe.dcm')]);
    npzBomb(path.join(root, 'bomb.npz'), 200, 16 << 20); // claims 3.2 GB, ~3 MB on disk
    jp2WithoutLengths(path.join(root, 'jp2-no-length.dcm'));
    hugeText(path.join(root, 'huge-text.dcm'), 32 << 20);
    const nii = Buffer.from(fs.readFileSync(fixture('data/nifti/nibabel/anatomical.nii'))); // big endian
    for (const at of [42, 44, 46]) nii.writeInt16BE(32767, at);
    fs.writeFileSync(path.join(root, 'huge-dims.nii'), nii);

    const config = loadConfig(undefined, { data: { maxFileBytes: CAP } });
    const failures = new FailureLog();
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const summary = await ingestInputs(config, [root], path.join(top, 'cache'), { failures });
    const seconds = (performance.now() - t0) / 1000;
    expect(seconds).toBeLessThan(60);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(1.5 * 1024 ** 3);

    const byFile = Object.fromEntries(failures.records.map((f) => [f.file, `${f.code}: ${f.reason}`]));
    expect(byFile['pipe.dcm']).toMatch(/^unreadable: not a regular file \(a FIFO\)/);
    expect(byFile['outside-link']).toMatch(/^unreadable: a symbolic link to outside the input folder/);
    expect(byFile['bomb.npz']).toMatch(/^too-large: its .npy entries claim \d+ bytes in all/);
    expect(byFile['jp2-no-length.dcm']).toMatch(/^corrupt: frame 0 has no J2K size marker/);
    expect(byFile['huge-text.dcm']).toMatch(/^corrupt: element \(0010,0020\) holds 33554432 bytes of text/);
    expect(byFile['huge-dims.nii']).toMatch(/^too-large: /);
    for (const f of failures.records) {
      expect(f.reason).not.toMatch(/\n/);
      expect(f.file.startsWith('/')).toBe(false); // named relative to the input folder
    }
    expect(failures.records).toHaveLength(6); // the loop adds nothing: its folders are visited once
    // The good files are all there: CT_small's one frame and the JPEG XL file's two.
    expect(summary.images).toBe(3);
  }, 120_000);
});

function mutate(src: Uint8Array, rng: RandomStream): Uint8Array {
  const b = new Uint8Array(src);
  const kind = rng.int(3);
  if (kind === 0) return b.subarray(0, rng.int(b.length));
  if (kind === 1) {
    for (let i = 1 + rng.int(8); i > 0; i--) b[rng.int(b.length)] ^= 1 << rng.int(8);
    return b;
  }
  const at = rng.int(Math.max(1, b.length - 4));
  new DataView(b.buffer).setUint32(at, [0xffffffff, 0x7fffffff, 0x80000000, 0][rng.int(4)], rng.bernoulli(0.5));
  return b;
}

describe('mutated crafted files', () => {
  it('JPEG XL, packed 12-bit and lying group lengths decode or fail with one line, in bounded time', async () => {
    const files = ['jxl-lossless-12bit.dcm', 'jxl-lossless-rgb-container.dcm', 'jxl-lossy-rgb.dcm', 'packed-12bit-acr-nema', 'group-length-too-long'];
    const outcomes = { decoded: 0, rejected: 0 };
    const rss0 = process.memoryUsage().rss;
    for (const name of files) {
      const bytes = new Uint8Array(fs.readFileSync(fixture(`crafted/${name}`)));
      for (let k = 0; k < 40; k++) {
        const input = mutate(bytes, random(11).stream({ sample: name, crop: k, purpose: 'fuzz-crafted' }));
        const t0 = performance.now();
        try {
          for await (const img of decodeItem({ id: name, path: name, format: 'dicom' }, input, { maxPixels: 4 << 20, maxFileBytes: CAP })) {
            expect(img.data.length).toBe(img.rows * img.cols * img.samples);
          }
          outcomes.decoded++;
        } catch (err) {
          if (!(err instanceof MedsslError)) throw new Error(`${name} #${k}: not a MedsslError: ${(err as Error)?.stack ?? String(err)}`);
          expect(err.message).not.toMatch(/\n/);
          outcomes.rejected++;
        }
        expect(performance.now() - t0, `${name} #${k}`).toBeLessThan(5000);
      }
    }
    expect(process.memoryUsage().rss - rss0).toBeLessThan(1024 ** 3);
    expect(outcomes.decoded).toBeGreaterThan(10);
    expect(outcomes.rejected).toBeGreaterThan(10);
  }, 300_000);
});

describe('NIfTI', () => {
  it('reads the header with a bounded copy and keeps the voxels as a view on the file bytes', () => {
    // A 48 MiB float32 volume: the old reader copied the whole file to parse its header, then copied the voxels.
    const dims = [256, 256, 192];
    const header = Buffer.alloc(352);
    header.writeInt32LE(348, 0);
    header.writeInt16LE(3, 40);
    dims.forEach((d, i) => header.writeInt16LE(d, 42 + 2 * i));
    for (let i = 4; i < 8; i++) header.writeInt16LE(1, 40 + 2 * i);
    header.writeInt16LE(16, 70); // FLOAT32
    header.writeInt16LE(32, 72);
    for (let i = 0; i < 8; i++) header.writeFloatLE(1, 76 + 4 * i);
    header.writeFloatLE(352, 108);
    header.write('n+1\0', 344, 'latin1');
    const bytes = dims.reduce((a, d) => a * d, 4);
    const file = Buffer.allocUnsafeSlow(352 + bytes);
    header.copy(file, 0);
    file.writeFloatLE(1.5, 352);
    const before = process.memoryUsage().arrayBuffers;
    const vol = readNifti(file, undefined, 'big.nii', 1 << 30);
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(vol.dims).toEqual(dims);
    expect(vol.data[0]).toBe(1.5);
    expect(vol.data.buffer).toBe(file.buffer);
    expect(grown).toBeLessThan(1 << 20);
  });
});
