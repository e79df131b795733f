// The decode stage: SourceItems (DICOM files, NIfTI volumes, MedMNIST .npz entries, bare .npy arrays) to
// DecodedImages, one per frame or slice, holding the stored values before any LUT plus the metadata downstream stages need. Raw PHI
// (patient/study/series ids) never leaves this stage: only their keyed hashes (pipeline/core/privacy.ts) do.

import fs from 'node:fs';
import zlib from 'node:zlib';
import type { OperatorFunction } from 'rxjs';
import type { Gate } from '../../pipeline/core/flow.js';
import { type FailureLog, MedsslError, fromErrorData, guard } from '../../pipeline/core/failures.js';
import { type Keyring, privacyKeyring, warnPublicKey } from '../../pipeline/core/privacy.js';
import { workerEntry } from '../../pipeline/core/workers.js';
import { DataConfig } from '../../schemas/config.js';
import type { DecodedImage, Dtype, PixelArray, SourceInput, SourceItem } from '../../schemas/records.js';
import { detectFormat } from '../source/source.js';
import { readNpy, readNpz, type NdArray } from '../source/npy.js';
import { loadCodec } from './codecs.js';
import { parseDicom, type DicomFile } from './dicom.js';
import { dicomFrames, dicomMeta, encodingOf, geometryOf, type ImageGeometry } from './dicom-image.js';
import { readNifti, sliceVolume, type NiftiVolume } from './nifti.js';

export interface DecodeOptions {
  /** Where bad files go (as FailureRecords); the stream goes on. */
  failures: FailureLog;
  /** Frames with more samples than this are rejected from the header (default DataConfig.maxPixels). */
  maxPixels?: number;
  /** Files (and gunzipped contents, and claimed volume sizes) larger than this are rejected (bytes). */
  maxFileBytes?: number;
  /** Volumes are cut perpendicular to this voxel axis (0 = i, 1 = j, 2 = k). */
  sliceAxis?: 0 | 1 | 2;
  /** The secret of the patient/study/series keys (default: privacyKeyring(), from MEDSSL_PRIVACY_KEY). */
  privacy?: Keyring;
  /**
   * The gate the items came through: the extra frames of each multi-frame file or volume are admitted into its
   * flight, so memory stays bounded by the window in frames, not in files.
   */
  gate?: Gate;
  /** Files decoded at once (frames of one file always stay in order). Default 1: input order kept. */
  concurrency?: number;
  /**
   * Worker threads (decodeThreads) to decode on; absent: this thread. The frames and failures are the same either
   * way. The caller owns the threads (one set serves many subscriptions, e.g. one per source during ingest).
   */
  threads?: DecodeThreads;
}

/**
 * Decodes each SourceItem into its frames (emitted one by one, in frame order). A file that cannot be read or
 * decoded becomes one FailureRecord on `opts.failures` (stage 'decode'); frames emitted before a mid-file error are
 * kept. Completes when the input completes.
 */
export function decode(opts: DecodeOptions): OperatorFunction<SourceInput, DecodedImage> {
  const { failures, concurrency, gate, threads, ...rest } = opts;
  const frames = (input: SourceInput): AsyncIterable<DecodedImage> => {
    const { bytes, ...item } = input;
    return threads ? threads.decode(item, bytes, rest) : decodeItem(item, bytes, rest);
  };
  return guard((input: SourceInput) => (gate ? admitFrames(frames(input), gate) : frames(input)), {
    stage: 'decode', failures, fileOf: (i) => i.path, idOf: (i) => i.id, concurrency: concurrency ?? 1,
  });
}

/** Worker threads that run decodeItem: `decode({ threads })` hands each item to one of them. */
export interface DecodeThreads {
  /** The frames of one item, decoded on a worker thread; throws the MedsslError the worker saw. */
  decode(item: SourceItem, bytes: Uint8Array | undefined, options: DecodeItemOptions): AsyncIterable<DecodedImage>;
  close(): Promise<void>;
}

/** What decodeItem needs besides the item (DecodeOptions without the operator's own fields). */
export type DecodeItemOptions = Omit<DecodeOptions, 'failures' | 'gate' | 'concurrency' | 'threads'>;

