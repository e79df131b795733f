// A JPEG DCT decoder (ITU T.81) for the streams the WebAssembly libjpeg-turbo build cannot read: 12-bit sequential
// (SOF1, DICOM 1.2.840.10008.1.2.4.51) and 12-bit progressive (SOF2, 4.53/4.55). Huffman coding only (arithmetic
// coding is not used by DICOM writers in practice). Greyscale, or several components without subsampling; the
// output is the decoded samples interleaved, with no colour transform (12-bit DICOM JPEG is monochrome in practice).
// The IDCT is libjpeg's integer "islow", so the output matches libjpeg-turbo's (and pydicom's) sample for sample.

import { MedsslError } from '../../pipeline/core/failures.js';

const ZIGZAG = new Uint8Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
  28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
  47, 55, 62, 63,
]);


/** Canonical Huffman table (T.81 C and F.2.2.3), with a 9-bit lookahead for the common short codes. */
interface Huffman {
  maxcode: Int32Array;
  valptr: Int32Array;
  mincode: Int32Array;
  values: Uint8Array;
  /** 9-bit lookahead: (length << 8) | value, or 0 when the code is longer. */
  fast: Uint16Array;
}

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  blocksPerLine: number;
  blocksPerColumn: number;
  /** Blocks per line including MCU padding. */
  stride: number;
  coefs: Int32Array;
  pred: number;
  dc?: Huffman;
  ac?: Huffman;
}

export interface DctImage {
  width: number;
  height: number;
  components: number;
  precision: number;
  data: Uint16Array;
}

class Bits {
  pos: number;
  private acc = 0;
  private n = 0;
  /** True once a marker was met: further reads return zero bits (libjpeg does the same). */
  private hitMarker = false;
  constructor(private readonly s: Uint8Array, start: number) {
    this.pos = start;
  }

  private fill(): void {
    while (this.n <= 24) {
      let byte = 0;
      if (!this.hitMarker && this.pos < this.s.length) {
        byte = this.s[this.pos];
        if (byte === 0xff) {
          const next = this.s[this.pos + 1];
          if (next === 0x00) this.pos += 2;
          else {
            this.hitMarker = true;
            byte = 0;
          }
        } else this.pos++;
      }
      this.acc = ((this.acc << 8) | byte) >>> 0;
      this.n += 8;
    }
  }

  peek(k: number): number {
    if (this.n < k) this.fill();
    return (this.acc >>> (this.n - k)) & ((1 << k) - 1);
  }

  skip(k: number): void {
    this.n -= k;
  }

  bits(k: number): number {
    if (k === 0) return 0;
    const v = this.peek(k);
    this.n -= k;
    return v;
  }

  /** Drops buffered bits and moves to the next marker (used at restart intervals and scan ends). */
  reset(): void {
    this.acc = 0;
    this.n = 0;
    this.hitMarker = false;
  }

  decode(t: Huffman): number {
    const look = t.fast[this.peek(9)];
    if (look) {
      this.n -= look >> 8;
      return look & 0xff;
    }
    let code = this.bits(1);
    for (let len = 1; len <= 16; len++) {
      if (code <= t.maxcode[len]) return t.values[t.valptr[len] + code - t.mincode[len]];
      code = (code << 1) | this.bits(1);
    }
    throw new Error('bad Huffman code');
  }

  /** RECEIVE and EXTEND (T.81 F.2.2.1). */
  extend(s: number): number {
    if (s === 0) return 0;
    if (s > 16) throw new Error('bad coefficient size');
    const v = this.bits(s);
    return v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
  }
}

function buildHuffman(counts: Uint8Array, values: Uint8Array): Huffman {
  const maxcode = new Int32Array(18).fill(-1), valptr = new Int32Array(17), mincode = new Int32Array(17);
  const fast = new Uint16Array(512);
  let code = 0, k = 0;
  for (let len = 1; len <= 16; len++) {
    valptr[len] = k;
    mincode[len] = code;
    for (let i = 0; i < counts[len - 1]; i++) {
      if (len <= 9) {
        const shift = 9 - len;
        for (let f = 0; f < 1 << shift; f++) fast[(code << shift) | f] = (len << 8) | values[k];
      }
      code++;
      k++;
    }
    maxcode[len] = counts[len - 1] ? code - 1 : -1;
    code <<= 1;
  }
  return { maxcode, valptr, mincode, values, fast };
}

