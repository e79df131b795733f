// The deterministic preparation that `medssl ingest` caches, as one chain of stage operators:
//
//   listInputs (stages/source) -> decode (stages/decode) -> normalize (stages/normalize) -> ingest (stages/cache)
//
// `prepareImages` is the decode -> normalize part: the function ingest applies to every source, and the one a
// program wiring the stages itself uses (examples/custom-pipeline.ts), so both run the same path. Every image it
// makes carries `preparationHash(config)`, the key the cache stores it under.
import type { OperatorFunction } from 'rxjs';
import { concatMap, map, pipe } from 'rxjs';
import type { Config } from '../../schemas/config.js';
import type { NormalizedImage, SourceInput, SourceItem } from '../../schemas/records.js';
import { type FailureLog, MedsslError } from '../core/failures.js';
import type { Gate } from '../core/flow.js';
import type { IngestSummary, Shard } from '../../stages/cache/ingest.js';
import { stableHash } from '../core/config.js';
import { type Keyring, SourceNames, privacyKeyring, warnPublicKey } from '../core/privacy.js';
import { listSources } from '../../stages/source/source.js';
import { decode } from '../../stages/decode/decode.js';
import { normalize } from '../../stages/normalize/normalize.js';
import { workerEntry } from '../core/workers.js';
import type { PrepareResult, PrepareTask } from './prepare.worker.js';

/** Bumped whenever prepareImages' output changes for the same input and config: old records then miss. */
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
 * The sources under `inputs`: what stages/source lists (DICOM, NIfTI, manifests, .npz entries, bare .npy arrays). Ids are paths relative to the input (its folder for a file), plus `#<split>/<index>` for archive entries;
 * with `names` hashing, each path component of an id is its keyed hash. A listing error (a missing input, a bad
 * manifest row) names its file the same way.
 */
export async function* listInputs(
  inputs: string[], opts: { maxFileBytes?: number; followLinks?: 'within' | 'all' | 'none'; names?: SourceNames } = {},
): AsyncGenerator<SourceItem> {
  const { names, ...rest } = opts;
  try {
    for await (const item of listSources(inputs, rest)) yield names?.hash ? { ...item, id: names.id(item.id) } : item;
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

export interface PrepareOptions {
  /** Where bad files and frames go (FailureRecords, stages 'decode' and 'normalize'); the stream goes on. */
  failures: FailureLog;
  /** The gate the items came through (see decode's and normalize's `gate`). */
  gate?: Gate;
  /** Run each source's decode -> normalize on these worker threads (prepareThreads) instead of this thread. */
  threads?: PrepareThreads;
}

/** Worker threads that run prepareImages on whole sources (prepareThreads). */
export interface PrepareThreads {
  run(input: SourceInput): Promise<PrepareResult>;
  close(): Promise<void>;
}

/**
 * `count` threads that each run the whole chain on a source (prepare.worker.ts), with `config`'s options and privacy
 * key file. One trip per source: decode's and normalize's own `threads` would send every frame across twice, which on
 * 2 cores cost more than it saved. Close them when the streams that use them are done.
 */
export async function prepareThreads(config: Config, count: number): Promise<PrepareThreads> {
  const { Piscina } = await import('piscina');
  const pool = new Piscina({ ...workerEntry('./prepare.worker.js', import.meta.url), workerData: { config }, minThreads: count, maxThreads: count });
  return {
    run: (input) => pool.run({ input } satisfies PrepareTask) as Promise<PrepareResult>,
    close: () => pool.destroy(),
  };
}

/**
 * decode -> normalize with `config`'s options: each source's frames as NormalizedImages, in frame order, keyed by
 * preparationHash(config). Constant frames are dropped when data.skipConstantFrames is on. With `threads`, each
 * source runs the same chain on a worker thread; sources start as they arrive (as many as the gate lets in) and come
 * out in input order, with the same images and failures.
 */
export function prepareImages(config: Config, opts: PrepareOptions): OperatorFunction<SourceInput, NormalizedImage> {
  const { failures, gate, threads } = opts;
  if (threads) {
    return pipe(
      map((input) => threads.run(input)),
      concatMap(async (reply) => {
        const { images, failures: failed } = await reply;
        // The gate let one item in for this source: it now stands for its images and failures.
        if (gate) {
          const n = images.length + failed.length;
          if (n > 1) gate.admit(n - 1);
          else if (n === 0) gate.release();
        }
        for (const f of failed) failures.record(f);
        return images;
      }),
      concatMap((images) => images),
    );
  }
  const { privacy, preparation } = keysOf(config);
  return pipe(
    decode({
      failures, gate,
      maxPixels: config.data.maxPixels,
      maxFileBytes: config.data.maxFileBytes,
      sliceAxis: config.data.sliceAxis as 0 | 1 | 2,
      privacy,
    }),
    normalize({ failures, gate, config: config.normalize, preparation, skipConstantFrames: config.data.skipConstantFrames }),
  );
}

// Ingest builds the chain once per source: the keyring (a key file read, an HMAC key) and the preparation hash are
// made once per config instead.
const keys = new WeakMap<Config, { privacy: Keyring; preparation: string }>();
function keysOf(config: Config): { privacy: Keyring; preparation: string } {
  let k = keys.get(config);
  if (!k) keys.set(config, (k = { privacy: privacyKeyring({ keyFile: config.data.privacyKeyFile }), preparation: preparationHash(config) }));
  return k;
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
  const { ingest } = await import('../../stages/cache/ingest.js');
  const { CacheStore, CACHE_SCHEMA_VERSION } = await import('../../stages/cache/store.js');
  const { ingestProgressBar } = await import('../../stages/cache/progress.js');
  const workers = Math.max(1, opts.workers ?? 1);
  const names = sourceNames(config, inputs);
  warnPublicKey(privacyKeyring({ keyFile: config.data.privacyKeyFile }));
  const store = CacheStore.open(cachePath, { compression: opts.compression ?? config.cache.compression });
  const threads = workers > 1 ? await prepareThreads(config, workers) : undefined;
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
      prepare: (failures) => prepareImages(config, { failures, threads }),
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
    await threads?.close();
    await store.close();
  }
}
