// Where pre-training gets its batches: the pool is ingested once into an LMDB cache (decode -> normalize, resumable),
// and every epoch replays it in a seeded order through the random part of the pipeline:
//
//   cache replay --Gate.source--> drop labels not asked for --> augment (worker pool) --settle--> toBatches
//
// The Gate counts images between the replay and the batcher, and the trainer pauses it while its queue is full, so
// memory stays bounded however slow a step is. Val and test splits (MedMNIST) are never pre-trained on.
//
// Data-parallel training (`world` of N ranks): rank r replays only the positions p of the epoch's seeded order with
// p mod N = r, among the epoch's first stepsPerEpoch x B, and batches them by B / N. Batch k of every rank together is
// then exactly batch k of one process (positions kB .. kB + B - 1), and the crops are the same, since they depend
// only on (seed, epoch, image).
import { type Observable, map } from 'rxjs';
import type { Config } from '../schemas/config.js';
import type { Batch, NormalizedImage } from '../schemas/records.js';
import { CacheDataset } from '../stages/cache/replay.js';
import { augment } from '../stages/augment/augment.js';
import { toBatches } from '../stages/augment/batch.js';
import { CropBuffers } from '../stages/augment/buffers.js';
import { FailureLog, MedsslError } from './failures.js';
import { Gate, settle } from './flow.js';
import { ingestInputs, preparationHash } from './prepare.js';

export interface PoolOptions {
  /** The LMDB cache folder the pool is ingested into (and replayed from). */
  cachePath: string;
  /** Default config.data.inputs. */
  inputs?: string[];
  /** Ingest on this many threads. */
  workers?: number;
  failures?: FailureLog;
  /** Where the ingest progress bar (or summary line) goes. */
  progress?: NodeJS.WriteStream;
}

/** The replayable pre-training pool. */
export interface TrainingPool {
  dataset: CacheDataset;
  cachePath: string;
  /** Images per epoch. */
  size: number;
  /** The preparation hash: the cache key prefix of every record. */
  preparation: string;
  /** Ingest summary of this opening (images added, sources skipped as done, failures). */
  ingested: { images: number; skipped: number; failures: number };
  close(): Promise<void>;
}

/** Ingests the pool (what is cached already is skipped) and opens it for replay. */
export async function openTrainingPool(config: Config, opts: PoolOptions): Promise<TrainingPool> {
  const inputs = opts.inputs ?? config.data.inputs;
  const summary = await ingestInputs(config, inputs, opts.cachePath, { workers: opts.workers, failures: opts.failures, progress: opts.progress });
  const preparation = preparationHash(config);
  // Splits, not a header filter: each split has its own run of ordinals in the index, so nothing is read per record.
  const dataset = CacheDataset.open([opts.cachePath], { normalization: preparation, splits: ['train', 'none'] });
  return {
    dataset, cachePath: opts.cachePath, size: dataset.size, preparation,
    ingested: { images: summary.images, skipped: summary.skipped, failures: summary.failures },
    close: () => dataset.close(),
  };
}

export interface BatchesOptions {
  seed: number;
  epoch: number;
  /** Shared with the trainer, which pauses it while its queue is full. Size it with `poolGate`. */
  gate: Gate;
  failures?: FailureLog;
  /** Label columns to train on (supervised and hybrid objectives); 0 trains without labels. */
  numLabels?: number;
  /** Labels are kept only for images whose source this accepts (e.g. "another labelled dataset"); default all. */
  labelled?: (image: NormalizedImage) => boolean;
  /** Stop after this many batches (budgeted runs); default: the whole epoch. */
  steps?: number;
  /** Data-parallel training: this rank's share of every batch (rankPositions); default one process, every position. */
  world?: { rank: number; size: number };
}

/**
 * The positions of an epoch's seeded order that rank `rank` of `size` trains on: those below `total` (the epoch's
 * full global batches, steps x B) with p mod size = rank, in order. A pure function of (order length, rank, size).
 */
export function* rankPositions(total: number, rank: number, size: number): Generator<number> {
  if (!(Number.isInteger(size) && size >= 1 && Number.isInteger(rank) && rank >= 0 && rank < size)) throw new RangeError(`rank ${rank} of ${size}`);
  // Generated, not stored: at 100M records an array of positions would be the memory the ordinal index saves.
  for (let p = rank; p < total; p += size) yield p;
}