/**
 * `count` worker threads for `decode({ threads })`. Their patient/study/series keys come from `privacyKeyFile`, else
 * MEDSSL_PRIVACY_KEY, as privacyKeyring() reads them: a Keyring's secret never crosses to another thread. Close them
 * when the streams that use them are done.
 */
export async function decodeThreads(count: number, opts: { privacyKeyFile?: string | null } = {}): Promise<DecodeThreads> {
  const { Piscina } = await import('piscina');
  const pool = new Piscina({ ...workerEntry('./decode.worker.js', import.meta.url), minThreads: count, maxThreads: count });
  return {
    async *decode(item, bytes, options) {
      const { privacy: _privacy, ...rest } = options;
      const r = (await pool.run({ item, bytes, options: rest, privacyKeyFile: opts.privacyKeyFile ?? null })) as import('./decode.worker.js').DecodeResult;
      yield* r.frames;
      if (r.error) throw fromErrorData(r.error);
    },
    close: () => pool.destroy(),
  };
}

/**
 * The gate let one item in per file; a file of N frames puts N in flight. Admit the other N - 1 when the first frame
 * says how many there are, and give back what a file announced but did not deliver (the failure record, which the
 * FailureLog releases, stands for one of them).
 */
async function* admitFrames(frames: AsyncIterable<DecodedImage>, gate: Gate): AsyncGenerator<DecodedImage> {
  let announced = 1, delivered = 0;
  // No other file comes in until this one's frame count is known, so at most one file's frames exceed the window.
  gate.hold();
  let held = true;
  const unhold = () => {
    if (held) { held = false; gate.unhold(); }
  };
  try {
    for await (const frame of frames) {
      if (delivered === 0) {
        if (frame.frames > 1) {
          announced = frame.frames;
          gate.admit(announced - 1);
        }
        unhold();
      }
      delivered++;
      yield frame;
    }
  } catch (e) {
    if (delivered > 0) gate.release(announced - delivered - 1);
    throw e;
  } finally {
    unhold();
  }
  if (delivered < announced) gate.release(announced - Math.max(delivered, 1));
}

type Resolved = Required<DecodeItemOptions>;

let defaults: ReturnType<typeof DataConfig.parse> | undefined;

function resolveOptions(opts: DecodeItemOptions): Resolved {
  // Parsed once: a zod parse per file costs as much as decoding a small image.
  const d = (defaults ??= DataConfig.parse({}));
  return {
    maxPixels: opts.maxPixels ?? d.maxPixels,
    maxFileBytes: Math.min(opts.maxFileBytes ?? d.maxFileBytes, 2 ** 31 - 1),
    sliceAxis: opts.sliceAxis ?? (d.sliceAxis as 0 | 1 | 2),
    privacy: opts.privacy ?? privacyKeyring(),
  };
}

/**
 * The frames of one item. An AsyncGenerator because the WebAssembly codecs initialise asynchronously (once per
 * process, on the first file that needs them); everything after that is synchronous. Reads the file when `bytes`
 * is undefined. Throws MedsslError for bad input.
 */
export async function* decodeItem(item: SourceItem, bytes: Uint8Array | undefined, options: DecodeItemOptions): AsyncGenerator<DecodedImage> {
  const opts = resolveOptions(options);
  const file = item.path;
  if (item.error) throw new MedsslError(item.error.code, file, item.error.reason);
  if (item.format === 'npy' || (item.format === undefined && file.toLowerCase().endsWith('.npy'))) {
    yield* npyFrames(item, bytes, opts);
    return;
  }
  if (item.format === 'npz' || (item.entry !== undefined && /\.npz$/i.test(file))) {
    yield* npzFrames(item, bytes, opts);
    return;
  }
  const raw = maybeGunzip(bytes ?? readBounded(file, opts.maxFileBytes), file, opts.maxFileBytes);
  const format = item.format === 'dicom' || item.format === 'nifti' ? item.format : detectFormat(raw, file.toLowerCase().replace(/\.gz$/, ''));
  if (format === 'nifti' || (format === undefined && raw.length >= 4 && isNiftiSize(raw))) {
    yield* niftiFrames(item, raw, opts);
    return;
  }
  if (format !== 'dicom') throw new MedsslError('wrong-format', file, 'not a DICOM or NIfTI file');
  const { d, g, enc } = await openDicom(raw, file, opts);
  yield* dicomImages(item, d, g, enc, opts);
}

