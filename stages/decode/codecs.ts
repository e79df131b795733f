// The image codecs: WebAssembly builds shipped inside npm (cornerstone codecs, jxl-oxide for JPEG XL),
// jpeg-lossless-decoder-js, and native libjpeg-turbo for 8-bit JPEG (jpeg-turbo.ts; the WebAssembly build is its
// fallback).
// Each is loaded on first use and initialised once per process (their init is async), so `medssl decode` of an
// uncompressed file never pays for a codec it does not need.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MedsslError } from '../../pipeline/core/failures.js';
import { type JpegTurbo, jpegTurbo, turboJpegLibrary } from './jpeg-turbo.js';

const require = createRequire(import.meta.url);

/** What a codec hands back: samples interleaved per pixel, in the codestream's own signedness and precision. */
export interface CodecFrame {
  width: number;
  height: number;
  components: number;
  /** Bits per sample in the codestream (JPEG P, JPEG-LS P, J2K Ssiz + 1). */
  precision: number;
  signed: boolean;
  /** Uint8Array when precision <= 8, else 16-bit samples (Int16Array when signed). */
  data: Uint8Array | Uint16Array | Int16Array;
}

/** `jpegTurbo`: native libjpeg-turbo (jpeg-turbo.ts); `jpeg8`: its WebAssembly build; `jxl`: jxl-oxide. */
export type CodecName = 'jpegTurbo' | 'jpeg8' | 'jpegLossless' | 'jpegLs' | 'j2k' | 'htj2k' | 'jxl';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Wasm = any;
const modules = new Map<string, Promise<Wasm>>();

function wasmModule(spec: string): Promise<Wasm> {
  let m = modules.get(spec);
  if (!m) {
    m = (async () => {
      // OpenJPEG prints [INFO] lines through the Emscripten print hooks; route them nowhere.
      const factory = require(spec) as (opts: object) => Promise<Wasm>;
      return factory({ print: () => {}, printErr: () => {} });
    })();
    modules.set(spec, m);
  }
  return m;
}

const SPECS: Partial<Record<CodecName, string>> = {
  jpeg8: '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs',
  jpegLs: '@cornerstonejs/codec-charls/decodewasmjs',
  j2k: '@cornerstonejs/codec-openjpeg/decodewasmjs',
  htj2k: '@cornerstonejs/codec-openjph/wasmjs',
};

let losslessDecoderClass: (new () => LosslessDecoder) | undefined;
interface LosslessDecoder {
  decode(buffer: ArrayBuffer, offset: number, length: number, numBytes?: number): Uint8Array | Uint16Array;
  numComp: number;
  precision: number;
  xDim: number;
  yDim: number;
}

/** Loads (once) the codec `name`. Call before decodeCodestream; cheap when already loaded. */
export async function loadCodec(name: CodecName): Promise<void> {
  if (name === 'jpegTurbo') {
    turbo ??= loadJpegTurbo();
    await turbo;
    return;
  }
  if (name === 'jxl') {
    jxl ??= loadJxl();
    await jxl;
    return;
  }
  if (name === 'jpegLossless') {
    if (!losslessDecoderClass) {
      const mod = (await import('jpeg-lossless-decoder-js')) as unknown as { Decoder: new () => LosslessDecoder };
      losslessDecoderClass = mod.Decoder;
    }
    return;
  }
  const spec = SPECS[name] as string;
  loaded.set(name, await wasmModule(spec));
}
const loaded = new Map<CodecName, Wasm>();

/** False for `jpegTurbo` when its library does not load here, or native JPEG decoding is switched off. */
export function isLoaded(name: CodecName): boolean {
  if (name === 'jpegTurbo') return nativeJpeg && turboEngine !== undefined;
  if (name === 'jxl') return jxlModule !== undefined;
  return name === 'jpegLossless' ? losslessDecoderClass !== undefined : loaded.has(name);
}

let turbo: Promise<void> | undefined;
let turboEngine: JpegTurbo | undefined;
let nativeJpeg = process.env.MEDSSL_JPEG !== 'wasm';