/** Decodes a JPEG DCT codestream (SOF0/1/2, Huffman). Throws MedsslError for anything unsupported or corrupt. */
export function decodeJpegDct(s: Uint8Array, file: string, maxSamples: number): DctImage {
  try {
    return decode(s, file, maxSamples);
  } catch (err) {
    if (err instanceof MedsslError) throw err;
    throw new MedsslError('decode-error', file, `JPEG codestream does not decode: ${(err as Error).message}`);
  }
}

function decode(s: Uint8Array, file: string, maxSamples: number): DctImage {
  if (s[0] !== 0xff || s[1] !== 0xd8) throw new Error('no SOI marker');
  const quant: Array<Int32Array | undefined> = [];
  const dcTables: Array<Huffman | undefined> = [];
  const acTables: Array<Huffman | undefined> = [];
  let frame: { precision: number; width: number; height: number; progressive: boolean; comps: Component[]; hmax: number; vmax: number; mcusX: number; mcusY: number } | undefined;
  let restart = 0;
  let p = 2;
  const u16 = (o: number) => {
    if (o + 2 > s.length) throw new Error('codestream ends inside a marker segment');
    return (s[o] << 8) | s[o + 1];
  };
  for (;;) {
    if (p + 2 > s.length) break; // a missing EOI is tolerated
    if (s[p] !== 0xff) { p++; continue; }
    const m = s[p + 1];
    if (m === 0xff) { p++; continue; }
    if (m === 0xd9) break;
    if (m === 0xd8 || (m >= 0xd0 && m <= 0xd7) || m === 0x00) { p += 2; continue; }
    const len = u16(p + 2);
    const end = p + 2 + len;
    if (len < 2 || end > s.length) throw new Error(`marker ${m.toString(16)} segment runs past the end`);
    const q = p + 4;
    switch (m) {
      case 0xdb: { // DQT
        let o = q;
        while (o < end) {
          const pq = s[o] >> 4, tq = s[o] & 15;
          o++;
          const t = new Int32Array(64);
          for (let k = 0; k < 64; k++) {
            t[ZIGZAG[k]] = pq ? u16(o + 2 * k) : s[o + k];
          }
          o += pq ? 128 : 64;
          quant[tq & 3] = t;
        }
        break;
      }
      case 0xc4: { // DHT
        let o = q;
        while (o + 17 <= end) {
          const tc = s[o] >> 4, th = s[o] & 3;
          const counts = s.subarray(o + 1, o + 17);
          const total = counts.reduce((a, c) => a + c, 0);
          if (o + 17 + total > end) throw new Error('Huffman table runs past its segment');
          const table = buildHuffman(counts, s.slice(o + 17, o + 17 + total));
          (tc === 0 ? dcTables : acTables)[th] = table;
          o += 17 + total;
        }
        break;
      }
      case 0xdd: // DRI
        restart = u16(q);
        break;
      case 0xc0: case 0xc1: case 0xc2: {
        if (frame) throw new Error('a second frame header');
        const precision = s[q], height = u16(q + 1), width = u16(q + 3), nf = s[q + 5];
        if (!height || !width || !nf || nf > 4) throw new Error(`frame header ${width} x ${height} x ${nf} is invalid`);
        if (precision !== 8 && precision !== 12) throw new Error(`sample precision ${precision} is not 8 or 12`);
        if (width * height * nf > maxSamples) throw new MedsslError('corrupt', file, `JPEG frame header claims ${width} x ${height} x ${nf} samples, more than the DICOM header allows`);
        const comps: Component[] = [];
        for (let c = 0; c < nf; c++) {
          const o = q + 6 + 3 * c;
          comps.push({ id: s[o], h: Math.max(1, s[o + 1] >> 4), v: Math.max(1, s[o + 1] & 15), tq: s[o + 2] & 3, blocksPerLine: 0, blocksPerColumn: 0, stride: 0, coefs: new Int32Array(0), pred: 0 });
        }
        const hmax = Math.max(...comps.map((c) => c.h)), vmax = Math.max(...comps.map((c) => c.v));
        if (nf > 1 && (hmax > 1 || vmax > 1)) throw new MedsslError('unsupported', file, 'subsampled multi-component high-precision JPEG is not supported');
        const mcusX = Math.ceil(width / (8 * hmax)), mcusY = Math.ceil(height / (8 * vmax));
        for (const c of comps) {
          c.blocksPerLine = Math.ceil((Math.ceil((width * c.h) / hmax)) / 8);
          c.blocksPerColumn = Math.ceil((Math.ceil((height * c.v) / vmax)) / 8);
          c.stride = mcusX * c.h;
          c.coefs = new Int32Array(mcusY * c.v * c.stride * 64);
        }
        frame = { precision, width, height, progressive: m === 0xc2, comps, hmax, vmax, mcusX, mcusY };
        break;
      }
      case 0xc3: case 0xc5: case 0xc6: case 0xc7: case 0xc9: case 0xca: case 0xcb: case 0xcd: case 0xce: case 0xcf:
        throw new MedsslError('unsupported', file, `JPEG SOF${m - 0xc0} (lossless, hierarchical or arithmetic) is not supported by the DCT decoder`);
      case 0xda: { // SOS
        if (!frame) throw new Error('scan before frame header');
        const ns = s[q];
        const comps: Component[] = [];
        for (let c = 0; c < ns; c++) {
          const id = s[q + 1 + 2 * c], tables = s[q + 2 + 2 * c];
          const comp = frame.comps.find((x) => x.id === id);
          if (!comp) throw new Error(`scan names unknown component ${id}`);
          comp.dc = dcTables[tables >> 4];
          comp.ac = acTables[tables & 15];
          comps.push(comp);
        }
        const o = q + 1 + 2 * ns;
        const ss = s[o], se = s[o + 1], ah = s[o + 2] >> 4, al = s[o + 2] & 15;
        p = decodeScan(s, end, frame, comps, restart, frame.progressive, ss, se, ah, al);
        continue;
      }
      default:
        break; // APPn, COM, DNL and others carry nothing the decoder needs
    }
    p = end;
  }
  if (!frame) throw new Error('no frame header');
  return output(frame, quant);
}