/** Parses a DICOM file's header, checks its geometry, and loads the codec its transfer syntax needs. */
async function openDicom(raw: Uint8Array, file: string, opts: Resolved) {
  const d = parseDicom(raw, file, opts.maxFileBytes);
  const g = geometryOf(d, file, opts.maxPixels);
  const enc = encodingOf(d.transferSyntax, file);
  if (enc.kind === 'codec') {
    await loadCodec(enc.codec);
    if (enc.fallback) await loadCodec(enc.fallback);
  }
  return { d, g, enc };
}

function* dicomImages(item: SourceItem, d: DicomFile, g: ImageGeometry, enc: ReturnType<typeof encodingOf>, opts: Resolved): Generator<DecodedImage> {
  const meta = dicomMeta(d, item.path);
  const keys = {
    patientKey: opts.privacy.key('patient', item.patientId ?? meta.patientId),
    studyKey: opts.privacy.key('study', meta.studyUid),
    seriesKey: opts.privacy.key('series', meta.seriesUid),
  };
  let f = 0;
  for (const fr of dicomFrames(d, g, enc, item.path)) {
    yield clean({
      id: `${item.id}#${f}`, sourceId: item.id, path: item.path, format: 'dicom', frame: f, frames: g.frames,
      modality: item.modality ?? meta.modality, rows: g.rows, cols: g.cols, samples: fr.samples, dtype: fr.dtype, data: fr.data,
      photometric: fr.photometric, bitsStored: g.bitsStored, ...frameFields(g.frames > 1 ? meta.frame(f) : meta), ...keys,
      label: item.label, split: item.split,
    });
    f++;
  }
}

function frameFields(m: { rescale: DecodedImage['rescale']; window?: DecodedImage['window']; spacing?: [number, number]; position?: number[]; orientation?: number[] }) {
  return { rescale: m.rescale, window: m.window, spacing: m.spacing ?? null, position: m.position, orientation: m.orientation };
}

function* niftiFrames(item: SourceItem, raw: Uint8Array, opts: Resolved): Generator<DecodedImage> {
  const vol = readNiftiItem(item.path, raw, opts.maxFileBytes);
  const axis = opts.sliceAxis;
  const frames = vol.dims.slice(3).reduce((a, d) => a * d, 1) * (vol.dims[axis] ?? 1);
  const plane = [0, 1, 2].filter((a) => a !== axis);
  if ((vol.dims[plane[0]] ?? 1) * (vol.dims[plane[1]] ?? 1) * vol.components > opts.maxPixels) {
    throw new MedsslError('too-large', item.path, `a slice exceeds the ${opts.maxPixels}-sample limit`);
  }
  const A = vol.affine;
  const patientKey = opts.privacy.key('patient', item.patientId);
  let f = 0;
  for (const s of sliceVolume(vol.data, vol.dims, vol.components, axis)) {
    const sp = [Math.abs(vol.pixdim[s.rowAxis]), Math.abs(vol.pixdim[s.colAxis])];
    // NIfTI world space is RAS+; DecodedImage positions follow DICOM's LPS (negate x and y).
    const ras = [0, 1, 2].map((r) => A[r][0] * s.origin[0] + A[r][1] * s.origin[1] + A[r][2] * s.origin[2] + A[r][3]);
    const dir = (axisIndex: number) => {
      const v = [A[0][axisIndex], A[1][axisIndex], A[2][axisIndex]];
      const n = Math.hypot(v[0], v[1], v[2]) || 1;
      return [-v[0] / n, -v[1] / n, v[2] / n];
    };
    yield clean({
      id: `${item.id}#${f}`, sourceId: item.id, path: item.path, format: 'nifti', frame: f, frames,
      modality: item.modality ?? 'OT', rows: s.rows, cols: s.cols, samples: vol.components, dtype: vol.dtype, data: s.data,
      photometric: vol.components === 1 ? 'MONOCHROME2' : vol.components === 3 ? 'RGB' : 'RGBA',
      rescale: vol.rescale, spacing: sp.every((v) => Number.isFinite(v) && v > 0) ? (sp as [number, number]) : null,
      position: [-ras[0], -ras[1], ras[2]], orientation: [...dir(s.colAxis), ...dir(s.rowAxis)],
      patientKey, label: item.label, split: item.split,
    });
    f++;
  }
}

