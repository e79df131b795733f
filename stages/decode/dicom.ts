// A DICOM Part 10 reader that parses only what the decode stage needs: the file meta, the top-level attributes
// listed in WANTED, and the pixel data element (native bytes or encapsulated fragments). Sequences and everything
// else are skipped by length, so a 500 KB CT slice costs a few microseconds of parsing and no copies.
// Every length is checked against the bytes that remain before it is used (PS3.5 section 7), so a corrupt or
// truncated file becomes a MedsslError, never a RangeError or a huge allocation.

import zlib from 'node:zlib';
import { MedsslError } from '../../pipeline/core/failures.js';

export const TS = {
  implicitLE: '1.2.840.10008.1.2',
  explicitLE: '1.2.840.10008.1.2.1',
  deflatedLE: '1.2.840.10008.1.2.1.99',
  explicitBE: '1.2.840.10008.1.2.2',
} as const;

/** Top-level attributes the decode stage reads, by tag. */
export const TAG = {
  sopClassUid: 0x00080016,
  modality: 0x00080060,
  patientId: 0x00100020,
  imagerPixelSpacing: 0x00181164,
  studyUid: 0x0020000d,
  seriesUid: 0x0020000e,
  position: 0x00200032,
  orientation: 0x00200037,
  samplesPerPixel: 0x00280002,
  photometric: 0x00280004,
  planarConfiguration: 0x00280006,
  numberOfFrames: 0x00280008,
  rows: 0x00280010,
  columns: 0x00280011,
  pixelSpacing: 0x00280030,
  bitsAllocated: 0x00280100,
  bitsStored: 0x00280101,
  highBit: 0x00280102,
  pixelRepresentation: 0x00280103,
  windowCenter: 0x00281050,
  windowWidth: 0x00281051,
  rescaleIntercept: 0x00281052,
  rescaleSlope: 0x00281053,
  floatPixelData: 0x7fe00008,
  doubleFloatPixelData: 0x7fe00009,
  pixelData: 0x7fe00010,
  // Enhanced multi-frame objects keep geometry and rescale in functional groups (PS3.3 C.7.6.16).
  sharedGroups: 0x52009229,
  perFrameGroups: 0x52009230,
} as const;

/** Functional group macros and the attributes inside them (PS3.3 C.7.6.16.2). */
export const GROUP = {
  pixelMeasures: 0x00289110,
  planePosition: 0x00209113,
  planeOrientation: 0x00209116,
  pixelValueTransformation: 0x00289145,
  frameVoiLut: 0x00289132,
} as const;
const WANTED = new Set<number>(Object.values(TAG));
const PIXEL_TAGS = new Set<number>([TAG.pixelData, TAG.floatPixelData, TAG.doubleFloatPixelData]);

const ITEM = 0xfffee000;
const ITEM_END = 0xfffee00d;
const SEQ_END = 0xfffee0dd;
const UNDEFINED = 0xffffffff;
/** VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 table 7.1-1). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
/** Sequences nest rarely beyond 5 levels; a deeper nest is a corrupt or hostile file. */
const MAX_DEPTH = 32;

export interface Element {
  vr: string;
  /** Byte range of the value within DicomFile.bytes. */
  offset: number;
  length: number;
}

export type PixelData =
  | { kind: 'native'; tag: number; vr: string; offset: number; length: number }
  | { kind: 'encapsulated'; tag: number; offsets: number[]; fragments: Array<[number, number]> };

export interface DicomFile {
  /** The file, as errors name it. */
  file: string;
  /** The dataset bytes (inflated for the deflated syntax, gunzipped for .gz files); offsets refer to these. */
  bytes: Uint8Array;
  transferSyntax: string;
  /** True when (0002,0010) was missing and the encoding was guessed from the first element. */
  transferSyntaxInferred: boolean;
  littleEndian: boolean;
  explicitVR: boolean;
  elements: Map<number, Element>;
  pixelData?: PixelData;
}