/** Each rank's batch size: B / N, which must be a whole number. */
export function localBatchSize(batchSize: number, ranks: number): number {
  if (batchSize % ranks !== 0) {
    throw new MedsslError('invalid-value', 'train.batchSize', `${batchSize} is not divisible by the ${ranks} ranks: each rank trains on batchSize / ranks samples of every batch`);
  }
  return batchSize / ranks;
}

/** One epoch of batches (the last incomplete batch is dropped, as the schedules assume). */
export function poolBatches(pool: TrainingPool, config: Config, opts: BatchesOptions): Observable<Batch> {
  const failures = opts.failures ?? new FailureLog(opts.gate);
  const keepLabel = opts.labelled;
  const numLabels = opts.numLabels ?? 0;
  const world = opts.world && opts.world.size > 1 ? opts.world : null;
  let limited: AsyncIterable<NormalizedImage>;
  let batchSize = config.train.batchSize;
  if (world) {
    batchSize = localBatchSize(config.train.batchSize, world.size);
    const steps = Math.min(opts.steps ?? Infinity, Math.floor(pool.size / config.train.batchSize));
    limited = shareOf(pool, pool.dataset.order(opts.seed, opts.epoch), rankPositions(steps * config.train.batchSize, world.rank, world.size), config.cache.verify);
  } else {
    const images = pool.dataset.epoch({ seed: opts.seed, epoch: opts.epoch, readers: config.cache.readers, verify: config.cache.verify, failures });
    limited = opts.steps === undefined ? images : take(images, opts.steps * config.train.batchSize);
  }
  // Crop sets live only between augment and toBatches here, so their buffers go back to the workers.
  const buffers = new CropBuffers();
  return opts.gate.source(limited).pipe(
    map((image) => (numLabels === 0 || (keepLabel && !keepLabel(image)) ? withoutLabel(image) : image)),
    augment({ failures, config: config.augment, seed: opts.seed, epoch: opts.epoch, buffers }),
    settle(opts.gate),
    toBatches({ batchSize, numLabels, dropLast: true, stratify: config.train.clustering === 'uni-modal' ? 'modality' : 'none', buffers }),
  );
}

/** Optimizer steps in one epoch of `poolBatches`. */
export function poolStepsPerEpoch(pool: TrainingPool, config: Config): number {
  const full = Math.floor(pool.size / config.train.batchSize);
  return Math.min(full, config.train.stepsPerEpoch ?? full);
}

/** The gate for a pool: room for the trainer's queued batches plus one being assembled, counted in images. */
export function poolGate(config: Config): Gate {
  return new Gate({ window: config.train.batchSize * (config.train.highWaterMark + 1) });
}

/** The label width of the first labelled image among the first `probe` records (0 when none is labelled). */
export function labelWidth(pool: TrainingPool, probe = 256): number {
  for (let i = 0; i < Math.min(pool.size, probe); i++) {
    const label = pool.dataset.get(i, false).label;
    if (label?.length) return label.length;
  }
  return 0;
}

function withoutLabel(image: NormalizedImage): NormalizedImage {
  if (!image.label) return image;
  const { label: _, ...rest } = image;
  return rest;
}

/**
 * This rank's images: the records at `positions` of the epoch's order, read on the calling thread. A record that cannot
 * be read stops the run: skipping it would shift this rank's batches against the other ranks'.
 */
async function* shareOf(pool: TrainingPool, order: { at(position: number): number }, positions: Iterable<number>, verify: boolean): AsyncGenerator<NormalizedImage> {
  for (const p of positions) {
    let image: NormalizedImage;
    try {
      image = pool.dataset.get(order.at(p), verify);
    } catch (e) {
      throw new MedsslError('corrupt', pool.cachePath, `record ${order.at(p)} of the epoch's order cannot be read (${(e as Error).message}); a data-parallel run cannot skip it without shifting this rank's batches against the others': check the cache (medssl cache verify) and resume`);
    }
    yield image;
  }
}

async function* take<T>(source: AsyncIterable<T>, n: number): AsyncGenerator<T> {
  if (n <= 0) return;
  let i = 0;
  for await (const x of source) {
    yield x;
    if (++i >= n) return;
  }
}