/** A NIfTI item's volume; for .hdr files the sibling .img (or .img.gz) is read too. */
export function readNiftiItem(file: string, raw: Uint8Array, maxBytes: number): NiftiVolume {
  let image: Uint8Array | undefined;
  const m = /^(.*)\.hdr(\.gz)?$/i.exec(file);
  if (m) {
    const candidates = [`${m[1]}.img`, `${m[1]}.img.gz`, `${m[1]}.IMG`];
    const img = candidates.find((c) => fs.existsSync(c));
    if (!img) throw new MedsslError('not-found', file, `image data file ${candidates[0]} is missing (header-only file)`);
    image = maybeGunzip(readBounded(img, maxBytes), img, maxBytes);
  }
  return readNifti(raw, image, file, maxBytes);
}

// MedMNIST archives: one archive is kept parsed (items of one .npz arrive together), keyed by path and size.
let npzCache: { key: string; arrays: Map<string, NdArray> } | undefined;

function* npzFrames(item: SourceItem, bytes: Uint8Array | undefined, opts: Resolved): Generator<DecodedImage> {
  const file = item.path;
  const m = /^(train|val|test)\/(\d+)$/.exec(item.entry ?? '');
  if (!m) {
    // A whole archive listed as one item could not be expanded: parsing it again says what is wrong with it.
    if (item.entry === undefined) readNpz(bytes ?? readBounded(file, opts.maxFileBytes), file, opts.maxFileBytes);
    throw new MedsslError('invalid-value', file, `npz entry '${item.entry ?? ''}' is not <split>/<index>`);
  }
  const key = `${file}:${bytes ? bytes.length : fs.statSync(file).size}`;
  if (npzCache?.key !== key) npzCache = { key, arrays: readNpz(bytes ?? readBounded(file, opts.maxFileBytes), file, opts.maxFileBytes) };
  const images = npzCache.arrays.get(`${m[1]}_images`);
  if (!images) throw new MedsslError('invalid-value', file, `no ${m[1]}_images array`);
  const index = Number(m[2]);
  const [n, ...rest] = images.shape;
  if (index >= n) throw new MedsslError('invalid-value', file, `entry ${item.entry} is past the ${n} images of ${m[1]}`);
  if (images.dtype === 'bool' || images.fortranOrder) throw new MedsslError('unsupported', file, 'npz images must be a C-order numeric array');
  const per = rest.reduce((a, d) => a * d, 1);
  const one = images.data.subarray(index * per, (index + 1) * per) as PixelArray;
  const dtype = images.dtype as Dtype;
  const base = { sourceId: item.id, path: file, format: 'npz' as const, modality: item.modality ?? 'OT', dtype, rescale: { slope: 1, intercept: 0 }, spacing: null, label: item.label, split: item.split, patientKey: opts.privacy.key('patient', item.patientId) };
  if (rest.length === 2 || (rest.length === 3 && (rest[2] === 3 || rest[2] === 1) && rest[0] !== rest[2])) {
    // (H, W) or (H, W, C): one 2-D image.
    const samples = rest.length === 3 ? rest[2] : 1;
    yield clean({ ...base, id: `${item.id}#0`, frame: 0, frames: 1, rows: rest[0], cols: rest[1], samples, data: one.slice() as PixelArray, photometric: samples === 3 ? 'RGB' : 'MONOCHROME2' });
    return;
  }
  if (rest.length !== 3) throw new MedsslError('unsupported', file, `npz images of shape (${images.shape.join(', ')}) are not 2-D or 3-D`);
  // (D, H, W) C-order: W varies fastest, so it is voxel axis i, H is j and D is k (the NIfTI convention).
  const dims = [rest[2], rest[1], rest[0]];
  const frames = dims[opts.sliceAxis];
  let f = 0;
  for (const s of sliceVolume(one, dims, 1, opts.sliceAxis)) {
    yield clean({ ...base, id: `${item.id}#${f}`, frame: f, frames, rows: s.rows, cols: s.cols, samples: 1, data: s.data, photometric: 'MONOCHROME2' });
    f++;
  }
}