/** Parses a DICOM file (with or without preamble and file meta). `file` names it in errors. */
export function parseDicom(input: Uint8Array, file: string, maxBytes = 2 ** 31 - 1): DicomFile {
  let bytes = input;
  let p = 0;
  if (bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d) p = 132;
  // File meta information (group 0002) is always explicit VR little endian (PS3.10 section 7.1).
  let transferSyntax: string | undefined;
  const metaCtx: Ctx = { b: bytes, dv: view(bytes), little: true, explicit: true, file, elements: new Map(), end: bytes.length };
  if (p + 8 <= bytes.length && metaCtx.dv.getUint16(p, true) === 0x0002) {
    while (p + 8 <= bytes.length && metaCtx.dv.getUint16(p, true) === 0x0002) {
      const e = readElement(metaCtx, p, 0);
      if (e.tag === 0x00020010) transferSyntax = text(bytes, e.offset, e.length, e.tag, file);
      p = e.next;
    }
  }
  if (p >= bytes.length) throw new MedsslError('no-pixel-data', file, 'no dataset after the file meta information');
  let inferred = false;
  if (!transferSyntax) {
    transferSyntax = guessEncoding(bytes, p, file);
    inferred = true;
  }
  let explicit = transferSyntax !== TS.implicitLE;
  let little = transferSyntax !== TS.explicitBE;
  if (transferSyntax === TS.deflatedLE || transferSyntax === '1.2.840.10008.1.2.1.99') {
    try {
      bytes = zlib.inflateRawSync(bytes.subarray(p), { maxOutputLength: maxBytes });
    } catch (err) {
      const tooLarge = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
      throw new MedsslError(tooLarge ? 'too-large' : 'corrupt', file, tooLarge ? `deflated dataset inflates past ${maxBytes} bytes` : `deflated dataset does not inflate: ${(err as Error).message}`);
    }
    p = 0;
    explicit = true;
    little = true;
  }
  const ctx: Ctx = { b: bytes, dv: view(bytes), little, explicit, file, elements: new Map(), end: bytes.length };
  const pixelData = readDataset(ctx, p);
  return { file, bytes, transferSyntax, transferSyntaxInferred: inferred, littleEndian: little, explicitVR: explicit, elements: ctx.elements, pixelData };
}

interface Ctx {
  b: Uint8Array;
  dv: DataView;
  little: boolean;
  explicit: boolean;
  file: string;
  elements: Map<number, Element>;
  end: number;
}