async function loadJpegTurbo(): Promise<void> {
  const library = turboJpegLibrary();
  if (!library) return;
  try {
    turboEngine = jpegTurbo(library);
  } catch {
    turboEngine = undefined; // the WebAssembly codec decodes everything
  }
}

/** libjpeg-turbo's version when the native JPEG path is loaded. */
export function nativeJpegVersion(): string | undefined {
  return turboEngine?.version;
}

/**
 * Native 8-bit JPEG decoding on (the default where the library loads; MEDSSL_JPEG=wasm starts it off) or off (every
 * 8-bit JPEG through the WebAssembly build). For tests and for checking one path against the other.
 */
export function useNativeJpeg(on: boolean): void {
  nativeJpeg = on;
}

/**
 * Frames each codec decoded, and codestreams it rejected, since the process started: which path a syntax took (the
 * benchmark reports it) and that a fallback was exercised (tests).
 */
export const codecStats: Partial<Record<CodecName | 'jpegDct', { decoded: number; rejected: number }>> = {};

/** Records one frame decoded (or rejected) by `name`. */
export function countUse(name: CodecName | 'jpegDct', ok = true): void {
  const s = (codecStats[name] ??= { decoded: 0, rejected: 0 });
  if (ok) s.decoded++;
  else s.rejected++;
}

/** Decodes one codestream. The codec must have been loaded with loadCodec. */
export function decodeCodestream(name: CodecName, stream: Uint8Array, file: string, bitsAllocated: number): CodecFrame {
  try {
    let frame: CodecFrame;
    switch (name) {
      case 'jpegLossless':
        frame = decodeJpegLossless(stream, bitsAllocated);
        break;
      case 'jpegTurbo':
        frame = decodeTurbo(stream);
        break;
      case 'jxl':
        frame = decodeJxl(stream);
        break;
      default:
        frame = decodeWasm(name, stream);
    }
    countUse(name);
    return frame;
  } catch (err) {
    countUse(name, false);
    // A decoder that failed may hold half-decoded state: never reuse it.
    decoders.get(name)?.delete();
    decoders.delete(name);
    if (err instanceof MedsslError) throw err;
    // An Emscripten abort leaves its module unusable: drop it so the next file gets a fresh instance.
    if ((err as Error)?.name === 'RuntimeError' || /abort/i.test(describe(err))) {
      const spec = SPECS[name];
      if (spec) modules.delete(spec);
      loaded.delete(name);
      if (name === 'jxl') jxl = jxlModule = undefined;
    }
    throw new MedsslError('decode-error', file, `${name} codestream does not decode: ${describe(err)}`);
  }
}

const CLASSES: Record<string, string> = { jpeg8: 'JPEGDecoder', jpegLs: 'JpegLSDecoder', j2k: 'J2KDecoder', htj2k: 'HTJ2KDecoder' };
/** One decoder instance per codec, reused: creating and deleting one per frame costs a third of a JPEG decode. */
const decoders = new Map<CodecName, Wasm>();

/** The four cornerstone codecs share one calling convention: copy in, decode, read frame info, copy out. */
function decodeWasm(name: CodecName, stream: Uint8Array): CodecFrame {
  let decoder = decoders.get(name);
  if (!decoder) {
    decoder = new (loaded.get(name)[CLASSES[name]])();
    decoders.set(name, decoder);
  }
  decoder.getEncodedBuffer(stream.length).set(stream);
  decoder.decode();
  const info = decoder.getFrameInfo() as { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned: boolean };
  const decoded = decoder.getDecodedBuffer() as Uint8Array;
  const samples = info.width * info.height * info.componentCount;
  const bytesPer = info.bitsPerSample <= 8 ? 1 : 2;
  if (decoded.length < samples * bytesPer) throw new Error(`codec returned ${decoded.length} bytes for ${samples} samples`);
  // Copy out of WebAssembly memory: the view is reused by the next decode.
  const copy = new Uint8Array(samples * bytesPer);
  copy.set(decoded.subarray(0, copy.length));
  const data = bytesPer === 1 ? copy : info.isSigned ? new Int16Array(copy.buffer) : new Uint16Array(copy.buffer);
  return { width: info.width, height: info.height, components: info.componentCount, precision: info.bitsPerSample, signed: !!info.isSigned, data };
}

