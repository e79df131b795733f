// The crafted files of fixtures/crafted (fixtures/crafted/SOURCES.md): the kinds of real file that pydicom decodes and
// medssl once rejected (JPEG XL, packed 12-bit ACR-NEMA, lying group lengths), each against its reference decode,
// and against the values it was made from, which the reference cannot vouch for by itself.
import crypto from 'node:crypto';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { PixelArray } from '../../../schemas/records.js';
import { decodeFile } from '../../../stages/decode/decode.js';
import { readNpy } from '../../../stages/source/npy.js';
import { listSources } from '../../../stages/source/source.js';
import { fixture } from '../../shared.js';

const dir = fixture('crafted');
const refs = fs.readdirSync(dir).filter((n) => n.endsWith('.json')).map((n) => ({
  name: n.slice(0, -'.json'.length),
  json: JSON.parse(fs.readFileSync(`${dir}/${n}`, 'utf8')) as { shape: number[]; dtype: string; sha256: string; exactDecodeExpected: boolean; npy: string },
}));
const sha256 = (a: PixelArray) => crypto.createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
const referenceArray = (npy: string) => readNpy(zlib.gunzipSync(fs.readFileSync(`${dir}/${npy}`))).data;

/** CT_small.dcm's stored values, which every crafted file was made from. */
async function ctSmall(): Promise<Int16Array> {
  return (await decodeFile(fixture('data/dicom/pydicom/CT_small.dcm'))).data as Int16Array;
}

describe('crafted files against their reference decodes', () => {
  it('has the five crafted files', () => expect(refs.map((r) => r.name).sort()).toEqual([
    'group-length-too-long', 'jxl-lossless-12bit.dcm', 'jxl-lossless-rgb-container.dcm', 'jxl-lossy-rgb.dcm', 'packed-12bit-acr-nema',
  ]));

  for (const ref of refs) {
    it(`${ref.name}: ${ref.json.exactDecodeExpected ? 'bit-exact' : 'within 1 stored unit (lossy JPEG XL)'}`, async () => {
      const out = await decodeFile(`${dir}/${ref.name}`);
      expect(out.shape).toEqual(ref.json.shape);
      expect(out.meta.dtype).toBe(ref.json.dtype);
      if (ref.json.exactDecodeExpected) {
        expect(sha256(out.data)).toBe(ref.json.sha256);
        return;
      }
      // Lossy JPEG XL: jxl-oxide and libjxl render the same codestream with different float arithmetic.
      const want = referenceArray(ref.json.npy);
      let max = 0, differ = 0;
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(Number(out.data[i]) - Number(want[i]));
        if (d > max) max = d;
        if (d) differ++;
      }
      expect(max).toBeLessThanOrEqual(1);
      expect(differ / want.length).toBeLessThan(0.3);
    });
  }
});

describe('crafted files against the values they were made from', () => {
  it('JPEG XL lossless, 12-bit, two frames: CT_small and its vertical flip', async () => {
    const ct = await ctSmall();
    const out = await decodeFile(`${dir}/jxl-lossless-12bit.dcm`);
    expect(out.meta).toMatchObject({ transferSyntax: '1.2.840.10008.1.2.4.110', bitsStored: 12, frames: 2 });
    const n = 128 * 128;
    for (let i = 0; i < n; i++) {
      const r = Math.floor(i / 128), c = i % 128;
      if (out.data[i] !== ct[i] || out.data[n + i] !== ct[(127 - r) * 128 + c]) throw new Error(`value ${i} differs`);
    }
  });

  it('packed 12-bit ACR-NEMA (BitsAllocated 12): the 12 low bits of CT_small', async () => {
    const ct = await ctSmall();
    const out = await decodeFile(`${dir}/packed-12bit-acr-nema`);
    expect(out.meta).toMatchObject({ bitsAllocated: 12, dtype: 'uint16', transferSyntaxInferred: true });
    expect(Array.from(out.data)).toEqual(Array.from(ct, (v) => v & 0xfff));
  });

  it('group lengths that claim more than the file holds are ignored, and such a file without extension is listed', async () => {
    const ct = await ctSmall();
    const out = await decodeFile(`${dir}/group-length-too-long`);
    const want: number[] = [];
    for (let r = 0; r < 32; r++) for (let c = 0; c < 32; c++) want.push(ct[r * 128 + c]);
    expect(Array.from(out.data)).toEqual(want);
    const listed = [];
    for await (const item of listSources([dir])) listed.push(item);
    expect(listed.find((i) => i.id === 'group-length-too-long')?.format).toBe('dicom');
    expect(listed.find((i) => i.id === 'packed-12bit-acr-nema')?.format).toBe('dicom');
  });
});
