// From a parsed DICOM file to its frames of stored values, following pydicom 3's conventions (see README.md here):
// native, deflated, RLE and JPEG data keep the low BitsStored bits (sign-extended when PixelRepresentation = 1),
// JPEG-LS sign-extends from the codestream precision, J2K reinterprets bits when the codestream's signedness
// differs from PixelRepresentation, JPEG XL keeps the low BitsStored bits like JPEG, packed 12-bit (BitsAllocated 12)
// unpacks to 16 bits. Colour: native/RLE as stored; JPEG, J2K and JPEG XL as the codec outputs (RGB).

import zlib from 'node:zlib';
import { MedsslError } from '../../pipeline/core/failures.js';
import type { Dtype, PixelArray } from '../../schemas/records.js';
import { type CodecFrame, type CodecName, countUse, decodeCodestream, isLoaded, type JpegHeader, jpegHeader, jpegSegmentsIntact, j2kSize, jxlHeader, markAsRgb } from './codecs.js';
import { decodeJpegDct } from './jpeg-dct.js';
import { type DicomFile, type Element, GROUP, TAG, frameBytes, framesOf, getNumbers, getString, getUS, hex, nestedElement, numbersOf, sequenceItems } from './dicom.js';
import { BYTES, CTORS, expandYbr422, interleave, keepLowBits, padFrame, typedCopy, unpack12, unpackBits } from './pixels.js';
import { decodeRleFrame } from './rle.js';

export interface ImageGeometry {
  rows: number;
  cols: number;
  samples: number;
  frames: number;
  bitsAllocated: number;
  bitsStored: number;
  signed: boolean;
  dtype: Dtype;
  photometric: string;
  planar: boolean;
}

export type Encoding =
  | { kind: 'native' } | { kind: 'deflatedFrames' } | { kind: 'rle' }
  | { kind: 'codec'; codec: CodecName; family: 'jpeg' | 'jpegLs' | 'j2k' | 'jxl'; fallback?: CodecName };

/** How each transfer syntax's pixel data is encoded (PS3.5 section 10 and Annex A). */
export function encodingOf(ts: string, file: string): Encoding {
  switch (ts) {
    case '1.2.840.10008.1.2': case '1.2.840.10008.1.2.1': case '1.2.840.10008.1.2.2': case '1.2.840.10008.1.2.1.99':
      return { kind: 'native' };
    case '1.2.840.10008.1.2.8.1':
      return { kind: 'deflatedFrames' };
    case '1.2.840.10008.1.2.5':
      return { kind: 'rle' };
    case '1.2.840.10008.1.2.4.50': case '1.2.840.10008.1.2.4.51': case '1.2.840.10008.1.2.4.53': case '1.2.840.10008.1.2.4.55':
      // Native libjpeg-turbo where its library loads; its WebAssembly build takes what that cannot (jpeg-turbo.ts).
      return { kind: 'codec', codec: 'jpegTurbo', family: 'jpeg', fallback: 'jpeg8' };
    case '1.2.840.10008.1.2.4.57': case '1.2.840.10008.1.2.4.70':
      return { kind: 'codec', codec: 'jpegLossless', family: 'jpeg' };
    case '1.2.840.10008.1.2.4.80': case '1.2.840.10008.1.2.4.81':
      return { kind: 'codec', codec: 'jpegLs', family: 'jpegLs' };
    case '1.2.840.10008.1.2.4.90': case '1.2.840.10008.1.2.4.91': case '1.2.840.10008.1.2.4.92': case '1.2.840.10008.1.2.4.93':
      return { kind: 'codec', codec: 'j2k', family: 'j2k' };
    case '1.2.840.10008.1.2.4.201': case '1.2.840.10008.1.2.4.202': case '1.2.840.10008.1.2.4.203':
      // OpenJPEG (2.5+) reads HTJ2K and is what pydicom/imagecodecs use for it, so its irreversible output matches
      // the reference exactly; OpenJPH (which rounds the 9-7 wavelet differently) is the fallback.
      return { kind: 'codec', codec: 'j2k', family: 'j2k', fallback: 'htj2k' };
    case '1.2.840.10008.1.2.4.110': case '1.2.840.10008.1.2.4.111': case '1.2.840.10008.1.2.4.112':
      // JPEG XL lossless, JPEG recompression, and JPEG XL (PS3.5 A.4.13).
      return { kind: 'codec', codec: 'jxl', family: 'jxl' };
    default:
      throw new MedsslError('unsupported', file, `transfer syntax ${ts} is not supported`);
  }
}

