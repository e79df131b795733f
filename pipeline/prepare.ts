// The deterministic preparation that `medssl ingest` caches: which sources an input holds, and how one source
// becomes normalized frames. This is the one place that wires source listing (stages/source), decoding
// (stages/decode) and normalization (stages/normalize) into the cache; the cache stage only sees `listInputs` and
// `prepareSource` through their types.
//
// DICOM, NIfTI and MedMNIST .npz entries go through decodeItem + normalizeImage. Bare .npy arrays (stored values
// without metadata) become float32 in [0, 1] by a per-frame min-max rule:
//     x' = (x - min) / (max - min)   over all values of the frame (NaN -> 0); a constant frame becomes 0.
import fs from 'node:fs';
import type { Config } from '../schemas/config.js';
import type { NormalizedImage, SourceItem } from '../schemas/records.js';
import { type FailureLog, MedsslError } from './failures.js';
import type { IngestSummary, Shard } from '../stages/cache/ingest.js';
import { stableHash } from './config.js';
import { type Keyring, SourceNames, privacyKeyring, warnPublicKey } from './privacy.js';
import { workerEntry } from './workers.js';
import { type NdArray, readNpy } from '../stages/source/npy.js';
import { listSources } from '../stages/source/source.js';
import { decodeItem } from '../stages/decode/decode.js';
import { normalizeImage } from '../stages/normalize/normalize.js';

/** Bumped whenever prepareSource's output changes for the same input and config: old records then miss. */
export const PREPARE_VERSION = 'decode-normalize-3';

/**
 * Everything that determines the prepared images, as stored in the cache next to its hash. The privacy secret is
 * represented by its key id (an HMAC of a fixed label under it): a changed secret changes the keys, and so the
 * preparation, but the secret, or anything that would let a guess at it be checked quickly, stays out of the cache.
 * `hashPaths` is part of it because it changes the records' ids.
 */
export function preparationConfig(config: Config): Record<string, unknown> {
  return {
    prepare: PREPARE_VERSION,
    normalize: config.normalize,
    sliceAxis: config.data.sliceAxis,
    maxPixels: config.data.maxPixels,
    skipConstantFrames: config.data.skipConstantFrames,
    privacyKeyId: privacyKeyring({ keyFile: config.data.privacyKeyFile }).id,
    hashPaths: config.data.hashPaths,
  };
}

/** The hash that keys the cache's records (NormalizedImage.normalization). */
export function preparationHash(config: Config): string {
  return stableHash(preparationConfig(config));
}

/**
 * The sources under `inputs`: what stages/source lists (DICOM, NIfTI, manifests, .npz entries), plus bare .npy
 * arrays. Ids are paths relative to the input (its folder for a file), plus `#<split>/<index>` for archive entries;
 * with `names` hashing, each path component of an id is its keyed hash. A listing error (a missing input, a bad
 * manifest row) names its file the same way.
 */
export async function* listInputs(
  inputs: string[], opts: { maxFileBytes?: number; followLinks?: 'within' | 'all' | 'none'; names?: SourceNames } = {},
): AsyncGenerator<SourceItem> {
  const { names, ...rest } = opts;
  try {
    for await (const item of listSources(inputs, { ...rest, includeNpy: true })) yield names?.hash ? { ...item, id: names.id(item.id) } : item;
  } catch (e) {
    if (!names || !(e instanceof MedsslError)) throw e;
    const f = names.failure({ kind: 'failure', file: e.file, stage: 'source', code: e.code, reason: e.message });
    throw new MedsslError(f.code, f.file, f.reason);
  }
}

/** How this config's outputs name the files under `inputs` (relative to their root, or hashed with data.hashPaths). */
export function sourceNames(config: Config, inputs: string[]): SourceNames {
  return new SourceNames(inputs, privacyKeyring({ keyFile: config.data.privacyKeyFile }), config.data.hashPaths);
}

/**
 * Prepares one source: its frames as NormalizedImages, in frame order. `bytes` is the file's content when the caller
 * has read it (undefined for archive entries: decodeItem keeps the last archive parsed).
 */