function decodeScan(
  s: Uint8Array, start: number, frame: { comps: Component[]; mcusX: number; mcusY: number },
  comps: Component[], restart: number, progressive: boolean, ss: number, se: number, ah: number, al: number,
): number {
  const bits = new Bits(s, start);
  for (const c of comps) c.pred = 0;
  let eobrun = 0;
  const decodeBlock = (c: Component, offset: number): void => {
    const coefs = c.coefs;
    if (!progressive) {
      const t = bits.decode(c.dc!);
      c.pred += bits.extend(t);
      coefs[offset] = c.pred;
      for (let k = 1; k < 64; ) {
        const rs = bits.decode(c.ac!);
        const sz = rs & 15, r = rs >> 4;
        if (sz === 0) {
          if (r < 15) break;
          k += 16;
          continue;
        }
        k += r;
        if (k > 63) throw new Error('coefficient index past 63');
        coefs[offset + ZIGZAG[k]] = bits.extend(sz);
        k++;
      }
      return;
    }
    if (ss === 0) {
      // DC scans (T.81 G.1.2.1): first pass or one refinement bit.
      if (ah === 0) {
        const t = bits.decode(c.dc!);
        c.pred += bits.extend(t);
        coefs[offset] = c.pred * (1 << al);
      } else if (bits.bits(1)) coefs[offset] |= 1 << al;
      return;
    }
    if (ah === 0) {
      // AC first pass (G.1.2.2) with end-of-band runs.
      if (eobrun > 0) { eobrun--; return; }
      for (let k = ss; k <= se; ) {
        const rs = bits.decode(c.ac!);
        const sz = rs & 15, r = rs >> 4;
        if (sz === 0) {
          if (r < 15) { eobrun = (1 << r) - 1 + bits.bits(r); break; }
          k += 16;
          continue;
        }
        k += r;
        if (k > 63) throw new Error('coefficient index past 63');
        coefs[offset + ZIGZAG[k]] = bits.extend(sz) * (1 << al);
        k++;
      }
      return;
    }
    // AC refinement (G.1.2.3), as libjpeg's decode_mcu_AC_refine.
    const p1 = 1 << al, m1 = -1 << al;
    let k = ss;
    if (eobrun === 0) {
      for (; k <= se; k++) {
        const rs = bits.decode(c.ac!);
        let r = rs >> 4;
        let sz = rs & 15;
        if (sz) sz = bits.bits(1) ? p1 : m1;
        else if (r !== 15) {
          eobrun = 1 << r;
          if (r) eobrun += bits.bits(r);
          break;
        }
        do {
          const z = offset + ZIGZAG[k];
          if (coefs[z] !== 0) {
            if (bits.bits(1) && (coefs[z] & p1) === 0) coefs[z] += coefs[z] >= 0 ? p1 : m1;
          } else if (--r < 0) break;
          k++;
        } while (k <= se);
        if (sz && k <= 63) coefs[offset + ZIGZAG[k]] = sz;
      }
    }
    if (eobrun > 0) {
      for (; k <= se; k++) {
        const z = offset + ZIGZAG[k];
        if (coefs[z] !== 0 && bits.bits(1) && (coefs[z] & p1) === 0) coefs[z] += coefs[z] >= 0 ? p1 : m1;
      }
      eobrun--;
    }
  };

  // One component: non-interleaved, blocks in raster order over the component's own size (T.81 A.2.2).
  const single = comps.length === 1;
  const total = single ? comps[0].blocksPerLine * comps[0].blocksPerColumn : frame.mcusX * frame.mcusY;
  let done = 0;
  while (done < total) {
    const count = restart ? Math.min(restart, total - done) : total - done;
    for (let n = 0; n < count; n++, done++) {
      if (single) {
        const c = comps[0];
        const row = Math.floor(done / c.blocksPerLine), col = done % c.blocksPerLine;
        decodeBlock(c, (row * c.stride + col) * 64);
      } else {
        const mrow = Math.floor(done / frame.mcusX), mcol = done % frame.mcusX;
        for (const c of comps) {
          for (let v = 0; v < c.v; v++) for (let h = 0; h < c.h; h++) {
            decodeBlock(c, ((mrow * c.v + v) * c.stride + mcol * c.h + h) * 64);
          }
        }
      }
    }
    if (done >= total) break;
    // Restart marker: byte-align, find RSTn, reset predictors and EOB runs (T.81 F.2.1.3.1, G.1.2.2).
    let q = bits.pos;
    while (q + 1 < s.length && !(s[q] === 0xff && s[q + 1] >= 0xd0 && s[q + 1] <= 0xd7)) q++;
    if (q + 1 >= s.length) break;
    bits.pos = q + 2;
    bits.reset();
    for (const c of comps) c.pred = 0;
    eobrun = 0;
  }
  // The next marker segment: skip remaining entropy bytes.
  let q = Math.max(start, bits.pos - 2);
  while (q + 1 < s.length && !(s[q] === 0xff && s[q + 1] !== 0x00 && !(s[q + 1] >= 0xd0 && s[q + 1] <= 0xd7) && s[q + 1] !== 0xff)) q++;
  return q + 1 >= s.length ? s.length : q;
}

