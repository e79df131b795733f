// NumPy .npy (format 1.0-3.0) and .npz (a zip of .npy files) without Python.
// Reading rejects bad headers before allocating; writing produces C-order little-endian arrays that numpy loads.

import zlib from 'node:zlib';
import { MedsslError } from '../../pipeline/core/failures.js';
import type { Dtype, PixelArray } from '../../schemas/records.js';

export interface NdArray {
  dtype: Dtype | 'bool';
  shape: number[];
  /** C-order values (Fortran-order files are reported with fortranOrder true and left as stored). */
  data: PixelArray;
  fortranOrder: boolean;
}

const DESCR: Record<string, Dtype | 'bool'> = {
  u1: 'uint8', i1: 'int8', b1: 'bool', u2: 'uint16', i2: 'int16', u4: 'uint32', i4: 'int32', f4: 'float32', f8: 'float64',
};
const CTOR = {
  uint8: Uint8Array, bool: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array, uint32: Uint32Array,
  int32: Int32Array, float32: Float32Array, float64: Float64Array,
} as const;
const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

/** Parses one .npy file. `name` is used in error messages. `maxBytes` bounds the data a header may claim. */
export function readNpy(buf: Uint8Array, name = 'array.npy', maxBytes = 2 ** 31): NdArray {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 10 || !b.subarray(0, 6).equals(MAGIC)) throw new MedsslError('wrong-format', name, 'not a .npy file (bad magic)');
  const major = b[6];
  const headerLen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > b.length) throw new MedsslError('truncated', name, '.npy header runs past the end of the file');
  const header = b.subarray(start, start + headerLen).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([<>|=])([a-z]\d+)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeM = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeM) throw new MedsslError('corrupt', name, `.npy header not understood: ${header.trim().slice(0, 80)}`);
  const dtype = DESCR[descr[2]];
  if (!dtype) throw new MedsslError('unsupported', name, `.npy dtype ${descr[1]}${descr[2]} is not supported`);
  const shape = shapeM[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new MedsslError('corrupt', name, `.npy shape (${shapeM[1]}) is invalid`);
  const count = shape.reduce((a, d) => a * d, 1);
  const Ctor = CTOR[dtype];
  const bytes = count * Ctor.BYTES_PER_ELEMENT;
  if (bytes > maxBytes) throw new MedsslError('too-large', name, `.npy claims ${bytes} bytes of data (limit ${maxBytes})`);
  const offset = start + headerLen;
  if (offset + bytes > b.length) throw new MedsslError('truncated', name, `.npy data ends at byte ${b.length}, expected ${offset + bytes}`);
  // Copy into a fresh, aligned buffer; swap bytes for big-endian data.
  const raw = new Uint8Array(bytes);
  raw.set(b.subarray(offset, offset + bytes));
  const size = Ctor.BYTES_PER_ELEMENT;
  if (descr[1] === '>' && size > 1) {
    for (let i = 0; i < bytes; i += size) raw.subarray(i, i + size).reverse();
  }
  return { dtype, shape, data: new Ctor(raw.buffer, 0, count), fortranOrder: fortran[1] === 'True' };
}

const NPY_DESCR: Record<Dtype, string> = {
  uint8: '|u1', int8: '|i1', uint16: '<u2', int16: '<i2', uint32: '<u4', int32: '<i4', float32: '<f4', float64: '<f8',
};

export function dtypeOf(a: PixelArray): Dtype {
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint16Array) return 'uint16';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Uint32Array) return 'uint32';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Float32Array) return 'float32';
  return 'float64';
}

/** Encodes a C-order little-endian .npy (format 1.0). */
export function writeNpy(data: PixelArray, shape: number[]): Buffer {
  const count = shape.reduce((a, d) => a * d, 1);
  if (count !== data.length) throw new RangeError(`shape (${shape.join(', ')}) holds ${count} values, data has ${data.length}`);
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${NPY_DESCR[dtypeOf(data)]}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  // Pad with spaces so that magic + version + length + header + newline is a multiple of 64 (numpy's alignment).
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  const out = Buffer.alloc(10 + header.length + data.byteLength);
  MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, 10 + header.length);
  return out;
}

/**
 * The arrays of an .npz archive, by name without the `.npy` suffix. Entries may be stored or deflated. `maxBytes`
 * bounds the archive as a whole: the sizes its `.npy` entries claim, added up, before anything is inflated (a few MB
 * of deflated zeros can otherwise claim many GiB). Other entries are skipped unread. Every offset, zip64 ones
 * included, is checked against the file, so a damaged archive is `corrupt` or `truncated`, never a RangeError.
 */
