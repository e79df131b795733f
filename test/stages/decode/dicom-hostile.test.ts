// Hostile DICOM, crafted here from the fixtures: JP2 wrappers whose box lengths must be worked out (0 = to the end,
// 1 = a 64-bit length follows), a codestream claiming thousands of components, offset tables with many frames and
// fragments, and text elements of megabytes. Each decodes exactly or fails with a one-line MedsslError, before any
// codec is handed an unchecked header and without building strings the size of the file.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MedsslError } from '../../../pipeline/core/failures.js';
import { codecStats, j2kSize } from '../../../stages/decode/codecs.js';
import { decodeItem } from '../../../stages/decode/decode.js';
import { framesOf, parseDicom } from '../../../stages/decode/dicom.js';
import { fixture } from '../../shared.js';

const J2K = fixture('data/dicom/pydicom/JPEG2000.dcm');

/** The file with its single pixel data fragment replaced (the pixel data element has undefined length). */
function withFragment(file: string, fragment: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(fs.readFileSync(file));
  const d = parseDicom(bytes, file);
  if (d.pixelData?.kind !== 'encapsulated') throw new Error('expected encapsulated pixel data');
  const [start] = d.pixelData.fragments[0];
  const even = fragment.length % 2 ? new Uint8Array([...fragment, 0]) : fragment;
  const item = Buffer.alloc(8);
  item.writeUInt16LE(0xfffe, 0); item.writeUInt16LE(0xe000, 2); item.writeUInt32LE(even.length, 4);
  const end = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
  return Buffer.concat([bytes.subarray(0, start - 8), item, even, end]);
}

function codestreamOf(file: string): Uint8Array {
  const bytes = new Uint8Array(fs.readFileSync(file));
  const d = parseDicom(bytes, file);
  if (d.pixelData?.kind !== 'encapsulated') throw new Error('expected encapsulated pixel data');
  const [o, n] = d.pixelData.fragments[0];
  return bytes.slice(o, o + n);
}

/** A JP2 box: `len` overrides the 4-byte length (0: to the end; 1: a 64-bit length follows). */
function box(type: string, body: Uint8Array, len?: number): Buffer {
  if (len === 1) {
    const h = Buffer.alloc(16);
    h.writeUInt32BE(1, 0); h.write(type, 4, 'latin1'); h.writeBigUInt64BE(BigInt(16 + body.length), 8);
    return Buffer.concat([h, body]);
  }
  const h = Buffer.alloc(8);
  h.writeUInt32BE(len ?? 8 + body.length, 0); h.write(type, 4, 'latin1');
  return Buffer.concat([h, body]);
}
const signature = () => box('jP  ', Buffer.from([0x0d, 0x0a, 0x87, 0x0a]));
const ftyp = () => box('ftyp', Buffer.from('jp2 \0\0\0\0jp2 ', 'latin1'));

async function decodeBytes(name: string, bytes: Uint8Array) {
  const frames = [];
  for await (const f of decodeItem({ id: name, path: name }, bytes, {})) frames.push(f);
  return frames;
}

async function failure(name: string, bytes: Uint8Array): Promise<MedsslError> {
  try {
    await decodeBytes(name, bytes);
  } catch (e) {
    if (e instanceof MedsslError) return e;
    throw e;
  }
  throw new Error(`${name} decoded`);
}

describe('JP2 wrappers', () => {
  it('a jp2c box with a 64-bit length (XLBox) decodes to the same values as the bare codestream', async () => {
    const raw = codestreamOf(J2K);
    const [plain] = await decodeBytes('plain.dcm', fs.readFileSync(J2K));
    const wrapped = Buffer.concat([signature(), ftyp(), box('jp2c', raw, 1)]);
    expect(j2kSize(wrapped)).toEqual(j2kSize(raw));
    const [frame] = await decodeBytes('xl.dcm', withFragment(J2K, wrapped));
    expect(Array.from(frame.data)).toEqual(Array.from(plain.data));
  });

  it('a jp2c box of length 0 (to the end) is found', () => {
    const raw = codestreamOf(J2K);
    expect(j2kSize(Buffer.concat([signature(), ftyp(), box('jp2c', raw, 0)]))).toEqual(j2kSize(raw));
  });

  it('boxes whose length cannot be followed to a SIZ are corrupt, and OpenJPEG is never called', async () => {
    const raw = codestreamOf(J2K);
    const before = { ...(codecStats.j2k ?? { decoded: 0, rejected: 0 }) };
    for (const [how, stream] of [
      ['a box of length 0 before jp2c', Buffer.concat([signature(), box('jp2h', Buffer.alloc(40), 0), box('jp2c', raw)])],
      ['a box of length 3', Buffer.concat([signature(), box('jp2h', Buffer.alloc(40), 3), box('jp2c', raw)])],
      ['an XLBox length past the data', Buffer.concat([signature(), (() => { const b = box('jp2h', Buffer.alloc(8), 1); b.writeBigUInt64BE(1n << 60n, 8); return b; })(), box('jp2c', raw)])],
      ['no jp2c box', Buffer.concat([signature(), ftyp()])],
    ] as const) {
      const err = await failure(how, withFragment(J2K, stream));
      expect(err.code, how).toBe('corrupt');
      expect(err.message, how).toMatch(/no J2K size marker/);
    }
    expect(codecStats.j2k ?? { decoded: 0, rejected: 0 }).toEqual(before);
  });

  it('a SIZ claiming thousands of components is corrupt before decoding', async () => {
    const raw = codestreamOf(J2K);
    const at = raw.indexOf(0x51, 1) + 1; // after FF 51: Lsiz(2) Rsiz(2) 8 x 4 bytes, then Csiz
    const siz = Buffer.from(raw);
    siz.writeUInt16BE(16384, at + 2 + 2 + 32);
    const err = await failure('csiz.dcm', withFragment(J2K, siz));
    expect(err.code).toBe('corrupt');
    expect(err.message).toMatch(/16384 components/);
  });
});