/** Reads and checks the Image Pixel module (PS3.3 C.7.6.3) before anything is allocated. */
export function geometryOf(d: DicomFile, file: string, maxPixels: number): ImageGeometry {
  if (!d.pixelData) throw new MedsslError('no-pixel-data', file, 'no pixel data element');
  const rows = getUS(d, TAG.rows);
  const cols = getUS(d, TAG.columns);
  const ba = getUS(d, TAG.bitsAllocated);
  if (!rows || !cols || !ba) throw new MedsslError('corrupt', file, 'Rows, Columns or BitsAllocated is missing or zero');
  const samples = getUS(d, TAG.samplesPerPixel) ?? 1;
  if (samples !== 1 && samples !== 3 && samples !== 4) throw new MedsslError('corrupt', file, `SamplesPerPixel ${samples} is not 1, 3 or 4`);
  const framesRaw = getString(d, TAG.numberOfFrames);
  const frames = framesRaw === undefined ? 1 : Number(framesRaw);
  if (!Number.isInteger(frames) || frames < 0) throw new MedsslError('corrupt', file, `NumberOfFrames '${framesRaw}' is not an integer`);
  if (frames === 0) throw new MedsslError('no-pixel-data', file, 'NumberOfFrames is 0');
  if (rows * cols * samples > maxPixels) throw new MedsslError('too-large', file, `a frame of ${rows} x ${cols} x ${samples} exceeds the ${maxPixels}-sample limit`);
  let dtype: Dtype;
  const pr = getUS(d, TAG.pixelRepresentation) ?? 0;
  const tag = d.pixelData.tag;
  if (tag === TAG.floatPixelData) dtype = 'float32';
  else if (tag === TAG.doubleFloatPixelData) dtype = 'float64';
  else if (ba === 1 || ba === 8) dtype = pr ? 'int8' : 'uint8';
  else if (ba === 16 || ba === 12) dtype = pr ? 'int16' : 'uint16'; // 12: packed pairs (ACR-NEMA), unpacked to 16 bits
  else if (ba === 32) dtype = pr ? 'int32' : 'uint32';
  else throw new MedsslError('unsupported', file, `BitsAllocated ${ba} is not supported`);
  const bs = getUS(d, TAG.bitsStored) ?? ba;
  if (bs > ba && tag === TAG.pixelData) throw new MedsslError('corrupt', file, `BitsStored ${bs} exceeds BitsAllocated ${ba}`);
  const photometric = getString(d, TAG.photometric) ?? (samples === 1 ? 'MONOCHROME2' : 'RGB');
  return { rows, cols, samples, frames, bitsAllocated: ba, bitsStored: bs || ba, signed: pr === 1, dtype, photometric, planar: (getUS(d, TAG.planarConfiguration) ?? 0) === 1 && samples > 1 };
}

export interface DicomFrame {
  data: PixelArray;
  samples: number;
  dtype: Dtype;
  photometric: string;
}

/** Frames of a file, one at a time. The codec for `enc` must already be loaded. */
export function* dicomFrames(d: DicomFile, g: ImageGeometry, enc: Encoding, file: string): Generator<DicomFrame> {
  const px = d.pixelData!;
  if (enc.kind === 'native') {
    if (px.kind !== 'native') throw new MedsslError('corrupt', file, 'encapsulated pixel data in a native transfer syntax');
    yield* nativeFrames(d.bytes.subarray(px.offset, px.offset + px.length), g, d.littleEndian ? false : px.vr, file);
    return;
  }
  if (px.kind !== 'encapsulated') throw new MedsslError('corrupt', file, `native pixel data in compressed transfer syntax ${d.transferSyntax}`);
  const lists = framesOf(px, g.frames, d.bytes, file, enc.kind === 'codec' && enc.family === 'jxl');
  for (let f = 0; f < g.frames; f++) {
    const stream = frameBytes(d.bytes, lists[f]);
    if (enc.kind === 'deflatedFrames') {
      // Deflated Image Frame Compression (PS3.5 8.2.16): each frame is raw-deflated native data.
      const size = nativeFrameBytes(g);
      let raw: Uint8Array;
      try {
        raw = zlib.inflateRawSync(stream, { maxOutputLength: Math.max(size, 1) });
      } catch (err) {
        throw new MedsslError('corrupt', file, `frame ${f} does not inflate: ${(err as Error).message.split('\n')[0]}`);
      }
      yield* nativeFrames(raw, { ...g, frames: 1 }, false, file);
    } else if (enc.kind === 'rle') {
      yield rleFrame(stream, g, file);
    } else {
      yield codecFrame(stream, g, enc, file, f);
    }
  }
}