export function prepareSource(config: Config): (item: SourceItem, bytes: Uint8Array | undefined) => AsyncGenerator<NormalizedImage> {
  const normalization = preparationHash(config);
  const privacy = privacyKeyring({ keyFile: config.data.privacyKeyFile });
  const decodeOptions = {
    maxPixels: config.data.maxPixels,
    maxFileBytes: config.data.maxFileBytes,
    sliceAxis: config.data.sliceAxis as 0 | 1 | 2,
    privacy,
  };
  return async function* prepare(item, bytes) {
    if (item.path.toLowerCase().endsWith('.npy') && !item.error) {
      yield* npyFrames(config, item, bytes, normalization, privacy);
      return;
    }
    // The records carry the preparation hash (normalize config + decode options + version), as the cache keys do.
    for await (const decoded of decodeItem(item, bytes, decodeOptions)) {
      const image = normalizeImage(decoded, config.normalize);
      // A frame of one value (padding slices, the empty slices of a mask volume) teaches self-supervision nothing.
      if (config.data.skipConstantFrames && isConstant(image.data)) continue;
      yield { ...image, normalization };
    }
  };
}

function isConstant(data: Float32Array): boolean {
  const first = data[0];
  for (let i = 1; i < data.length; i++) if (data[i] !== first) return false;
  return true;
}

export interface IngestInputsOptions {
  workers?: number;
  failures?: FailureLog;
  /** A progress bar (terminal) or one summary line on this stream. */
  progress?: NodeJS.WriteStream;
  /** Only the sources of this shard (`--shard I/N`). */
  shard?: Shard;
  /** Default config.cache.compression. */
  compression?: boolean;
  /** Skip a file whose size, mtime and inode match its last ingest, without reading it (`--trust-mtime`). */
  trustFileStamps?: boolean;
}

/**
 * Ingests `inputs` into the cache at `cachePath` with `config`'s preparation (resumable: what is there is skipped).
 * The one ingest entry point of the CLI, pre-training and the main job.
 */
export async function ingestInputs(config: Config, inputs: string[], cachePath: string, opts: IngestInputsOptions = {}): Promise<IngestSummary> {
  const { ingest } = await import('../stages/cache/ingest.js');
  const { CacheStore, CACHE_SCHEMA_VERSION } = await import('../stages/cache/store.js');
  const { ingestProgressBar } = await import('../stages/cache/progress.js');
  const workers = Math.max(1, opts.workers ?? 1);
  const names = sourceNames(config, inputs);
  warnPublicKey(privacyKeyring({ keyFile: config.data.privacyKeyFile }));
  const store = CacheStore.open(cachePath, { compression: opts.compression ?? config.cache.compression });
  const pool = workers > 1 ? await prepareInWorkers(config, workers) : undefined;
  let total: number | undefined;
  if (opts.progress?.isTTY) {
    total = 0;
    for await (const _ of listInputs(inputs, { maxFileBytes: config.data.maxFileBytes, followLinks: config.data.followLinks, names })) total++;
  }
  const bar = opts.progress ? ingestProgressBar(opts.progress, { total }) : undefined;
  try {
    const summary = await ingest({
      sources: listInputs(inputs, { maxFileBytes: config.data.maxFileBytes, followLinks: config.data.followLinks, names }),
      names,
      prepare: pool?.prepare ?? prepareSource(config),
      store,
      normalizationHash: preparationHash(config),
      preparation: { schemaVersion: CACHE_SCHEMA_VERSION, config: preparationConfig(config) },
      workers,
      failures: opts.failures,
      shard: opts.shard,
      compression: store.compression,
      maxFileBytes: config.data.maxFileBytes,
      onProgress: bar?.update,
      trustFileStamps: opts.trustFileStamps ?? false,
    });
    bar?.stop(summary);
    return summary;
  } finally {
    bar?.stop();
    await pool?.close();
    await store.close();
  }
}