function output(frame: { precision: number; width: number; height: number; comps: Component[] }, quant: Array<Int32Array | undefined>): DctImage {
  const { width, height, comps, precision } = frame;
  const nc = comps.length;
  const out = new Uint16Array(width * height * nc);
  const limit = rangeLimit(precision);
  const ws = new Float64Array(64);
  const pixels = new Int32Array(64);
  const pass1 = precision === 8 ? 2 : 1;
  for (let ci = 0; ci < nc; ci++) {
    const c = comps[ci];
    const q = quant[c.tq];
    if (!q) throw new Error(`quantisation table ${c.tq} is missing`);
    for (let by = 0; by < c.blocksPerColumn; by++) {
      for (let bx = 0; bx < c.blocksPerLine; bx++) {
        idctIslow(c.coefs, (by * c.stride + bx) * 64, q, ws, pixels, pass1, limit);
        for (let y = 0; y < 8; y++) {
          const py = by * 8 + y;
          if (py >= height) break;
          for (let x = 0; x < 8; x++) {
            const px = bx * 8 + x;
            if (px >= width) break;
            out[(py * width + px) * nc + ci] = pixels[y * 8 + x];
          }
        }
      }
    }
  }
  return { width, height, components: nc, precision, data: out };
}

// libjpeg's accurate integer IDCT ("islow", jidctint.c: the Loeffler-Ligtenberg-Moschytz algorithm with 13-bit
// constants), reproduced exactly so 12-bit streams decode to the same values as libjpeg-turbo (what pydicom uses).
const CONST_BITS = 13;
const F_0_298631336 = 2446, F_0_390180644 = 3196, F_0_541196100 = 4433, F_0_765366865 = 6270, F_0_899976223 = 7373;
const F_1_175875602 = 9633, F_1_501321110 = 12299, F_1_847759065 = 15137, F_1_961570560 = 16069, F_2_053119869 = 16819;
const F_2_562915447 = 20995, F_3_072711026 = 25172;
/** DESCALE with an arithmetic right shift (floor division); doubles keep the 64-bit intermediate sums exact. */
const descale = (x: number, n: number) => Math.floor((x + 2 ** (n - 1)) / 2 ** n);

/** The post-IDCT range-limit table of jdmaster.c: level shift and clamp, with libjpeg's wrap-around for wild values. */
function rangeLimit(precision: number): Int32Array {
  const n = 1 << precision, max = n - 1, center = n >> 1;
  const t = new Int32Array(4 * n);
  for (let i = 0; i < 4 * n; i++) {
    if (i < n - center) t[i] = i + center;
    else if (i < 2 * n) t[i] = max;
    else if (i < 4 * n - center) t[i] = 0;
    else t[i] = i - 4 * n + center;
  }
  return t;
}