function nativeFrameBytes(g: ImageGeometry): number {
  if (g.photometric === 'YBR_FULL_422' && g.samples === 3 && g.bitsAllocated === 8) return g.rows * g.cols * 2;
  if (g.bitsAllocated === 12) return Math.ceil((g.rows * g.cols * g.samples * 3) / 2);
  return g.bitsAllocated === 1 ? Math.ceil((g.rows * g.cols * g.samples) / 8) : g.rows * g.cols * g.samples * BYTES[g.dtype];
}

/** `swapVr`: false for little endian data, else the pixel data VR (big endian OW needs swapping, OB does not). */
function* nativeFrames(bytes: Uint8Array, g: ImageGeometry, swapVr: string | false, file: string): Generator<DicomFrame> {
  const pixels = g.rows * g.cols;
  const count = pixels * g.samples;
  const ybr422 = g.photometric === 'YBR_FULL_422' && g.samples === 3 && g.bitsAllocated === 8;
  if (g.bitsAllocated === 1) {
    if (Math.ceil((count * g.frames) / 8) > bytes.length) throw truncated(file, Math.ceil((count * g.frames) / 8), bytes.length);
    for (let f = 0; f < g.frames; f++) yield { data: unpackBits(bytes, f * count, count), samples: g.samples, dtype: 'uint8', photometric: g.photometric };
    return;
  }
  if (g.bitsAllocated === 12) {
    // Two 12-bit values in three bytes, frames contiguous at the value level (as BitsAllocated 1 is at the bit level).
    const need = Math.ceil((count * g.frames * 3) / 2);
    if (need > bytes.length) throw truncated(file, need, bytes.length);
    for (let f = 0; f < g.frames; f++) {
      const data = unpack12(bytes, f * count, count, g.signed);
      keepLowBits(data, g.bitsStored);
      yield { data, samples: g.samples, dtype: g.dtype, photometric: g.photometric };
    }
    return;
  }
  const frameSize = nativeFrameBytes(g);
  if (frameSize * g.frames > bytes.length) throw truncated(file, frameSize * g.frames, bytes.length);
  let bigEndian = swapVr !== false && BYTES[g.dtype] > 1;
  let source = bytes;
  if (swapVr === 'OW' && BYTES[g.dtype] === 1) {
    // 8-bit data in big endian OW: the bytes of each 16-bit word are swapped on disk.
    source = Buffer.from(bytes.subarray(0, frameSize * g.frames - ((frameSize * g.frames) % 2))).swap16();
    bigEndian = false;
  }
  for (let f = 0; f < g.frames; f++) {
    const chunk = source.subarray(f * frameSize, (f + 1) * frameSize);
    let data: PixelArray;
    if (ybr422) data = expandYbr422(chunk, g.rows, g.cols);
    else {
      data = typedCopy(chunk, g.dtype, bigEndian);
      if (g.planar) data = interleave(data, pixels, g.samples);
    }
    keepLowBits(data, g.bitsStored);
    yield { data, samples: g.samples, dtype: g.dtype, photometric: g.photometric };
  }
}

function rleFrame(stream: Uint8Array, g: ImageGeometry, file: string): DicomFrame {
  if (g.bitsAllocated === 1) throw new MedsslError('unsupported', file, 'RLE with BitsAllocated 1 is not supported');
  const size = BYTES[g.dtype];
  const out = Buffer.allocUnsafeSlow(g.rows * g.cols * g.samples * size);
  decodeRleFrame(stream, out, g.rows * g.cols, g.samples, size, file);
  const data = new CTORS[g.dtype](out.buffer, out.byteOffset, g.rows * g.cols * g.samples);
  keepLowBits(data, g.bitsStored);
  return { data, samples: g.samples, dtype: g.dtype, photometric: g.photometric };
}

