// The image codecs: WebAssembly builds shipped inside npm (cornerstone codecs), jpeg-lossless-decoder-js, and native
// libjpeg-turbo for 8-bit JPEG (jpeg-turbo.ts; the WebAssembly build is its fallback).
// Each is loaded on first use and initialised once per process (their init is async), so `medssl decode` of an
// uncompressed file never pays for a codec it does not need.

import { createRequire } from 'node:module';
import { MedsslError } from '../../pipeline/failures.js';
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

/** `jpegTurbo`: native libjpeg-turbo (jpeg-turbo.ts); `jpeg8`: its WebAssembly build. */
export type CodecName = 'jpegTurbo' | 'jpeg8' | 'jpegLossless' | 'jpegLs' | 'j2k' | 'htj2k';

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

/** Width, height and components from a J2K codestream's SIZ marker (ISO 15444-1 A.5.1), or from inside a JP2 box. */
export function j2kSize(s: Uint8Array): { width: number; height: number; components: number } | undefined {
  let p = 0;
  if (s.length > 12 && s[4] === 0x6a && s[5] === 0x50) {
    // JP2 wrapper: find the codestream box ('jp2c').
    while (p + 8 <= s.length) {
      const len = ((s[p] << 24) | (s[p + 1] << 16) | (s[p + 2] << 8) | s[p + 3]) >>> 0;
      if (s[p + 4] === 0x6a && s[p + 5] === 0x70 && s[p + 6] === 0x32 && s[p + 7] === 0x63) { p += 8; break; }
      if (len < 8) return undefined;
      p += len;
    }
  }
  if (p + 42 > s.length || s[p] !== 0xff || s[p + 1] !== 0x4f || s[p + 2] !== 0xff || s[p + 3] !== 0x51) return undefined;
  const u32 = (o: number) => ((s[o] << 24) | (s[o + 1] << 16) | (s[o + 2] << 8) | s[o + 3]) >>> 0;
  const q = p + 4;
  return { width: u32(q + 4) - u32(q + 12), height: u32(q + 8) - u32(q + 16), components: (s[q + 36] << 8) | s[q + 37] };
}
