// The normalize stage: DecodedImage -> NormalizedImage, one modality rule per image (see README.md for formulas).
// Deterministic, so its output can be cached; the only random rule (a random CT window per sample) is split: this
// stage renders every window, augment draws one per sample and epoch.
import { type OperatorFunction, map } from 'rxjs';
import type { NormalizeConfig } from '../../schemas/config.js';
import type { DecodedImage, NormalizedImage } from '../../schemas/records.js';
import { type FailureLog, MedsslError, fromErrorData, guard } from '../../pipeline/core/failures.js';
import type { Gate } from '../../pipeline/core/flow.js';
import type { RandomStream } from '../../pipeline/core/random.js';
import { ownBuffer, workerEntry } from '../../pipeline/core/workers.js';
import { resampleBox } from '../kernels/resample.js';
import { hounsfieldWindow, luma, minMax, modalityLut, otsuThreshold, percentileScale, percentiles, repeatChannels, toChannels, ybrFullToRgb } from './intensity.js';

export interface NormalizeOptions {
  failures: FailureLog;
  config: NormalizeConfig;
  /**
   * The key of the whole preparation (pipeline/compose/prepare.ts preparationHash: this config, the decode options, the
   * privacy key id, the code version), carried by every image as `normalization`. The cache keys records by it, so
   * images made here and images replayed from a cache name their preparation the same way.
   */
  preparation: string;
  /** Drop frames of one value (data.skipConstantFrames); bare .npy frames are always kept, as they always were. */
  skipConstantFrames?: boolean;
  /** The gate the images came through: a dropped frame leaves the flight. */
  gate?: Gate;
  /**
   * Worker threads (normalizeThreads) to normalize on; absent: this thread. The images and failures are the same
   * either way. The caller owns the threads (one set serves many subscriptions, e.g. one per source during ingest).
   */
  threads?: NormalizeThreads;
}

/**
 * Applies the modality rule to each image. Emits one NormalizedImage per input, in order (less the constant frames
 * when asked to drop them); an image that cannot be normalized (inconsistent size, unsupported layout, absurd
 * resampled size) becomes a FailureRecord (stage 'normalize') and the stream goes on. CT in 'random' window mode
 * yields all windows as renderings.
 */
export function normalize(opts: NormalizeOptions): OperatorFunction<DecodedImage, NormalizedImage> {
  const { config, preparation, skipConstantFrames, gate, threads } = opts;
  // A frame of one value (padding slices, the empty slices of a mask volume) teaches self-supervision nothing.
  const keep = (format: DecodedImage['format'], out: NormalizedImage, constant: () => boolean): NormalizedImage[] => {
    if (skipConstantFrames && format !== 'npy' && constant()) {
      gate?.release();
      return [];
    }
    return [out];
  };
  const here = (image: DecodedImage): NormalizedImage[] => {
    const out = normalizeImage(image, config, undefined, preparation);
    return keep(image.format, out, () => isConstant(out.data));
  };
  const failures = opts.failures;
  if (!threads) return guard(here, { stage: 'normalize', failures, fileOf: (image) => image.path, idOf: (image) => image.id });
  return (images) => images.pipe(
    // Every frame starts on a thread as it arrives (the frames of one file arrive together), so the threads work
    // while earlier results travel back; results, failures included, are then taken in input order. A frame of fewer
    // values than threads.inlineBelow normalizes here: its trip to a thread and back costs more than the work.
    map((image): Started => {
      if (image.rows * image.cols * image.samples < threads.inlineBelow) return { path: image.path, id: image.id, run: () => here(image) };
      const { format, path, id } = image;
      const pending = threads.normalize(image, config, preparation);
      pending.catch(() => undefined); // observed in order below
      return { path, id, run: async function* () { const r = await pending; yield* keep(format, r.image, () => r.constant); } };
    }),
    guard((started) => started.run(), { stage: 'normalize', failures, fileOf: (started) => started.path, idOf: (started) => started.id }),
  );
}

/** A frame handed to normalize's threads (or kept here), and how to take its result. */
interface Started {
  path: string;
  id: string;
  run: () => Iterable<NormalizedImage> | AsyncIterable<NormalizedImage>;
}