function codecFrame(stream: Uint8Array, g: ImageGeometry, enc: Extract<Encoding, { kind: 'codec' }>, file: string, f: number): DicomFrame {
  // Check the codestream's own size claim against the header before the codec allocates for it.
  let claimed: { width: number; height: number; components: number } | undefined;
  let input = stream;
  let highPrecision = false;
  let { codec, fallback } = enc;
  const dct = codec === 'jpegTurbo' || codec === 'jpeg8';
  if (enc.family === 'j2k') {
    claimed = j2kSize(stream);
    // OpenJPEG allocates from the codestream's own header: without a SIZ to check first, it is not called.
    if (!claimed) throw new MedsslError('corrupt', file, `frame ${f} has no J2K size marker (SIZ) that can be checked against Rows and Columns`);
  } else if (enc.family === 'jxl') {
    const h = jxlHeader(stream);
    if (!h) throw new MedsslError('corrupt', file, `frame ${f} has no JPEG XL size header that can be checked against Rows and Columns`);
    claimed = { width: h.width, height: h.height, components: g.samples };
  } else {
    const h = jpegHeader(stream);
    if (!h) throw new MedsslError('corrupt', file, `frame ${f} is not a JPEG codestream (no SOI/SOF marker)`);
    claimed = h;
    if (dct && h.precision > 8) highPrecision = true;
    if (dct && h.components === 3 && g.photometric === 'RGB' && !h.jfif && h.adobeTransform === undefined) input = markAsRgb(stream, h);
    if (codec === 'jpegTurbo' && !(isLoaded('jpegTurbo') && turboFits(h) && jpegSegmentsIntact(input))) ({ codec, fallback } = { codec: 'jpeg8', fallback: undefined });
  }
  if (claimed && (claimed.width > g.cols || claimed.height > g.rows || claimed.width * claimed.height === 0)) {
    throw new MedsslError('corrupt', file, `frame ${f} codestream is ${claimed.width} x ${claimed.height}, the header says ${g.cols} x ${g.rows}`);
  }
  // The components are allocated too: a SIZ claiming thousands would multiply the frame (Csiz is up to 16384).
  if (claimed && claimed.components > Math.max(g.samples, 4)) {
    throw new MedsslError('corrupt', file, `frame ${f} codestream has ${claimed.components} components, SamplesPerPixel is ${g.samples}`);
  }
  // 12-bit DCT streams go to the decoder in jpeg-dct.ts (the WebAssembly libjpeg-turbo build is 8-bit only).
  let c: CodecFrame;
  if (highPrecision) {
    c = { ...decodeJpegDct(input, file, g.rows * g.cols * g.samples), signed: false };
    countUse('jpegDct');
  } else {
    try {
      c = decodeCodestream(codec, input, file, g.bitsAllocated);
    } catch (err) {
      if (!fallback || !(err instanceof MedsslError) || err.code !== 'decode-error') throw err;
      try {
        c = decodeCodestream(fallback, input, file, g.bitsAllocated);
      } catch (second) {
        // Both refused it: the first codec's reason is the one to report (libjpeg-turbo's message names the damage,
        // the WebAssembly builds often give only an exception number).
        if (second instanceof MedsslError && second.code === 'decode-error') throw err;
        throw second;
      }
    }
  }
  if (c.components !== g.samples) throw new MedsslError('corrupt', file, `frame ${f} has ${c.components} components, SamplesPerPixel is ${g.samples}`);
  if (c.width > g.cols || c.height > g.rows) throw new MedsslError('corrupt', file, `frame ${f} decodes to ${c.width} x ${c.height}, larger than ${g.cols} x ${g.rows}`);
  let data: PixelArray;
  if (c.data instanceof CTORS[g.dtype]) data = c.data as PixelArray; // the codec's own copy: no second copy
  else {
    data = new CTORS[g.dtype](c.width * c.height * c.components);
    // TypedArray.set converts by value modulo 2^bits: a bit-pattern reinterpretation between same-width types.
    data.set(c.data as ArrayLike<number>);
  }
  if (enc.family === 'jpeg' || enc.family === 'jxl') keepLowBits(data, g.bitsStored);
  else if (enc.family === 'jpegLs') { if (g.signed) keepLowBits(data, c.precision); }
  else if (c.signed !== g.signed) {
    if (g.signed) keepLowBits(data, c.precision);
    else keepLowBits(data, Math.max(c.precision, 1));
  }
  if (c.width < g.cols || c.height < g.rows) data = padFrame(data, c.width, c.height, g.cols, g.rows, g.samples);
  // JPEG DCT and J2K decoders return RGB for colour streams (YCbCr / RCT / ICT inverted).
  const photometric = g.samples === 3 && (dct || enc.family === 'j2k' || enc.family === 'jxl') ? 'RGB' : g.photometric;
  return { data, samples: g.samples, dtype: g.dtype, photometric };
}

/**
 * Streams the native JPEG path takes: 8-bit grey or 3-component (4-component CMYK/YCCK stays with the WebAssembly
 * build), with an intact marker structure (a truncated or damaged one goes where today's errors come from).
 */