// JPEG XL: jxl-oxide (a conformant decoder in Rust) as its own WebAssembly build. It renders to PNG, which fast-png
// reads back: samples of 9 to 16 bits come out as 16-bit PNG scaled to 0..65535, and are scaled back here to the
// codestream's own bits (what libjxl gives with JXL_BIT_DEPTH_FROM_CODESTREAM, and so pydicom's reference).
interface JxlImageLike {
  feedBytes(bytes: Uint8Array): number;
  tryInit(): boolean;
  render(): { encodeToPng(): Uint8Array };
  free(): void;
  readonly width: number | undefined;
  readonly height: number | undefined;
}
let jxl: Promise<void> | undefined;
let jxlModule: { JxlImage: new () => JxlImageLike; decodePng: (png: Uint8Array) => { width: number; height: number; depth: number; channels: number; data: ArrayLike<number> } } | undefined;

let jxlInstances = 0;

async function loadJxl(): Promise<void> {
  // Imported under a fresh URL each time: its bindings keep one WebAssembly instance per module, and one that
  // trapped (a panic) is replaced, never reused (decodeCodestream drops it).
  const dir = path.dirname(require.resolve('jxl-oxide-wasm/package.json'));
  const url = `${pathToFileURL(path.join(dir, 'jxl_oxide_wasm.js')).href}?instance=${++jxlInstances}`;
  const mod = (await import(url)) as { initSync(m: { module: Uint8Array }): unknown; JxlImage: new () => JxlImageLike };
  mod.initSync({ module: fs.readFileSync(path.join(dir, 'jxl_oxide_wasm_bg.wasm')) });
  const png = (await import('fast-png')) as unknown as { decode(data: Uint8Array): { width: number; height: number; depth: number; channels: number; data: ArrayLike<number> } };
  jxlModule = { JxlImage: mod.JxlImage, decodePng: png.decode };
}

function decodeJxl(stream: Uint8Array): CodecFrame {
  if (!jxlModule) throw new Error('the JPEG XL decoder is not loaded');
  const header = jxlHeader(stream);
  if (!header) throw new Error('no JPEG XL image header');
  if (header.float) throw new Error('floating-point samples');
  const image = new jxlModule.JxlImage();
  let png: Uint8Array;
  try {
    image.feedBytes(stream);
    if (!image.tryInit()) throw new Error('the codestream ends inside its headers');
    if (image.width !== header.width || image.height !== header.height) throw new Error(`image is ${image.width} x ${image.height}, its size header says ${header.width} x ${header.height}`);
    png = image.render().encodeToPng();
  } finally {
    image.free();
  }
  const p = jxlModule.decodePng(png);
  // Colour with alpha comes out as 2 or 4 channels: DICOM has no alpha sample, so it is dropped.
  const components = p.channels === 2 || p.channels === 4 ? p.channels - 1 : p.channels;
  const bits = header.bitsPerSample;
  if (bits > 16) throw new Error(`${bits}-bit samples`);
  const wide = bits > 8;
  const out = wide ? new Uint16Array(p.width * p.height * components) : new Uint8Array(p.width * p.height * components);
  const scale = (2 ** bits - 1) / (2 ** p.depth - 1);
  for (let i = 0, o = 0; o < out.length; i += p.channels) {
    for (let c = 0; c < components; c++) out[o++] = scale === 1 ? p.data[i + c] : Math.round(p.data[i + c] * scale);
  }
  return { width: p.width, height: p.height, components, precision: bits, signed: false, data: out };
}

function decodeTurbo(stream: Uint8Array): CodecFrame {
  if (!turboEngine) throw new Error('native JPEG decoding is not loaded');
  const h = jpegHeader(stream);
  const components = h?.components;
  if (components !== 1 && components !== 3) throw new Error(`${components ?? 'no'} components`);
  const c = turboEngine.decode(stream, components);
  return { ...c, components, precision: 8, signed: false };
}