/** Worker threads that run normalizeImage: `normalize({ threads })` hands each image to one of them. */
export interface NormalizeThreads {
  /**
   * One image normalized on a worker thread, and whether it is of one value; throws the MedsslError the worker saw.
   * The image's pixels move to the worker (its `data` is detached afterwards) when it owns their whole buffer.
   */
  normalize(image: DecodedImage, config: NormalizeConfig, preparation: string): Promise<{ image: NormalizedImage; constant: boolean }>;
  /** Frames of fewer values (rows x cols x samples) are normalized on the calling thread by `normalize({ threads })`. */
  readonly inlineBelow: number;
  close(): Promise<void>;
}

/**
 * `count` worker threads for `normalize({ threads })`. Frames of fewer than `inlineBelow` values (default 64 x 64:
 * MedMNIST's 28 x 28 images) stay on the calling thread. Close them when the streams that use them are done.
 */
export async function normalizeThreads(count: number, opts: { inlineBelow?: number } = {}): Promise<NormalizeThreads> {
  const { Piscina } = await import('piscina');
  const pool = new Piscina({ ...workerEntry('./normalize.worker.js', import.meta.url), minThreads: count, maxThreads: count });
  return {
    async normalize(image, config, preparation) {
      const data = ownBuffer(image.data);
      const task = { image: { ...image, data }, config, preparation };
      const r = (await pool.run(task, { transferList: [data.buffer as ArrayBuffer] })) as import('./normalize.worker.js').NormalizeResult;
      if (r.error) throw fromErrorData(r.error);
      return { image: r.image!, constant: r.constant! };
    },
    inlineBelow: opts.inlineBelow ?? 64 * 64,
    close: () => pool.destroy(),
  };
}

/** All values equal (the first one). */
export function isConstant(data: Float32Array): boolean {
  const first = data[0];
  for (let i = 1; i < data.length; i++) if (data[i] !== first) return false;
  return true;
}

/** Which rule an image gets. */
export type ModalityRule = 'ct' | 'mr' | 'radiography' | 'unit' | 'other' | 'minmax';

const RADIOGRAPHY = new Set(['CR', 'DX', 'MG', 'RG', 'IO', 'PX', 'DR']);
const UNIT = new Set(['US', 'OT', 'SC', 'XC', 'ES', 'GM', 'SM', 'IVUS', 'OP']);

/**
 * The rule for an image: 8-bit container formats (npz, image) and colour images are scaled to [0, 1] whatever
 * their modality (their values are already display values); then CT, MR and radiography by modality; then US and
 * the other display-value modalities (OT, SC, ...) and any 8-bit source to [0, 1]; anything else (NM, PT, XA, ...)
 * by percentiles.
 */
export function modalityRule(image: Pick<DecodedImage, 'modality' | 'format' | 'samples' | 'dtype'>): ModalityRule {
  // A bare array says nothing about what its values mean: only their own range is known.
  if (image.format === 'npy') return 'minmax';
  const m = image.modality.toUpperCase();
  if (image.format === 'npz' || image.format === 'image' || image.samples > 1) return 'unit';
  if (m === 'CT') return 'ct';
  if (m === 'MR') return 'mr';
  if (RADIOGRAPHY.has(m)) return 'radiography';
  if (UNIT.has(m) || image.dtype === 'uint8' || image.dtype === 'int8') return 'unit';
  return 'other';
}

/** Largest image the spacing resampler may produce (pixels), checked before allocating. */
export const MAX_RESAMPLED_PIXELS = 64 * 1024 * 1024;

/**
 * The pure rule. `rng` only matters for CT in 'random' mode: given, one window is drawn and rendered; absent, every
 * window is rendered (renderings = number of windows) and augment draws later. `preparation` is the key the image
 * carries (NormalizeOptions.preparation); empty for an image that no cache will hold (previews, benches).
 */