interface Read {
  tag: number;
  vr: string;
  offset: number;
  length: number;
  next: number;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Without (0002,0010) the encoding is guessed the way toolkits do: a plausible two-letter VR after the first tag means
 * explicit VR; a first group that reads small in little endian means little endian.
 */
function guessEncoding(b: Uint8Array, p: number, file: string): string {
  if (p + 8 > b.length) throw new MedsslError('truncated', file, 'file ends inside the first element');
  const dv = view(b);
  const groupLE = dv.getUint16(p, true);
  const groupBE = dv.getUint16(p, false);
  const vrOk = isVr(b[p + 4], b[p + 5]);
  if (groupBE < groupLE && groupBE !== 0) return vrOk ? TS.explicitBE : TS.implicitLE;
  return vrOk ? TS.explicitLE : TS.implicitLE;
}

const isUpper = (c: number) => c >= 0x41 && c <= 0x5a;
const isVr = (a: number, b: number) => isUpper(a) && isUpper(b);

/** Reads the top-level elements from `p`; records WANTED ones; returns the pixel data (parsing stops there). */
function readDataset(ctx: Ctx, p: number): PixelData | undefined {
  while (p + 8 <= ctx.end) {
    const tagPeek = tagAt(ctx, p);
    if (PIXEL_TAGS.has(tagPeek)) return readPixelData(ctx, p);
    const e = readElement(ctx, p, 0);
    if (WANTED.has(e.tag) && !ctx.elements.has(e.tag)) ctx.elements.set(e.tag, { vr: e.vr, offset: e.offset, length: e.length });
    p = e.next;
  }
  return undefined;
}

function tagAt(ctx: Ctx, p: number): number {
  return ((ctx.dv.getUint16(p, ctx.little) << 16) | ctx.dv.getUint16(p + 2, ctx.little)) >>> 0;
}

/** One element at `p`: header, value range, and where the next one starts (sequences skipped whole). */
function readElement(ctx: Ctx, p: number, depth: number): Read {
  const { dv, little, b, file } = ctx;
  if (p + 8 > ctx.end) throw new MedsslError('truncated', file, `file ends inside an element header at byte ${p}`);
  const tag = tagAt(ctx, p);
  let vr = '';
  let length: number;
  let offset: number;
  if ((tag >>> 16) === 0xfffe || !ctx.explicit || !isVr(b[p + 4], b[p + 5])) {
    // Item and delimiter tags have no VR in any syntax; a missing VR in explicit data is read as implicit (a
    // known writer bug that pydicom and GDCM also tolerate).
    length = dv.getUint32(p + 4, little);
    offset = p + 8;
  } else {
    vr = String.fromCharCode(b[p + 4], b[p + 5]);
    if (LONG_VRS.has(vr)) {
      if (p + 12 > ctx.end) throw new MedsslError('truncated', file, `file ends inside an element header at byte ${p}`);
      length = dv.getUint32(p + 8, little);
      offset = p + 12;
    } else {
      length = dv.getUint16(p + 6, little);
      offset = p + 8;
    }
  }
  if (length === UNDEFINED) {
    if (depth >= MAX_DEPTH) throw new MedsslError('corrupt', file, `sequences nested deeper than ${MAX_DEPTH} levels`);
    // Undefined length: a sequence (SQ, or UN/implicit whose content is implicit VR little endian per PS3.5 6.2.2).
    const inner: Ctx = vr === 'UN' ? { ...ctx, little: true, explicit: false } : ctx;
    const next = skipSequence(inner, offset, depth + 1);
    return { tag, vr: vr || 'SQ', offset, length: next - offset, next };
  }
  if (offset + length > ctx.end) {
    throw new MedsslError('truncated', file, `element (${hex(tag)}) claims ${length} bytes but the file ends ${ctx.end - offset} bytes later`);
  }
  return { tag, vr, offset, length, next: offset + length };
}

/** Skips the items of an undefined-length sequence starting at `p`; returns the offset after its delimiter. */
function skipSequence(ctx: Ctx, p: number, depth: number): number {
  for (;;) {
    if (p + 8 > ctx.end) throw new MedsslError('truncated', ctx.file, 'file ends inside a sequence');
    const tag = tagAt(ctx, p);
    const length = ctx.dv.getUint32(p + 4, ctx.little);
    if (tag === SEQ_END) return p + 8;
    if (tag !== ITEM) throw new MedsslError('corrupt', ctx.file, `expected a sequence item at byte ${p}, found (${hex(tag)})`);
    if (length !== UNDEFINED) {
      if (p + 8 + length > ctx.end) throw new MedsslError('truncated', ctx.file, 'sequence item runs past the end of the file');
      p += 8 + length;
      continue;
    }
    p += 8;
    for (;;) {
      if (p + 8 > ctx.end) throw new MedsslError('truncated', ctx.file, 'file ends inside a sequence item');
      if (tagAt(ctx, p) === ITEM_END) {
        p += 8;
        break;
      }
      p = readElement(ctx, p, depth).next;
    }
  }
}

function readPixelData(ctx: Ctx, p: number): PixelData {
  const e = readHeaderOnly(ctx, p);
  if (e.length !== UNDEFINED) {
    if (e.offset + e.length > ctx.end) {
      throw new MedsslError('truncated', ctx.file, `pixel data claims ${e.length} bytes but only ${ctx.end - e.offset} remain`);
    }
    return { kind: 'native', tag: e.tag, vr: e.vr, offset: e.offset, length: e.length };
  }
  // Encapsulated (PS3.5 A.4): a Basic Offset Table item, then one item per fragment, then a sequence delimiter.
  let q = e.offset;
  const items: Array<[number, number]> = [];
  for (;;) {
    if (q + 8 > ctx.end) {
      // A missing final delimiter is common in the wild; the fragments read so far are kept.
      if (items.length) break;
      throw new MedsslError('truncated', ctx.file, 'file ends inside the encapsulated pixel data');
    }
    const tag = tagAt(ctx, q);
    const length = ctx.dv.getUint32(q + 4, ctx.little);
    if (tag === SEQ_END) break;
    if (tag !== ITEM) throw new MedsslError('corrupt', ctx.file, `expected a pixel data item at byte ${q}, found (${hex(tag)})`);
    if (length === UNDEFINED || q + 8 + length > ctx.end) {
      throw new MedsslError('truncated', ctx.file, `pixel data fragment at byte ${q} claims ${length} bytes, ${ctx.end - q - 8} remain`);
    }
    items.push([q + 8, length]);
    q += 8 + length;
  }
  if (items.length === 0) throw new MedsslError('corrupt', ctx.file, 'encapsulated pixel data has no offset table item');
  const [botStart, botLength] = items[0];
  const offsets: number[] = [];
  for (let i = 0; i + 4 <= botLength; i += 4) offsets.push(ctx.dv.getUint32(botStart + i, ctx.little));
  return { kind: 'encapsulated', tag: e.tag, offsets, fragments: items.slice(1) };
}

function readHeaderOnly(ctx: Ctx, p: number): { tag: number; vr: string; offset: number; length: number } {
  const { b, dv, little } = ctx;
  const tag = tagAt(ctx, p);
  if (ctx.explicit && isVr(b[p + 4], b[p + 5])) {
    const vr = String.fromCharCode(b[p + 4], b[p + 5]);
    if (LONG_VRS.has(vr)) {
      if (p + 12 > ctx.end) throw new MedsslError('truncated', ctx.file, 'file ends inside the pixel data header');
      return { tag, vr, offset: p + 12, length: dv.getUint32(p + 8, little) };
    }
    return { tag, vr, offset: p + 8, length: dv.getUint16(p + 6, little) };
  }
  return { tag, vr: tag === TAG.pixelData ? 'OW' : 'OF', offset: p + 8, length: dv.getUint32(p + 4, little) };
}

/** The frames of encapsulated pixel data as fragment lists (PS3.5 A.4: offset table, one fragment each, or markers). */
export function framesOf(px: Extract<PixelData, { kind: 'encapsulated' }>, frames: number, bytes: Uint8Array, file: string, jxl = false): Array<Array<[number, number]>> {
  const { fragments, offsets } = px;
  if (fragments.length === 0) throw new MedsslError('no-pixel-data', file, 'encapsulated pixel data has no fragments');
  if (frames === 1) return [fragments];
  if (offsets.length === frames) {
    // Offsets are relative to the first byte of the first fragment's item tag, and increase (PS3.5 A.4): one pass
    // over the fragments, linear in frames + fragments (a filter per frame was quadratic).
    const base = fragments[0][0] - 8;
    const out: Array<Array<[number, number]>> = [];
    let i = 0;
    for (let f = 0; f < frames; f++) {
      const lo = base + offsets[f];
      const hi = f + 1 < frames ? base + offsets[f + 1] : Infinity;
      if (hi <= lo) throw new MedsslError('corrupt', file, `basic offset table entries ${f} and ${f + 1} do not increase`);
      while (i < fragments.length && fragments[i][0] - 8 < lo) i++;
      const list: Array<[number, number]> = [];
      while (i < fragments.length && fragments[i][0] - 8 < hi) list.push(fragments[i++]);
      if (!list.length) throw new MedsslError('corrupt', file, `basic offset table entry ${f} points to no fragment`);
      out.push(list);
    }
    return out;
  }
  if (fragments.length === frames) return fragments.map((f) => [f]);
  // No usable offset table and more fragments than frames: a frame starts at each fragment that opens a codestream.
  const out: Array<Array<[number, number]>> = [];
  for (const frag of fragments) {
    if (!out.length || startsCodestream(bytes, frag[0], frag[1], jxl)) out.push([frag]);
    else out[out.length - 1].push(frag);
  }
  if (out.length !== frames) throw new MedsslError('corrupt', file, `found ${out.length} codestreams in ${fragments.length} fragments for ${frames} frames`);
  return out;
}

function startsCodestream(b: Uint8Array, o: number, n: number, jxl: boolean): boolean {
  if (n < 4) return false;
  if (b[o] === 0xff && b[o + 1] === 0xd8 && b[o + 2] === 0xff) return true; // JPEG SOI
  if (b[o] === 0xff && b[o + 1] === 0x4f && b[o + 2] === 0xff && b[o + 3] === 0x51) return true; // J2K SOC + SIZ
  // JPEG XL only under its own syntaxes: FF 0A may start a fragment in the middle of a J2K codestream.
  if (jxl && ((b[o] === 0xff && b[o + 1] === 0x0a) || (n >= 12 && b[o + 4] === 0x4a && b[o + 5] === 0x58 && b[o + 6] === 0x4c && b[o + 7] === 0x20))) return true;
  return n >= 12 && b[o + 4] === 0x6a && b[o + 5] === 0x50 && b[o + 6] === 0x20 && b[o + 7] === 0x20; // JP2 signature box
}

/** Concatenates a frame's fragments (no copy for the usual single fragment). */
export function frameBytes(bytes: Uint8Array, list: Array<[number, number]>): Uint8Array {
  if (list.length === 1) return bytes.subarray(list[0][0], list[0][0] + list[0][1]);
  const total = list.reduce((a, [, n]) => a + n, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const [s, n] of list) {
    out.set(bytes.subarray(s, s + n), o);
    o += n;
  }
  return out;
}

export function hex(tag: number): string {
  return `${(tag >>> 16).toString(16).padStart(4, '0')},${(tag & 0xffff).toString(16).padStart(4, '0')}`.toUpperCase();
}

/**
 * The longest value read as text. Every attribute read as text here is short by its VR (UI 64 bytes, CS 16, LO 64,
 * DS 16 and IS 12 per value; PixelSpacing, position and orientation hold 2 to 6 values), so a longer one is a
 * damaged or hostile file; refusing it keeps a file from making a string of its whole size.
 */
export const MAX_TEXT_BYTES = 1024;

function checkTextLength(n: number, tag: number, file: string): void {
  if (n > MAX_TEXT_BYTES) throw new MedsslError('corrupt', file, `element (${hex(tag)}) holds ${n} bytes of text, more than the ${MAX_TEXT_BYTES} any value read here may`);
}

function text(b: Uint8Array, o: number, n: number, tag: number, file: string): string {
  checkTextLength(n, tag, file);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(b[o + i]);
  return s.replace(/[\0 ]+$/, '').trim();
}

// Typed accessors for recorded elements.

export function getString(d: DicomFile, tag: number): string | undefined {
  const e = d.elements.get(tag);
  if (!e || e.length === 0) return undefined;
  checkTextLength(e.length, tag, d.file);
  const s = Buffer.from(d.bytes.buffer, d.bytes.byteOffset + e.offset, e.length).toString('latin1').replace(/[\0 ]+$/, '').trim();
  return s || undefined;
}

export function getUS(d: DicomFile, tag: number): number | undefined {
  const e = d.elements.get(tag);
  if (!e || e.length < 2) return undefined;
  const dv = new DataView(d.bytes.buffer, d.bytes.byteOffset + e.offset, 2);
  return dv.getUint16(0, d.littleEndian);
}

/** Decimal/integer strings (DS, IS), backslash-separated; NaN for unparsable values. */
export function getNumbers(d: DicomFile, tag: number): number[] | undefined {
  return numbersOf(d, d.elements.get(tag), tag);
}

function ctxOf(d: DicomFile, e: Element, file: string): Ctx {
  // Undefined-length UN content is implicit VR little endian (PS3.5 6.2.2); other sequences keep the dataset's encoding.
  const un = e.vr === 'UN';
  return { b: d.bytes, dv: view(d.bytes), little: un ? true : d.littleEndian, explicit: un ? false : d.explicitVR, file, elements: new Map(), end: e.offset + e.length };
}

/** The items of a sequence element, each as the elements it holds (tag -> element), read lazily by the caller. */
export function sequenceItems(d: DicomFile, e: Element, file: string, limit = Infinity): Array<Map<number, Element>> {
  const ctx = ctxOf(d, e, file);
  const items: Array<Map<number, Element>> = [];
  let p = e.offset;
  while (p + 8 <= ctx.end && items.length < limit) {
    const tag = tagAt(ctx, p);
    const length = ctx.dv.getUint32(p + 4, ctx.little);
    if (tag === SEQ_END) break;
    if (tag !== ITEM) throw new MedsslError('corrupt', file, `expected a sequence item at byte ${p}, found (${hex(tag)})`);
    const end = length === UNDEFINED ? ctx.end : Math.min(ctx.end, p + 8 + length);
    const map = new Map<number, Element>();
    p += 8;
    while (p + 8 <= end) {
      if (tagAt(ctx, p) === ITEM_END) { p += 8; break; }
      const r = readElement({ ...ctx, end }, p, 1);
      if (!map.has(r.tag)) map.set(r.tag, { vr: r.vr, offset: r.offset, length: r.length });
      p = r.next;
    }
    if (length !== UNDEFINED) p = end;
    items.push(map);
  }
  return items;
}

/** An element nested as macro > first item > tag inside a functional group item, or undefined. */
export function nestedElement(d: DicomFile, group: Map<number, Element>, macro: number, tag: number, file: string): Element | undefined {
  const seq = group.get(macro);
  if (!seq) return undefined;
  return sequenceItems(d, seq, file, 1)[0]?.get(tag);
}

/** Decimal/integer strings (DS, IS) of an element, backslash-separated; NaN for unparsable values. */
export function numbersOf(d: DicomFile, e: Element | undefined, tag = 0): number[] | undefined {
  if (!e || e.length === 0) return undefined;
  checkTextLength(e.length, tag, d.file);
  const s = Buffer.from(d.bytes.buffer, d.bytes.byteOffset + e.offset, e.length).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!s) return undefined;
  return s.split('\\').map((v) => (v.trim() === '' ? NaN : Number(v.trim())));
}