export function readNpz(buf: Uint8Array, name = 'archive.npz', maxBytes = 2 ** 31): Map<string, NdArray> {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const entries = npzDirectory(b, name);
  const wanted = entries.filter((e) => e.name.endsWith('.npy'));
  const claimed = wanted.reduce((a, e) => a + e.usize, 0);
  if (claimed > maxBytes) throw new MedsslError('too-large', name, `its .npy entries claim ${claimed} bytes in all (limit ${maxBytes})`);
  const out = new Map<string, NdArray>();
  for (const e of wanted) {
    if (e.local + 30 > b.length || b.readUInt32LE(e.local) !== 0x04034b50) throw new MedsslError('corrupt', name, `zip entry ${e.name} is damaged`);
    const dataStart = e.local + 30 + b.readUInt16LE(e.local + 26) + b.readUInt16LE(e.local + 28);
    if (dataStart + e.csize > b.length) throw new MedsslError('truncated', name, `zip entry ${e.name} runs past the end of the file`);
    const packed = b.subarray(dataStart, dataStart + e.csize);
    let raw: Uint8Array;
    if (e.method === 0) raw = packed;
    else if (e.method === 8) {
      try {
        raw = zlib.inflateRawSync(packed, { maxOutputLength: Math.max(e.usize, 1) });
      } catch (err) {
        throw new MedsslError('corrupt', name, `zip entry ${e.name} does not inflate to its ${e.usize} bytes: ${(err as Error).message}`);
      }
    } else throw new MedsslError('unsupported', name, `zip entry ${e.name} uses compression method ${e.method}`);
    out.set(e.name.slice(0, -4), readNpy(raw, `${name}:${e.name}`, maxBytes));
  }
  return out;
}

interface ZipEntry {
  name: string;
  method: number;
  csize: number;
  usize: number;
  local: number;
}

/** The central directory (APPNOTE 4.3.12, zip64 4.3.14-4.3.15 and 4.5.3), every read bounds-checked. */
function npzDirectory(b: Buffer, name: string): ZipEntry[] {
  const corrupt = (what: string) => new MedsslError('corrupt', name, what);
  const u64 = (at: number, what: string) => {
    if (at < 0 || at + 8 > b.length) throw corrupt(`${what} lies outside the file`);
    const v = b.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${what} is ${v}, past any file`);
    return Number(v);
  };
  // End of central directory: signature 0x06054b50 within the last 64 KiB + 22 bytes.
  let eocd = -1;
  for (let i = b.length - 22; i >= Math.max(0, b.length - 65557); i--) {
    if (b.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) throw new MedsslError(b.length < 22 ? 'truncated' : 'wrong-format', name, 'not a zip/npz archive (no end of central directory)');
  let count = b.readUInt16LE(eocd + 10);
  let cdOffset = b.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff) {
    // zip64: numpy writes it for large archives.
    const loc = eocd - 20;
    if (loc < 0 || b.readUInt32LE(loc) !== 0x07064b50) throw corrupt('zip64 locator missing');
    const z64 = u64(loc + 8, 'the zip64 end record');
    if (z64 + 56 > b.length || b.readUInt32LE(z64) !== 0x06064b50) throw corrupt('zip64 end record missing or outside the file');
    count = u64(z64 + 32, 'the zip64 entry count');
    cdOffset = u64(z64 + 48, 'the zip64 directory offset');
  }
  // Each central header takes at least 46 bytes: a count the file cannot hold is a lie, not a loop bound.
  if (cdOffset > b.length || count > (b.length - cdOffset) / 46) throw corrupt(`central directory at ${cdOffset} cannot hold ${count} entries`);
  const out: ZipEntry[] = [];
  let p = cdOffset;
  for (let e = 0; e < count; e++) {
    if (p + 46 > b.length || b.readUInt32LE(p) !== 0x02014b50) throw corrupt('zip central directory is damaged');
    const method = b.readUInt16LE(p + 10);
    let csize = b.readUInt32LE(p + 20);
    let usize = b.readUInt32LE(p + 24);
    const nlen = b.readUInt16LE(p + 28), xlen = b.readUInt16LE(p + 30), clen = b.readUInt16LE(p + 32);
    let local = b.readUInt32LE(p + 42);
    const xstart = p + 46 + nlen, xend = xstart + xlen;
    if (xend + clen > b.length) throw corrupt('zip central directory runs past the end of the file');
    const entryName = b.subarray(p + 46, xstart).toString('utf8');
    // The zip64 extra field carries, in this order, those of usize, csize and offset that read 0xffffffff above.
    for (let x = xstart; x + 4 <= xend;) {
      const id = b.readUInt16LE(x), len = b.readUInt16LE(x + 2);
      if (x + 4 + len > xend) throw corrupt(`zip entry ${entryName} has a damaged extra field`);
      if (id === 1) {
        let q = x + 4;
        const next = (what: string) => {
          if (q + 8 > x + 4 + len) throw corrupt(`zip entry ${entryName}: zip64 field lacks its ${what}`);
          const v = u64(q, `zip entry ${entryName}'s ${what}`);
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = next('size');
        if (csize === 0xffffffff) csize = next('compressed size');
        if (local === 0xffffffff) local = next('offset');
      }
      x += 4 + len;
    }
    p = xend + clen;
    out.push({ name: entryName, method, csize, usize, local });
  }
  return out;
}