function* npyFrames(config: Config, item: SourceItem, bytes: Uint8Array | undefined, normalization: string, privacy: Keyring): Generator<NormalizedImage> {
  const array = readNpy(bytes ?? fs.readFileSync(item.path), item.path, config.data.maxFileBytes);
  for (const [index, frame] of framesOf(array, item.path).entries()) {
    if (frame.height * frame.width * frame.channels > config.data.maxPixels) {
      throw new MedsslError('too-large', item.path, `frame of ${frame.height}x${frame.width}x${frame.channels} exceeds maxPixels ${config.data.maxPixels}`);
    }
    yield {
      id: `${item.id}#${index}`,
      sourceId: item.id,
      frame: index,
      modality: item.modality ?? 'OT',
      height: frame.height,
      width: frame.width,
      channels: config.normalize.channels,
      data: toChannels(minMax(frame.values), frame.channels, config.normalize.channels),
      spacing: null,
      range: [0, 1],
      ...(item.patientId ? { patientKey: privacy.key('patient', item.patientId) } : {}),
      ...(item.label !== undefined ? { label: item.label } : {}),
      ...(item.split !== undefined ? { split: item.split } : {}),
      normalization,
    };
  }
}

interface Frame {
  height: number;
  width: number;
  channels: number;
  values: ArrayLike<number>;
}

/**
 * The 2-D frames of an array: (H, W) is one grey frame; (H, W, C) with C <= 4 one frame of C channels; otherwise
 * (D, H, W) gives D grey slices and (D, H, W, C) D frames of C channels, slicing along the first axis.
 */
export function framesOf(a: NdArray, file: string): Frame[] {
  if (a.fortranOrder) throw new MedsslError('unsupported', file, 'Fortran-order arrays are not supported');
  const s = a.shape;
  const frame = (h: number, w: number, c: number, count: number): Frame[] => {
    const n = h * w * c;
    return Array.from({ length: count }, (_, i) => ({ height: h, width: w, channels: c, values: a.data.subarray(i * n, (i + 1) * n) }));
  };
  if (s.some((d) => d === 0)) throw new MedsslError('invalid-value', file, `array of shape (${s.join(', ')}) is empty`);
  if (s.length === 2) return frame(s[0], s[1], 1, 1);
  if (s.length === 3 && s[2] <= 4) return frame(s[0], s[1], s[2], 1);
  if (s.length === 3) return frame(s[1], s[2], 1, s[0]);
  if (s.length === 4 && s[3] <= 4) return frame(s[1], s[2], s[3], s[0]);
  throw new MedsslError('unsupported', file, `array of shape (${s.join(', ')}) is not an image, a stack or a volume`);
}

/** Per-frame min-max to [0, 1] in float32 (NaN and infinities map to 0; a constant frame is all 0). */
export function minMax(values: ArrayLike<number>): Float32Array {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const out = new Float32Array(values.length);
  const range = hi - lo;
  if (!(range > 0) || !Number.isFinite(range)) return out;
  const scale = 1 / range;
  for (let i = 0; i < values.length; i++) {
    const v = (values[i] - lo) * scale;
    out[i] = v >= 0 && v <= 1 ? v : 0;
  }
  return out;
}

/** Channel count conversion: grey replicated to 3, colour averaged to grey (alpha dropped). */
export function toChannels(data: Float32Array, from: number, to: number): Float32Array {
  if (from === to) return data;
  const pixels = data.length / from;
  const out = new Float32Array(pixels * to);
  const colour = Math.min(from, 3);
  for (let p = 0; p < pixels; p++) {
    let grey = 0;
    if (from === 1) grey = data[p];
    else {
      for (let c = 0; c < colour; c++) grey += data[p * from + c];
      grey /= colour;
    }
    for (let c = 0; c < to; c++) out[p * to + c] = from === 1 || to === 1 ? grey : data[p * from + Math.min(c, colour - 1)];
  }
  return out;
}

/**
 * prepareSource on `workers` worker threads: returns a function with the same contract (a promise of the frames,
 * rejected with the MedsslError the worker saw) and a close() that stops the threads.
 */
export async function prepareInWorkers(config: Config, workers: number): Promise<{
  prepare: (item: SourceItem, bytes: Uint8Array | undefined) => Promise<NormalizedImage[]>;
  close: () => Promise<void>;
}> {
  const { Piscina } = await import('piscina');
  const pool = new Piscina({ ...workerEntry('./prepare-worker.js', import.meta.url), minThreads: workers, maxThreads: workers });
  return {
    prepare: async (item, bytes) => {
      const r = (await pool.run({ item, bytes, config })) as import('./prepare-worker.js').PrepareResult;
      if ('error' in r) throw new MedsslError(r.error.code as never, r.error.file, r.error.reason);
      return r.images;
    },
    close: () => pool.destroy(),
  };
}
