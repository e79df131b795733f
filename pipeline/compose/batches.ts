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
import type { Config } from '../../schemas/config.js';
import type { Batch, NormalizedImage } from '../../schemas/records.js';
import { CacheDataset } from '../../stages/cache/replay.js';
import { augment } from '../../stages/augment/augment.js';
import { toBatches } from '../../stages/batch/batch.js';
import { CropBuffers } from '../../stages/augment/buffers.js';
import { CorruptRecordError } from '../../stages/cache/store.js';
import { FailureLog, MedsslError } from '../core/failures.js';
import { random } from '../core/random.js';
import { Gate, settle } from '../core/flow.js';
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
  /** The modality of each record, in the dataset's order (for modality-balanced epochs). */
  modalities: string[];
  close(): Promise<void>;
}

/** Ingests the pool (what is cached already is skipped) and opens it for replay. */
export async function openTrainingPool(config: Config, opts: PoolOptions): Promise<TrainingPool> {
  const inputs = opts.inputs ?? config.data.inputs;
  const summary = await ingestInputs(config, inputs, opts.cachePath, { workers: opts.workers, failures: opts.failures, progress: opts.progress });
  const preparation = preparationHash(config);
  // Splits, not a header filter: each split has its own run of ordinals in the index, so nothing is read per record.
  const dataset = CacheDataset.open([opts.cachePath], { normalization: preparation, splits: ['train', 'none'] });
  let modalities: string[] | undefined;
  return {
    dataset, cachePath: opts.cachePath, size: dataset.size, preparation,
    // Read on first use only (modality-balanced epochs): one header per record, a string each.
    get modalities() {
      modalities ??= Array.from({ length: dataset.size }, (_, i) => dataset.header(i)?.modality ?? 'unknown');
      return modalities;
    },
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
  /** Train on the records of these modalities only (the target modality's data alone); default all. */
  modality?: (modality: string) => boolean;
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

/**
 * The share of an epoch each modality gets: proportional to count^power (1: as in the pool; 0: equal; 0.5: the square
 * root, which lifts small modalities without letting a handful of frames dominate), then capped at maxShare with the
 * excess handed to the others in proportion (when every modality would be capped, equal shares).
 */
export function modalityShares(counts: Map<string, number>, power: number, maxShare: number): Map<string, number> {
  const names = [...counts.keys()].filter((m) => counts.get(m)! > 0).sort();
  const weight = new Map(names.map((m) => [m, counts.get(m)! ** power]));
  if (names.length * maxShare <= 1) return new Map(names.map((m) => [m, 1 / names.length]));
  const capped = new Set<string>();
  for (;;) {
    const free = names.filter((m) => !capped.has(m));
    const left = 1 - capped.size * maxShare;
    const total = free.reduce((a, m) => a + weight.get(m)!, 0);
    const over = free.filter((m) => (left * weight.get(m)!) / total > maxShare + 1e-12);
    if (over.length === 0) return new Map(names.map((m) => [m, capped.has(m) ? maxShare : (left * weight.get(m)!) / total]));
    for (const m of over) capped.add(m);
  }
}

export interface BalanceOptions {
  seed: number;
  epoch: number;
  /** Images in the epoch (default: the pool size). */
  epochImages?: number;
  power: number;
  maxShare: number;
  /** > 1: the epoch is made of runs of `block` images of one modality (uni-modal batches, one modality each). */
  block?: number;
}

/**
 * The record indices of one modality-balanced epoch. Modality m gets round(E x share_m) images (with `block`, whole
 * blocks: round(floor(E / block) x share_m) of them), drawn from an endless sequence of seeded permutations of its
 * records: epoch e continues where e - 1 stopped, so a large modality goes through all its images over the epochs
 * and a small one repeats (with fresh crops each time). The images, or the blocks, are then put in a seeded order.
 * A pure function of (modalities, seed, epoch, options).
 */
export function balancedOrder(modalities: readonly string[], opts: BalanceOptions): Uint32Array {
  const byModality = new Map<string, number[]>();
  modalities.forEach((m, i) => { const list = byModality.get(m) ?? []; list.push(i); byModality.set(m, list); });
  const shares = modalityShares(new Map([...byModality].map(([m, l]) => [m, l.length])), opts.power, opts.maxShare);
  const epochImages = opts.epochImages ?? modalities.length;
  const block = Math.max(1, opts.block ?? 1);
  const names = [...shares.keys()];
  // Quotas in whole blocks, with largest-remainder rounding, so that they add up to the epoch's whole blocks: every
  // clustering sees floor(E / block) x block images an epoch (rounding each modality down on its own lost blocks).
  const units = Math.floor(epochImages / block);
  const exact = names.map((m) => units * shares.get(m)!);
  const quota = exact.map(Math.floor);
  let rest = units - quota.reduce((a, b) => a + b, 0);
  for (const k of names.map((_, k) => k).sort((a, b) => (exact[b] - quota[b]) - (exact[a] - quota[a]) || a - b)) { if (rest-- <= 0) break; quota[k]++; }
  const runs: number[][] = [];
  names.forEach((m, k) => {
    const items = byModality.get(m)!;
    const q = quota[k] * block;
    const drawn: number[] = [];
    for (let t = opts.epoch * q; t < (opts.epoch + 1) * q; t++) {
      const cycle = Math.floor(t / items.length);
      drawn.push(items[cyclePermutation(opts.seed, k, cycle, items.length)[t % items.length]]);
    }
    for (let i = 0; i < drawn.length; i += block) runs.push(drawn.slice(i, i + block));
  });
  const order = random(opts.seed).stream({ epoch: opts.epoch, purpose: 'balance-order' }).permutation(runs.length);
  return Uint32Array.from(Array.from(order, (r) => runs[r]).flat());
}

const permutations = new Map<string, Uint32Array>();
function cyclePermutation(seed: number, modality: number, cycle: number, n: number): Uint32Array {
  const key = `${seed}/${modality}/${cycle}/${n}`;
  let p = permutations.get(key);
  if (!p) {
    if (permutations.size > 256) permutations.clear();
    p = random(seed).stream({ epoch: cycle, sample: modality, purpose: 'balance-cycle' }).permutation(n);
    permutations.set(key, p);
  }
  return p;
}

/** The images of one epoch: the cache's own seeded permutation, or a modality-balanced order (config data.sampling). */
async function* epochImages(pool: TrainingPool, config: Config, opts: BatchesOptions, failures: FailureLog): AsyncGenerator<NormalizedImage> {
  const s = config.data.sampling;
  // Loaded here, not at the top: the objectives bring in TensorFlow, which reading and batching images do not need.
  const { objectiveFor } = await import('../../stages/train/objectives/index.js');
  // Uni-modal clustering is about prototypes: an objective without them has no clusters to keep uni-modal.
  const uniModal = config.train.clustering === 'uni-modal' && objectiveFor(config).heads.prototypes;
  if (s.power === 1 && s.maxShare >= 1 && s.epochImages === null && !(uniModal && s.pureBatches) && !opts.modality) {
    yield* pool.dataset.epoch({ seed: opts.seed, epoch: opts.epoch, readers: config.cache.readers, verify: config.cache.verify, failures });
    return;
  }
  // A modality filter samples from its records only (their indices in the pool, in order).
  const keep = opts.modality;
  const index = keep ? pool.modalities.flatMap((m, i) => (keep(m) ? [i] : [])) : null;
  const modalities = index ? index.map((i) => pool.modalities[i]) : pool.modalities;
  const order = balancedOrder(modalities, {
    seed: opts.seed, epoch: opts.epoch, epochImages: s.epochImages ?? modalities.length, power: s.power, maxShare: s.maxShare,
    block: uniModal && s.pureBatches ? config.train.batchSize : 1,
  });
  for (const k of order) {
    const i = index ? index[k] : k;
    try {
      yield pool.dataset.get(i, config.cache.verify);
    } catch (e) {
      if (!(e instanceof CorruptRecordError)) throw e;
      failures.record({ kind: 'failure', file: pool.cachePath, stage: 'replay', code: 'corrupt', reason: e.message, id: e.key });
    }
  }
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
    const images = epochImages(pool, config, opts, failures);
    limited = opts.steps === undefined ? images : take(images, opts.steps * config.train.batchSize);
  }
  // Crop sets live only between augment and toBatches here, so their buffers go back to the workers.
  const buffers = new CropBuffers();
  return opts.gate.source(limited).pipe(
    map((image) => (numLabels === 0 || (keepLabel && !keepLabel(image)) ? withoutLabel(image) : image)),
    augment({ failures, config: config.augment, seed: opts.seed, epoch: opts.epoch, buffers }),
    settle(opts.gate),
    // Pure batches arrive as runs of one modality already; otherwise uni-modal clustering stratifies in toBatches.
    toBatches({ batchSize, numLabels, dropLast: true, stratify: config.train.clustering === 'uni-modal' && !config.data.sampling.pureBatches ? 'modality' : 'none', buffers }),
  );
}

/** Optimizer steps in one epoch of `poolBatches`. */
export function poolStepsPerEpoch(pool: TrainingPool, config: Config): number {
  const full = Math.floor((config.data.sampling.epochImages ?? pool.size) / config.train.batchSize);
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
