// In-memory MedMNIST batches for trainer tests and the trainer benchmark: the train split of a MedMNIST archive
// (2-D images, or the central slice of each 3-D volume) scaled by x / 255, cropped by the augment stage's own
// cropSet and stacked by its stackBatch. Real runs replay an LMDB cache instead (pipeline/compose/batches.ts).
import fs from 'node:fs';
import path from 'node:path';
import type { AugmentConfig, Config } from '../../schemas/config.js';
import type { Batch, NormalizedImage } from '../../schemas/records.js';
import { type Observable, from, map } from 'rxjs';
import { type Gate, settle } from '../../pipeline/core/flow.js';
import { MedsslError } from '../../pipeline/core/failures.js';
import { random } from '../../pipeline/core/random.js';
import { readNpz } from '../../stages/source/npy.js';
import { cropSet } from '../../stages/augment/crops.js';
import { stackBatch } from '../../stages/batch/batch.js';

export interface BatchesOptions {
  seed: number;
  epoch: number;
  gate?: Gate;
}

/** One epoch of training batches for `config` (drops the last incomplete batch, as the schedules assume). */
export function batchesFor(config: Config, opts: BatchesOptions): Observable<Batch> {
  const images = imagesFor(config);
  // train.stepsPerEpoch, when set, shortens the epoch (short runs and smoke tests).
  const order = epochOrder(images, config, opts.seed, opts.epoch).slice(0, config.train.stepsPerEpoch ?? undefined);
  // Without a gate every batch of the epoch is built at once: pass the trainer's gate for backpressure.
  const source = opts.gate ? opts.gate.source(order) : from(order);
  const batch$ = source.pipe(map((rows, step) => assembleBatch(images, rows, config.augment, opts.seed, opts.epoch, step)));
  return opts.gate ? batch$.pipe(settle(opts.gate)) : batch$;
}

/** Optimizer steps in one epoch of `batchesFor`. */
export function stepsPerEpochFor(config: Config): number {
  const full = Math.floor(imagesFor(config).length / config.train.batchSize);
  return Math.min(full, config.train.stepsPerEpoch ?? full);
}

const loaded = new Map<string, NormalizedImage[]>();

/** The training images of every .npz input of `config`, loaded once per process. */
export function imagesFor(config: Config): NormalizedImage[] {
  return config.data.inputs.flatMap((file) => {
    const key = path.resolve(file);
    let images = loaded.get(key);
    if (!images) {
      images = readMedmnist(file, config.data.maxFileBytes);
      loaded.set(key, images);
    }
    return images;
  });
}

/** MedMNIST train split: 2-D (N, H, W) images, or the central slice of 3-D (N, D, H, W) volumes. */
export function readMedmnist(file: string, maxBytes = 2 ** 31): NormalizedImage[] {
  let buf: Buffer;
  try {
    const st = fs.statSync(file);
    if (st.size > maxBytes) throw new MedsslError('too-large', file, `file is ${st.size} bytes (limit ${maxBytes})`);
    buf = fs.readFileSync(file);
  } catch (e) {
    if (e instanceof MedsslError) throw e;
    throw new MedsslError('not-found', file, (e as Error).message);
  }
  const arrays = readNpz(buf, file, maxBytes);
  const images = arrays.get('train_images');
  const labels = arrays.get('train_labels');
  if (!images) throw new MedsslError('wrong-format', file, 'no train_images array (not a MedMNIST archive)');
  const [n, ...rest] = images.shape;
  if (rest.length !== 2 && rest.length !== 3) throw new MedsslError('unsupported', file, `train_images has shape (${images.shape.join(', ')})`);
  const volume = rest.length === 3;
  const [h, w] = volume ? [rest[1], rest[2]] : [rest[0], rest[1]];
  const per = rest.reduce((a, d) => a * d, 1);
  const mid = volume ? Math.floor(rest[0] / 2) * h * w : 0;
  const base = path.basename(file, '.npz');
  // MedMNIST's 3-D sets are CT-derived, its 2-D chest set radiographs; the modality drives uni-modal clustering.
  const modality = volume ? 'CT' : 'CR';
  const numLabels = labels ? labels.shape[1] ?? 1 : 0;
  const out: NormalizedImage[] = [];
  for (let i = 0; i < n; i++) {
    const data = new Float32Array(h * w);
    for (let p = 0; p < h * w; p++) data[p] = Number(images.data[i * per + mid + p]) / 255;
    const label = labels ? Array.from({ length: numLabels }, (_, j) => Number(labels.data[i * numLabels + j])) : undefined;
    out.push({ id: `${base}#train/${i}`, sourceId: `${base}#train/${i}`, frame: 0, modality, height: h, width: w, channels: 1, data, spacing: null, range: [0, 1], normalization: 'x/255', ...(label ? { label } : {}) });
  }
  return out;
}

/** The epoch's batches as row lists: a seeded shuffle; uni-modal clustering gets one modality per batch. */
export function epochOrder(images: NormalizedImage[], config: Config, seed: number, epoch: number): number[][] {
  const b = config.train.batchSize;
  const perm = random(seed).stream({ epoch, purpose: 'order' }).permutation(images.length);
  if (config.train.clustering === 'multi-modal') {
    return Array.from({ length: Math.floor(images.length / b) }, (_, s) => Array.from(perm.subarray(s * b, (s + 1) * b)));
  }
  const byModality = new Map<string, number[]>();
  for (const i of perm) {
    const m = images[i].modality;
    byModality.set(m, [...(byModality.get(m) ?? []), i]);
  }
  const batches: number[][] = [];
  for (const m of [...byModality.keys()].sort()) {
    const rows = byModality.get(m) as number[];
    for (let s = 0; s + b <= rows.length; s += b) batches.push(rows.slice(s, s + b));
  }
  const mix = random(seed).stream({ epoch, purpose: 'order/modalities' }).permutation(batches.length);
  return Array.from(mix, (i) => batches[i]);
}

/** Stacks the crop sets of `rows` into a Batch: views[v] holds crop v of every sample. */
export function assembleBatch(images: NormalizedImage[], rows: number[], augment: AugmentConfig, seed: number, epoch: number, step: number): Batch {
  const numLabels = images[rows[0]].label?.length ?? 0;
  return stackBatch(rows.map((r, j) => cropSet(images[r], augment, random(seed), epoch, j)), step, numLabels);
}