export function normalizeImage(image: DecodedImage, config: NormalizeConfig, rng?: RandomStream, preparation = ''): NormalizedImage {
  const { rows, cols, samples } = image;
  if (image.data.length !== rows * cols * samples) {
    throw new MedsslError('invalid-value', image.path, `frame ${image.frame}: ${image.data.length} values for ${rows}x${cols}x${samples}`);
  }
  if (modalityRule(image) === 'minmax') return minMaxImage(image, config.channels, preparation);
  if (samples !== 1 && samples !== 3 && samples !== 4) {
    throw new MedsslError('unsupported', image.path, `frame ${image.frame}: ${samples} samples per pixel`);
  }
  const rule = modalityRule(image);
  const out = { channels: config.channels as number, renderings: 1, range: [0, 1] as [number, number], data: new Float32Array(0) as Float32Array };
  const invert = image.photometric.toUpperCase() === 'MONOCHROME1';
  switch (rule) {
    case 'ct': {
      const hu = modalityLut(image.data, image.rescale.slope, image.rescale.intercept);
      const windows = config.ct.windows;
      if (config.ct.mode === 'channels') {
        out.data = new Float32Array(hu.length * out.channels);
        for (let c = 0; c < out.channels; c++) {
          const w = windows[c % windows.length];
          hounsfieldWindow(hu, w.center, w.width, out.data, out.channels, c);
        }
      } else if (rng) {
        const w = windows[rng.int(windows.length)];
        out.data = repeatChannels(hounsfieldWindow(hu, w.center, w.width), out.channels);
      } else {
        const stride = windows.length * out.channels;
        out.data = new Float32Array(hu.length * stride);
        windows.forEach((w, k) => {
          for (let c = 0; c < out.channels; c++) hounsfieldWindow(hu, w.center, w.width, out.data, stride, k * out.channels + c);
        });
        out.renderings = windows.length;
        out.channels = stride;
      }
      break;
    }
    case 'mr': {
      const v = modalityLut(image.data, image.rescale.slope, image.rescale.intercept);
      if (invert) for (let i = 0; i < v.length; i++) v[i] = -v[i];
      const { data, range } = foregroundZScore(v, config.mr.percentiles);
      out.data = repeatChannels(data, out.channels);
      out.range = range;
      break;
    }
    case 'radiography':
    case 'other': {
      const v = modalityLut(image.data, image.rescale.slope, image.rescale.intercept);
      const q = rule === 'radiography' ? config.radiography.percentiles : config.other.percentiles;
      const [pLo, pHi] = percentiles(v, q);
      out.data = repeatChannels(percentileScale(v, pLo, pHi, invert), out.channels);
      break;
    }
    case 'unit':
      out.data = unitScale(image, out.channels, invert);
      break;
  }
  let height = rows, width = cols, spacing = image.spacing;
  if (config.spacing && image.spacing) {
    const resampled = resampleToSpacing(out.data, rows, cols, out.channels, image.spacing, config.spacing, image.path);
    ({ height, width } = resampled);
    out.data = resampled.data;
    spacing = [config.spacing[0], config.spacing[1]];
  }
  const result: NormalizedImage = {
    id: image.id, sourceId: image.sourceId, frame: image.frame, modality: image.modality,
    height, width, channels: out.channels, data: out.data, spacing, normalization: preparation, range: out.range,
  };
  if (out.renderings > 1) result.renderings = out.renderings;
  if (image.patientKey) result.patientKey = image.patientKey;
  if (image.label) result.label = image.label;
  if (image.split) result.split = image.split;
  return result;
}

/**
 * A bare array's frame: x' = (x - min) / (max - min) over all values of the frame (NaN -> 0; a constant frame
 * becomes 0), then grey replicated or colour averaged to the configured channels. Any number of samples (1-4).
 */
function minMaxImage(image: DecodedImage, channels: number, preparation: string): NormalizedImage {
  const result: NormalizedImage = {
    id: image.id, sourceId: image.sourceId, frame: image.frame, modality: image.modality, height: image.rows, width: image.cols,
    channels, data: toChannels(minMax(image.data), image.samples, channels), spacing: null, range: [0, 1], normalization: preparation,
  };
  if (image.patientKey !== undefined) result.patientKey = image.patientKey;
  if (image.label !== undefined) result.label = image.label;
  if (image.split !== undefined) result.split = image.split;
  return result;
}

/**
 * MR: clip to the percentiles [pLo, pHi], then z = (v - mu) / sd with mu, sd over the foreground (clipped values
 * above their Otsu threshold). The clip makes the statistics robust to the bright outliers and dark background
 * that bias-field and coil-intensity variation produce; z-scoring inside the foreground makes them independent of
 * how much air is in the field of view. Non-finite values become pLo.
 */