function decodeJpegLossless(stream: Uint8Array, bitsAllocated: number): CodecFrame {
  const Decoder = losslessDecoderClass as new () => LosslessDecoder;
  const decoder = new Decoder();
  // jpeg-lossless-decoder-js reads one byte ahead and stops at a marker before it outputs the last pixel when the
  // final code ends on a byte boundary just before EOI. Zero bytes inserted before EOI give it something to read
  // ahead into; they are never decoded (the loop ends when the last pixel is out). The copy also keeps the shared
  // file buffer untouched.
  let end = stream.length;
  while (end >= 2 && !(stream[end - 2] === 0xff && stream[end - 1] === 0xd9) && stream.length - end < 8) end--;
  const eoi = end >= 2 && stream[end - 2] === 0xff && stream[end - 1] === 0xd9 ? end - 2 : stream.length;
  const own = new Uint8Array(stream.length + 4);
  own.set(stream.subarray(0, eoi), 0);
  own.set(stream.subarray(eoi), eoi + 4);
  const out = decoder.decode(own.buffer, 0, own.length, bitsAllocated <= 8 ? 1 : 2);
  if (!decoder.xDim || !decoder.yDim) throw new Error('no frame header');
  return { width: decoder.xDim, height: decoder.yDim, components: decoder.numComp, precision: decoder.precision, signed: false, data: out };
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0];
  if (typeof err === 'number') return `codec exception ${err}`;
  return String(err).split('\n')[0];
}

export interface JpegHeader {
  /** SOF marker (0xC0..0xCF, or 0xF7 for JPEG-LS). */
  sof: number;
  precision: number;
  height: number;
  width: number;
  components: number;
  componentIds: number[];
  jfif: boolean;
  /** APP14 "Adobe" transform flag, or undefined when there is no Adobe marker. */
  adobeTransform?: number;
  /** Byte offset of the SOF's component list (for the colour-transform rewrite below). */
  sofOffset: number;
}

/** Scans JPEG / JPEG-LS markers up to the first SOF (ITU T.81 B.2); undefined when there is none. */
export function jpegHeader(s: Uint8Array): JpegHeader | undefined {
  if (s.length < 4 || s[0] !== 0xff || s[1] !== 0xd8) return undefined;
  let p = 2;
  let jfif = false;
  let adobeTransform: number | undefined;
  while (p + 4 <= s.length) {
    if (s[p] !== 0xff) return undefined;
    const m = s[p + 1];
    if (m === 0xff) { p++; continue; }
    const len = (s[p + 2] << 8) | s[p + 3];
    if (m === 0xe0 && len >= 7 && s[p + 4] === 0x4a && s[p + 5] === 0x46 && s[p + 6] === 0x49 && s[p + 7] === 0x46) jfif = true;
    if (m === 0xee && len >= 12 && s[p + 4] === 0x41 && s[p + 5] === 0x64 && s[p + 6] === 0x6f && s[p + 7] === 0x62) adobeTransform = s[p + 15];
    const isSof = (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) || m === 0xf7;
    if (isSof) {
      if (p + 10 > s.length) return undefined;
      const components = s[p + 9];
      const ids: number[] = [];
      for (let c = 0; c < components && p + 10 + 3 * c < s.length; c++) ids.push(s[p + 10 + 3 * c]);
      return { sof: m, precision: s[p + 4], height: (s[p + 5] << 8) | s[p + 6], width: (s[p + 7] << 8) | s[p + 8], components, componentIds: ids, jfif, adobeTransform, sofOffset: p + 10 };
    }
    p += 2 + len;
  }
  return undefined;
}

/**
 * True when the stream's marker structure is whole (ITU T.81 B.1.1): well-formed segments from SOI, entropy-coded
 * data in which 0xFF is only stuffed (FF 00) or a restart marker (FF D0..D7) until the next segment, an EOI, and only
 * zero padding after it. libjpeg meets a truncation or a stray marker with a warning and decodes on with zeros; the
 * native path cannot see its warnings, so a stream that fails this goes to the WebAssembly build, which rejects it.
 */