/**
 * A bare .npy array: stored values without metadata (no modality, spacing or rescale), one DecodedImage per frame
 * (arrayFrames). The normalize stage scales them by their own min and max (its 'minmax' rule).
 */
function* npyFrames(item: SourceItem, bytes: Uint8Array | undefined, opts: Resolved): Generator<DecodedImage> {
  const file = item.path;
  const array = readNpy(bytes ?? readBounded(file, opts.maxFileBytes), file, opts.maxFileBytes);
  const frames = arrayFrames(array, file);
  const patientKey = opts.privacy.key('patient', item.patientId);
  for (const [f, frame] of frames.entries()) {
    if (frame.height * frame.width * frame.channels > opts.maxPixels) {
      throw new MedsslError('too-large', file, `frame of ${frame.height}x${frame.width}x${frame.channels} exceeds maxPixels ${opts.maxPixels}`);
    }
    yield clean({
      id: `${item.id}#${f}`, sourceId: item.id, path: file, format: 'npy', frame: f, frames: frames.length,
      modality: item.modality ?? 'OT', rows: frame.height, cols: frame.width, samples: frame.channels,
      dtype: array.dtype === 'bool' ? 'uint8' : array.dtype, data: frame.values,
      photometric: frame.channels === 3 ? 'RGB' : 'MONOCHROME2', rescale: { slope: 1, intercept: 0 }, spacing: null,
      patientKey, label: item.label, split: item.split,
    });
  }
}

interface ArrayFrame {
  height: number;
  width: number;
  channels: number;
  values: PixelArray;
}

/**
 * The 2-D frames of an array: (H, W) is one grey frame; (H, W, C) with C <= 4 one frame of C channels; otherwise
 * (D, H, W) gives D grey slices and (D, H, W, C) D frames of C channels, slicing along the first axis.
 */
export function arrayFrames(a: NdArray, file: string): ArrayFrame[] {
  if (a.fortranOrder) throw new MedsslError('unsupported', file, 'Fortran-order arrays are not supported');
  const s = a.shape;
  const frame = (h: number, w: number, c: number, count: number): ArrayFrame[] => {
    const n = h * w * c;
    return Array.from({ length: count }, (_, i) => ({ height: h, width: w, channels: c, values: a.data.subarray(i * n, (i + 1) * n) as PixelArray }));
  };
  if (s.some((d) => d === 0)) throw new MedsslError('invalid-value', file, `array of shape (${s.join(', ')}) is empty`);
  if (s.length === 2) return frame(s[0], s[1], 1, 1);
  if (s.length === 3 && s[2] <= 4) return frame(s[0], s[1], s[2], 1);
  if (s.length === 3) return frame(s[1], s[2], 1, s[0]);
  if (s.length === 4 && s[3] <= 4) return frame(s[1], s[2], s[3], s[0]);
  throw new MedsslError('unsupported', file, `array of shape (${s.join(', ')}) is not an image, a stack or a volume`);
}

/** Drops undefined fields so records compare and serialise cleanly. */
function clean(r: DecodedImage): DecodedImage {
  for (const k of Object.keys(r) as Array<keyof DecodedImage>) if (r[k] === undefined) delete r[k];
  return r;
}

function isNiftiSize(b: Uint8Array): boolean {
  const dv = new DataView(b.buffer, b.byteOffset, 4);
  const le = dv.getInt32(0, true), be = dv.getInt32(0, false);
  return le === 348 || le === 540 || be === 348 || be === 540;
}

/**
 * Reads a whole regular file after checking its size: the limit is checked before any allocation, and never more
 * than the size checked is read (a file that grows meanwhile is cut there). Opened non-blocking and checked with
 * fstat, so a FIFO or device put where a file was fails at once instead of blocking.
 */