describe('encapsulated frames', () => {
  it('splits by the offset table in time linear in frames + fragments', () => {
    const n = 40_000;
    const fragments: Array<[number, number]> = Array.from({ length: n }, (_, i) => [1000 + 8 + i * 24, 16]);
    const offsets = Array.from({ length: n }, (_, i) => i * 24);
    const t0 = performance.now();
    const frames = framesOf({ kind: 'encapsulated', tag: 0x7fe00010, offsets, fragments }, n, new Uint8Array(0), 'many.dcm');
    expect(performance.now() - t0).toBeLessThan(500); // a filter per frame took ~n^2 = 1.6e9 steps
    expect(frames).toHaveLength(n);
    expect(frames[n - 1]).toEqual([fragments[n - 1]]);
    expect(() => framesOf({ kind: 'encapsulated', tag: 0x7fe00010, offsets: [0, 48, 24], fragments: fragments.slice(0, 3) }, 3, new Uint8Array(0), 'x.dcm')).toThrow(/do not increase/);
  });
});

describe('text elements', () => {
  /** An implicit VR little endian dataset without preamble: a 4 x 4 8-bit image with the given text elements. */
  function dataset(text: Record<number, string>): Uint8Array {
    const el = (tag: number, value: Buffer) => {
      const v = value.length % 2 ? Buffer.concat([value, Buffer.from(' ')]) : value;
      const h = Buffer.alloc(8);
      h.writeUInt16LE(tag >>> 16, 0); h.writeUInt16LE(tag & 0xffff, 2); h.writeUInt32LE(v.length, 4);
      return Buffer.concat([h, v]);
    };
    const us = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
    const fields: Array<[number, Buffer]> = [
      [0x00080060, Buffer.from('OT')], [0x00100020, Buffer.from('P1')], [0x00280002, us(1)], [0x00280004, Buffer.from('MONOCHROME2')],
      [0x00280010, us(4)], [0x00280011, us(4)], [0x00280030, Buffer.from('0.5\\0.5')], [0x00280100, us(8)], [0x00280101, us(8)],
      [0x00280103, us(0)], [0x7fe00010, Buffer.alloc(16, 3)],
    ];
    return Buffer.concat(fields.map(([tag, value]) => el(tag, text[tag] !== undefined ? Buffer.from(text[tag], 'latin1') : value)));
  }

  it('of megabytes are corrupt, with one line, without a string of their size', async () => {
    expect((await decodeBytes('ok.dcm', dataset({})))[0].spacing).toEqual([0.5, 0.5]);
    const huge = 'A'.repeat(8 << 20);
    for (const [name, tag] of [['patient id', 0x00100020], ['pixel spacing', 0x00280030], ['modality', 0x00080060], ['photometric', 0x00280004]] as const) {
      const bytes = dataset({ [tag]: huge });
      const heap0 = process.memoryUsage().heapUsed;
      const t0 = performance.now();
      const err = await failure(`${name}.dcm`, bytes);
      expect(err.code, name).toBe('corrupt');
      expect(err.message, name).toMatch(/holds \d{7,} bytes of text, more than the 1024/);
      expect(err.message).not.toMatch(/\n/);
      expect(performance.now() - t0, name).toBeLessThan(1000);
      // A string of the value would be 8 to 16 MB on the heap.
      expect(process.memoryUsage().heapUsed - heap0, name).toBeLessThan(6 << 20);
    }
  });
});