export function jpegSegmentsIntact(s: Uint8Array): boolean {
  if (s.length < 4 || s[0] !== 0xff || s[1] !== 0xd8) return false;
  let p = 2;
  for (;;) {
    if (p + 2 > s.length || s[p] !== 0xff) return false;
    let m = s[p + 1];
    while (m === 0xff && p + 2 < s.length) m = s[++p + 1]; // fill bytes before a marker
    if (m === 0xd9) {
      for (let q = p + 2; q < s.length; q++) if (s[q] !== 0) return false;
      return true;
    }
    if (m === 0x00 || m === 0x01 || (m >= 0xd0 && m <= 0xd8)) return false; // no standalone marker belongs here
    if (p + 4 > s.length) return false;
    const len = (s[p + 2] << 8) | s[p + 3];
    if (len < 2) return false;
    p += 2 + len;
    if (m !== 0xda) continue;
    // Entropy-coded data up to the next marker that is not RSTn.
    for (;;) {
      p = s.indexOf(0xff, p);
      if (p < 0 || p + 1 >= s.length) return false;
      const next = s[p + 1];
      if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) p += 2;
      else if (next === 0xff) p++;
      else break;
    }
  }
}

/**
 * libjpeg assumes YCbCr for 3-component streams without JFIF/Adobe markers unless the component ids are 'R','G','B'.
 * DICOM says the stream holds what Photometric Interpretation says (PS3.5 8.2.1), so for PI = RGB without markers
 * the ids are rewritten to 'R','G','B' in a copy, which makes libjpeg-turbo skip the colour transform (pydicom's rule).
 */
export function markAsRgb(stream: Uint8Array, h: JpegHeader): Uint8Array {
  const copy = new Uint8Array(stream); // a copy: Buffer#slice would alias the file bytes
  const rgb = [0x52, 0x47, 0x42];
  const old = h.componentIds;
  for (let c = 0; c < 3; c++) copy[h.sofOffset + 3 * c] = rgb[c];
  // The scan headers name components by id too.
  for (let p = h.sofOffset; p + 4 < copy.length; p++) {
    if (copy[p] !== 0xff || copy[p + 1] !== 0xda) continue;
    const n = copy[p + 4];
    for (let c = 0; c < n; c++) {
      const at = p + 5 + 2 * c;
      const idx = old.indexOf(copy[at]);
      if (idx >= 0) copy[at] = rgb[idx];
    }
  }
  return copy;
}

/**
 * Width, height and components from a J2K codestream's SIZ marker (ISO 15444-1 A.5.1), or from inside a JP2 wrapper
 * (the 'jp2c' box, ISO 15444-1 I.4). Box lengths follow I.4: 0 means "to the end of the data", 1 means a 64-bit
 * length follows. Undefined when no SIZ can be found: the caller must then not hand the stream to a codec, which
 * would allocate from its own header unchecked.
 */
export function j2kSize(s: Uint8Array): { width: number; height: number; components: number } | undefined {
  let p = 0;
  if (s.length >= 12 && s[4] === 0x6a && s[5] === 0x50) {
    // JP2 wrapper: walk the boxes to the codestream box.
    let found = false;
    while (p + 8 <= s.length) {
      let len = u32(s, p);
      let header = 8;
      if (len === 1) {
        if (p + 16 > s.length) return undefined;
        const hi = u32(s, p + 8), lo = u32(s, p + 12);
        len = hi * 2 ** 32 + lo;
        header = 16;
      } else if (len === 0) len = s.length - p;
      if (len < header) return undefined;
      if (s[p + 4] === 0x6a && s[p + 5] === 0x70 && s[p + 6] === 0x32 && s[p + 7] === 0x63) {
        p += header;
        found = true;
        break;
      }
      p += len;
    }
    if (!found) return undefined;
  }
  if (p + 42 > s.length || s[p] !== 0xff || s[p + 1] !== 0x4f || s[p + 2] !== 0xff || s[p + 3] !== 0x51) return undefined;
  const q = p + 4;
  return { width: u32(s, q + 4) - u32(s, q + 12), height: u32(s, q + 8) - u32(s, q + 16), components: (s[q + 36] << 8) | s[q + 37] };
}