export function readBounded(file: string, maxBytes: number): Uint8Array {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new MedsslError('not-found', file, 'no such file');
    throw new MedsslError('unreadable', file, `cannot open: ${code ?? (err as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw new MedsslError('unreadable', file, 'is a folder');
    if (!st.isFile()) throw new MedsslError('unreadable', file, 'not a regular file');
    if (st.size > maxBytes) throw new MedsslError('too-large', file, `${st.size} bytes exceeds the ${maxBytes}-byte limit`);
    const out = Buffer.allocUnsafeSlow(st.size);
    let n = 0;
    while (n < out.length) {
      const got = fs.readSync(fd, out, n, out.length - n, n);
      if (got === 0) break; // shrank since fstat: what is there
      n += got;
    }
    return out.subarray(0, n);
  } catch (err) {
    if (err instanceof MedsslError) throw err;
    throw new MedsslError('unreadable', file, `cannot read: ${(err as Error).message}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** gunzips gzip-wrapped files (.dcm.gz, .nii.gz, zipMR.gz); output bounded by `maxBytes`. */
export function maybeGunzip(b: Uint8Array, file: string, maxBytes: number): Uint8Array {
  if (b.length < 2 || b[0] !== 0x1f || b[1] !== 0x8b) return b;
  try {
    return zlib.gunzipSync(b, { maxOutputLength: maxBytes });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || /buffer|size/i.test(e.message) && e.code === 'ERR_OUT_OF_RANGE') {
      throw new MedsslError('too-large', file, `gunzipped content exceeds ${maxBytes} bytes`);
    }
    const code = /unexpected end/i.test(e.message) ? 'truncated' : 'corrupt';
    throw new MedsslError(code, file, `gzip data does not inflate: ${e.message}`);
  }
}

export interface DecodedFile {
  /** Header fields as JSON (no raw PHI). */
  meta: Record<string, unknown>;
  /** All stored values: DICOM (frames, rows, cols[, samples]); NIfTI on-disk order (..., dim3, dim2, dim1[, rgb]). */
  data: PixelArray;
  shape: number[];
}

/** A whole file at once (the `medssl decode` command and tests): every frame stacked, or the NIfTI volume as stored. */
export async function decodeFile(file: string, options: DecodeItemOptions = {}): Promise<DecodedFile> {
  const opts = resolveOptions(options);
  const raw = maybeGunzip(readBounded(file, opts.maxFileBytes), file, opts.maxFileBytes);
  const format = detectFormat(raw, file.toLowerCase().replace(/\.gz$/, ''));
  if (format === 'nifti') {
    const v = readNiftiItem(file, raw, opts.maxFileBytes);
    const shape = [...v.dims].reverse().concat(v.components > 1 ? [v.components] : []);
    return {
      meta: { file, format: 'nifti', niftiVersion: v.version, dims: v.dims, datatypeCode: v.datatypeCode, dtype: v.dtype, littleEndian: v.littleEndian, pixdim: v.pixdim, rescale: v.rescale, affine: v.affine, shape },
      data: v.data, shape,
    };
  }
  if (format !== 'dicom') throw new MedsslError('wrong-format', file, 'not a DICOM or NIfTI file');
  const { d, g, enc } = await openDicom(raw, file, opts);
  const item: SourceItem = { id: file, path: file, format: 'dicom' };
  const frames = [...dicomImages(item, d, g, enc, opts)];
  const first = frames[0];
  if (first.patientKey || first.studyKey || first.seriesKey) warnPublicKey(opts.privacy);
  const per = first.data.length;
  const data = new (first.data.constructor as new (n: number) => PixelArray)(per * frames.length);
  frames.forEach((f, i) => data.set(f.data as ArrayLike<number> & PixelArray, i * per));
  const shape = [frames.length, g.rows, g.cols].concat(first.samples > 1 ? [first.samples] : []);
  const { data: _omit, id: _id, sourceId: _s, path: _p, frame: _f, ...fields } = first;
  return {
    meta: { file, ...fields, transferSyntax: d.transferSyntax, transferSyntaxInferred: d.transferSyntaxInferred, bitsAllocated: g.bitsAllocated, pixelRepresentation: g.signed ? 1 : 0, storedPhotometric: g.photometric, shape },
    data, shape,
  };
}