function idctIslow(coefs: Int32Array, off: number, q: Int32Array, ws: Float64Array, outp: Int32Array, pass1: number, limit: Int32Array): void {
  const mask = limit.length - 1;
  // Pass 1: columns.
  for (let col = 0; col < 8; col++) {
    const at = (r: number) => coefs[off + r * 8 + col] * q[r * 8 + col];
    let z2 = at(2), z3 = at(6);
    let z1 = (z2 + z3) * F_0_541196100;
    let tmp2 = z1 + z3 * -F_1_847759065;
    let tmp3 = z1 + z2 * F_0_765366865;
    z2 = at(0); z3 = at(4);
    let tmp0 = (z2 + z3) * 2 ** CONST_BITS;
    let tmp1 = (z2 - z3) * 2 ** CONST_BITS;
    const tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
    tmp0 = at(7); tmp1 = at(5); tmp2 = at(3); tmp3 = at(1);
    z1 = tmp0 + tmp3; z2 = tmp1 + tmp2; z3 = tmp0 + tmp2;
    let z4 = tmp1 + tmp3;
    const z5 = (z3 + z4) * F_1_175875602;
    tmp0 *= F_0_298631336; tmp1 *= F_2_053119869; tmp2 *= F_3_072711026; tmp3 *= F_1_501321110;
    z1 *= -F_0_899976223; z2 *= -F_2_562915447; z3 *= -F_1_961570560; z4 *= -F_0_390180644;
    z3 += z5; z4 += z5;
    tmp0 += z1 + z3; tmp1 += z2 + z4; tmp2 += z2 + z3; tmp3 += z1 + z4;
    const n = CONST_BITS - pass1;
    ws[col] = descale(tmp10 + tmp3, n); ws[56 + col] = descale(tmp10 - tmp3, n);
    ws[8 + col] = descale(tmp11 + tmp2, n); ws[48 + col] = descale(tmp11 - tmp2, n);
    ws[16 + col] = descale(tmp12 + tmp1, n); ws[40 + col] = descale(tmp12 - tmp1, n);
    ws[24 + col] = descale(tmp13 + tmp0, n); ws[32 + col] = descale(tmp13 - tmp0, n);
  }
  // Pass 2: rows.
  const n = CONST_BITS + pass1 + 3;
  for (let row = 0; row < 8; row++) {
    const w = row * 8;
    let z2 = ws[w + 2], z3 = ws[w + 6];
    let z1 = (z2 + z3) * F_0_541196100;
    let tmp2 = z1 + z3 * -F_1_847759065;
    let tmp3 = z1 + z2 * F_0_765366865;
    let tmp0 = (ws[w] + ws[w + 4]) * 2 ** CONST_BITS;
    let tmp1 = (ws[w] - ws[w + 4]) * 2 ** CONST_BITS;
    const tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
    tmp0 = ws[w + 7]; tmp1 = ws[w + 5]; tmp2 = ws[w + 3]; tmp3 = ws[w + 1];
    z1 = tmp0 + tmp3; z2 = tmp1 + tmp2; z3 = tmp0 + tmp2;
    let z4 = tmp1 + tmp3;
    const z5 = (z3 + z4) * F_1_175875602;
    tmp0 *= F_0_298631336; tmp1 *= F_2_053119869; tmp2 *= F_3_072711026; tmp3 *= F_1_501321110;
    z1 *= -F_0_899976223; z2 *= -F_2_562915447; z3 *= -F_1_961570560; z4 *= -F_0_390180644;
    z3 += z5; z4 += z5;
    tmp0 += z1 + z3; tmp1 += z2 + z4; tmp2 += z2 + z3; tmp3 += z1 + z4;
    outp[w] = limit[descale(tmp10 + tmp3, n) & mask]; outp[w + 7] = limit[descale(tmp10 - tmp3, n) & mask];
    outp[w + 1] = limit[descale(tmp11 + tmp2, n) & mask]; outp[w + 6] = limit[descale(tmp11 - tmp2, n) & mask];
    outp[w + 2] = limit[descale(tmp12 + tmp1, n) & mask]; outp[w + 5] = limit[descale(tmp12 - tmp1, n) & mask];
    outp[w + 3] = limit[descale(tmp13 + tmp0, n) & mask]; outp[w + 4] = limit[descale(tmp13 - tmp0, n) & mask];
  }
}