const u32 = (s: Uint8Array, o: number) => ((s[o] << 24) | (s[o + 1] << 16) | (s[o + 2] << 8) | s[o + 3]) >>> 0;

/**
 * The size and sample depth from a JPEG XL codestream's SizeHeader and ImageMetadata (ISO/IEC 18181-1 A.2, A.6,
 * bits read least significant first), bare (FF 0A) or inside the container's 'jxlc' / first 'jxlp' box (18181-2).
 * Undefined when the header cannot be read: the caller then does not decode.
 */
export function jxlHeader(s: Uint8Array): { width: number; height: number; bitsPerSample: number; float: boolean } | undefined {
  let p = 0;
  if (s.length >= 12 && u32(s, 0) === 12 && s[4] === 0x4a && s[5] === 0x58 && s[6] === 0x4c && s[7] === 0x20) {
    p = -1;
    for (let q = 0; q + 8 <= s.length;) {
      let len = u32(s, q), header = 8;
      if (len === 1) {
        if (q + 16 > s.length) return undefined;
        len = u32(s, q + 8) * 2 ** 32 + u32(s, q + 12);
        header = 16;
      } else if (len === 0) len = s.length - q;
      if (len < header) return undefined;
      const type = String.fromCharCode(s[q + 4], s[q + 5], s[q + 6], s[q + 7]);
      if (type === 'jxlc') { p = q + header; break; }
      if (type === 'jxlp') { p = q + header + 4; break; }
      q += len;
    }
    if (p < 0) return undefined;
  }
  if (p + 2 > s.length || s[p] !== 0xff || s[p + 1] !== 0x0a) return undefined;
  let bit = (p + 2) * 8;
  const u = (n: number): number => {
    let v = 0;
    for (let i = 0; i < n; i++, bit++) {
      const byte = s[bit >>> 3];
      if (byte === undefined) throw new RangeError('header runs past the data');
      v += ((byte >>> (bit & 7)) & 1) * 2 ** i;
    }
    return v;
  };
  // U32(d0, d1, d2, d3): a 2-bit selector, then the chosen distribution: [constant] or [offset, bits].
  const u32d = (...d: Array<[number] | [number, number]>): number => {
    const [offset, bits] = d[u(2)];
    return bits === undefined ? offset : offset + u(bits);
  };
  const size = (): [number, number] => {
    const small = u(1);
    const y = small ? (u(5) + 1) * 8 : 1 + u32d([0, 9], [0, 13], [0, 18], [0, 30]);
    const ratio = u(3);
    const x = ratio === 0 ? (small ? (u(5) + 1) * 8 : 1 + u32d([0, 9], [0, 13], [0, 18], [0, 30])) : Math.floor((y * RATIOS[ratio][0]) / RATIOS[ratio][1]);
    return [x, y];
  };
  try {
    const [width, height] = size();
    if (u(1)) return { width, height, bitsPerSample: 8, float: false }; // all_default
    if (u(1)) {
      // extra_fields: orientation, intrinsic size, preview, animation.
      u(3);
      if (u(1)) size();
      if (u(1)) {
        const div8 = u(1);
        const dim = () => (div8 ? u32d([16], [32], [1, 5], [33, 9]) : u32d([1, 6], [65, 8], [321, 10], [1345, 12]));
        dim();
        if (u(3) === 0) dim();
      }
      if (u(1)) {
        u32d([100], [1000], [1, 10], [1, 30]);
        u32d([1], [1001], [1, 8], [1, 10]);
        u32d([0], [0, 3], [0, 16], [0, 32]);
        u(1);
      }
    }
    const float = u(1) === 1;
    const bitsPerSample = float ? u32d([32], [16], [24], [1, 6]) : u32d([8], [10], [12], [1, 6]);
    return { width, height, bitsPerSample, float };
  } catch {
    return undefined;
  }
}

/** SizeHeader ratios 1..7 (18181-1 Table A.1): xsize = ysize * a / b. */
const RATIOS: Array<[number, number]> = [[1, 1], [1, 1], [12, 10], [4, 3], [3, 2], [16, 9], [5, 4], [2, 1]];