function turboFits(h: JpegHeader): boolean {
  return h.precision === 8 && (h.components === 1 || h.components === 3);
}

function truncated(file: string, expected: number, got: number): MedsslError {
  return new MedsslError('truncated', file, `pixel data holds ${got} bytes, the header implies ${expected}`);
}

/** The header fields downstream stages need. Strings holding PHI are returned only for hashing by the caller. */
export function dicomMeta(d: DicomFile, file: string) {
  const top = {
    spacing: getNumbers(d, TAG.pixelSpacing) ?? getNumbers(d, TAG.imagerPixelSpacing),
    position: getNumbers(d, TAG.position),
    orientation: getNumbers(d, TAG.orientation),
    slope: getNumbers(d, TAG.rescaleSlope)?.[0],
    intercept: getNumbers(d, TAG.rescaleIntercept)?.[0],
    center: getNumbers(d, TAG.windowCenter)?.[0],
    width: getNumbers(d, TAG.windowWidth)?.[0],
  };
  // Enhanced multi-frame objects: shared functional groups fill what the top level lacks; per-frame groups override
  // per frame (PS3.3 C.7.6.16). A damaged group sequence costs only its metadata, never the pixels.
  const shared = tolerant(() => (d.elements.has(TAG.sharedGroups) ? sequenceItems(d, d.elements.get(TAG.sharedGroups)!, file, 1)[0] : undefined));
  const perFrame = tolerant(() => (d.elements.has(TAG.perFrameGroups) ? sequenceItems(d, d.elements.get(TAG.perFrameGroups)!, file) : undefined)) ?? [];
  const base = shared ? merge(top, groupValues(d, shared, file)) : top;
  const common = {
    modality: (getString(d, TAG.modality) ?? 'OT').toUpperCase(),
    sopClassUid: getString(d, TAG.sopClassUid),
    patientId: getString(d, TAG.patientId),
    studyUid: getString(d, TAG.studyUid),
    seriesUid: getString(d, TAG.seriesUid),
  };
  /** Geometry, rescale and window of frame `f`. */
  const frame = (f: number) => describeFrame(perFrame[f] ? merge(base, groupValues(d, perFrame[f], file)) : base);
  return { ...common, ...describeFrame(base), frame };
}

type RawValues = { spacing?: number[]; position?: number[]; orientation?: number[]; slope?: number; intercept?: number; center?: number; width?: number };

function groupValues(d: DicomFile, g: Map<number, Element>, file: string): RawValues {
  const at = (macro: number, tag: number) => tolerant(() => numbersOf(d, nestedElement(d, g, macro, tag, file), tag));
  return {
    spacing: at(GROUP.pixelMeasures, TAG.pixelSpacing),
    position: at(GROUP.planePosition, TAG.position),
    orientation: at(GROUP.planeOrientation, TAG.orientation),
    slope: at(GROUP.pixelValueTransformation, TAG.rescaleSlope)?.[0],
    intercept: at(GROUP.pixelValueTransformation, TAG.rescaleIntercept)?.[0],
    center: at(GROUP.frameVoiLut, TAG.windowCenter)?.[0],
    width: at(GROUP.frameVoiLut, TAG.windowWidth)?.[0],
  };
}

/** Values of `over` where present, else those of `base`. */
function merge(base: RawValues, over: RawValues): RawValues {
  const out: RawValues = { ...base };
  for (const k of Object.keys(over) as Array<keyof RawValues>) if (over[k] !== undefined) (out as Record<string, unknown>)[k] = over[k];
  return out;
}

function describeFrame(v: RawValues) {
  const finite = (a: number[] | undefined, n: number) => (a && a.length >= n && a.slice(0, n).every(Number.isFinite) ? a.slice(0, n) : undefined);
  const { slope, intercept, center, width } = v;
  return {
    spacing: finite(v.spacing, 2) as [number, number] | undefined,
    position: finite(v.position, 3),
    orientation: finite(v.orientation, 6),
    rescale: { slope: slope !== undefined && Number.isFinite(slope) && slope !== 0 ? slope : 1, intercept: intercept !== undefined && Number.isFinite(intercept) ? intercept : 0 },
    window: center !== undefined && width !== undefined && Number.isFinite(center) && Number.isFinite(width) && width > 0 ? { center, width } : undefined,
  };
}

function tolerant<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (err) {
    if (err instanceof MedsslError) return undefined;
    throw err;
  }
}

export { hex };