export function foregroundZScore(v: Float32Array, q: readonly [number, number]): { data: Float32Array; range: [number, number] } {
  const [pLo, pHi] = percentiles(v, q);
  if (!Number.isFinite(pLo)) return { data: new Float32Array(v.length), range: [0, 0] };
  const clipped = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) { const x = v[i]; clipped[i] = x > pLo ? (x < pHi ? x : pHi) : pLo; }
  const t = otsuThreshold(clipped, pLo, pHi);
  let n = 0, sum = 0;
  for (let i = 0; i < clipped.length; i++) if (clipped[i] > t) { sum += clipped[i]; n++; }
  if (n < 2) { n = clipped.length; sum = 0; for (let i = 0; i < clipped.length; i++) sum += clipped[i]; }
  const mu = sum / n;
  let sq = 0;
  for (let i = 0; i < clipped.length; i++) if (n === clipped.length || clipped[i] > t) sq += (clipped[i] - mu) ** 2;
  const sd = Math.sqrt(sq / n) || 1;
  for (let i = 0; i < clipped.length; i++) clipped[i] = (clipped[i] - mu) / sd;
  return { data: clipped, range: [(pLo - mu) / sd, (pHi - mu) / sd] };
}

/**
 * Display-value sources to [0, 1]: unsigned integers divided by 2^BitsStored - 1 (255 for 8-bit), signed integers
 * shifted by 2^(BitsStored - 1) first, floats by their min and max. YBR_FULL colour is converted to RGB; colour is
 * kept (3 channels) or reduced to BT.601 luma (1 channel); grey is repeated to 3 channels when asked. An alpha
 * channel (4 samples) is dropped. MONOCHROME1 is inverted: y = 1 - y.
 */
export function unitScale(image: DecodedImage, channels: number, invert: boolean): Float32Array {
  const { data, samples, dtype } = image;
  const bits = image.bitsStored ?? bitsOf(dtype);
  let lo = 0, hi = 1;
  if (dtype === 'float32' || dtype === 'float64') {
    lo = Infinity; hi = -Infinity;
    for (let i = 0; i < data.length; i++) { const v = data[i]; if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  } else if (dtype.startsWith('int')) {
    lo = -(2 ** (bits - 1)); hi = 2 ** (bits - 1) - 1;
  } else {
    hi = 2 ** bits - 1;
  }
  const span = hi > lo ? hi - lo : 1;
  const colour = samples >= 3 ? 3 : 1;
  const scaled = new Float32Array(image.rows * image.cols * colour);
  for (let i = 0, o = 0; o < scaled.length; i += samples) {
    for (let s = 0; s < colour; s++, o++) {
      const y = (data[i + s] - lo) / span;
      scaled[o] = y > 0 ? (y < 1 ? y : 1) : 0;
    }
  }
  if (colour === 3) {
    if (image.photometric.toUpperCase().startsWith('YBR_FULL')) ybrFullToRgb(scaled, (2 ** (bits - 1) - lo) / span);
    return channels === 3 ? scaled : luma(scaled);
  }
  if (invert) for (let i = 0; i < scaled.length; i++) scaled[i] = 1 - scaled[i];
  return repeatChannels(scaled, channels);
}

function bitsOf(dtype: DecodedImage['dtype']): number {
  return dtype.endsWith('8') ? 8 : dtype.endsWith('16') ? 16 : 32;
}

/**
 * Resamples (rows, cols, channels) from `from` to `to` spacing (mm per pixel, [row, column]) with the area-correct
 * bilinear filter of stages/kernels/resample.ts (the one augment's crops use): new size = round(size * from / to).
 */
export function resampleToSpacing(
  data: Float32Array, rows: number, cols: number, channels: number,
  from: readonly [number, number], to: readonly [number, number], file: string,
): { data: Float32Array; height: number; width: number } {
  const height = Math.max(1, Math.round((rows * from[0]) / to[0]));
  const width = Math.max(1, Math.round((cols * from[1]) / to[1]));
  if (!(height * width <= MAX_RESAMPLED_PIXELS)) {
    throw new MedsslError('too-large', file, `resampling ${rows}x${cols} at ${from.join('x')} mm to ${to.join('x')} mm gives ${height}x${width} pixels (limit ${MAX_RESAMPLED_PIXELS})`);
  }
  if (height === rows && width === cols) return { data, height, width };
  const plane = new Float32Array(height * width);
  const out = new Float32Array(height * width * channels);
  for (let c = 0; c < channels; c++) {
    resampleBox(data, cols, channels, c, { x: 0, y: 0, w: cols, h: rows }, width, height, plane);
    for (let i = 0, o = c; i < plane.length; i++, o += channels) out[o] = plane[i];
  }
  return { data: out, height, width };
}
