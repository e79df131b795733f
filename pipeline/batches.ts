// Where `medssl pretrain` gets its batches. Today: MedMNIST .npz inputs (2-D images, and the central slice of
// each 3-D volume), scaled to [0, 1], with seeded random resized crops and flips. At merge time this module is
// switched to the real stages (source -> decode -> normalize -> cache -> augment -> batch); its signature stays.
import fs from 'node:fs';
import path from 'node:path';
import { type Observable, from, map } from 'rxjs';
import type { AugmentConfig, Config } from '../schemas/config.js';
import type { Batch } from '../schemas/records.js';
import { readNpz } from '../stages/source/npy.js';
import { MedsslError, type FailureLog } from './failures.js';
import { type Gate, settle } from './flow.js';
import { type RandomStream, random } from './random.js';

/** A grey image in [0, 1], channels last. */
export interface PlainImage {
  id: string;
  modality: string;
  height: number;
  width: number;
  channels: number;
  data: Float32Array;
  label?: number[];
}

export interface BatchesOptions {
  seed: number;
  epoch: number;
  gate?: Gate;
  failures?: FailureLog;
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

const loaded = new Map<string, PlainImage[]>();

/** The training images of every .npz input, loaded once per process. */
export function imagesFor(config: Config): PlainImage[] {
  if (config.data.inputs.length === 0) throw new MedsslError('not-found', 'config', 'data.inputs is empty: nothing to train on');
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
export function readMedmnist(file: string, maxBytes = 2 ** 31): PlainImage[] {
  if (!file.endsWith('.npz')) throw new MedsslError('unsupported', file, 'pretrain reads MedMNIST .npz inputs until the full data path is wired');
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
  const out: PlainImage[] = [];
  for (let i = 0; i < n; i++) {
    const data = new Float32Array(h * w);
    for (let p = 0; p < h * w; p++) data[p] = Number(images.data[i * per + mid + p]) / 255;
    const label = labels ? Array.from({ length: numLabels }, (_, j) => Number(labels.data[i * numLabels + j])) : undefined;
    out.push({ id: `${base}#train/${i}`, modality, height: h, width: w, channels: 1, data, ...(label ? { label } : {}) });
  }
  return out;
}

/** The epoch's batches as row lists: a seeded shuffle; uni-modal clustering gets one modality per batch. */
export function epochOrder(images: PlainImage[], config: Config, seed: number, epoch: number): number[][] {
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

/** Stacks the crops of `rows` into a Batch: views[v] holds crop v of every sample. */
export function assembleBatch(images: PlainImage[], rows: number[], augment: AugmentConfig, seed: number, epoch: number, step: number): Batch {
  const crops = cropPlan(augment);
  const c = images[rows[0]].channels;
  const views = crops.map((cp) => ({ kind: cp.kind, size: cp.size, channels: c, data: new Float32Array(rows.length * cp.size * cp.size * c) }));
  const numLabels = images[rows[0]].label?.length ?? 0;
  const labels = numLabels ? new Float32Array(rows.length * numLabels) : undefined;
  const labelMask = numLabels ? new Uint8Array(rows.length) : undefined;
  rows.forEach((r, j) => {
    const img = images[r];
    crops.forEach((cp, v) => {
      const rng = random(seed).stream({ epoch, sample: img.id, crop: v, purpose: 'crop' });
      const crop = randomResizedCrop(img, cp.size, cp.scale, augment.ratio, augment.flip, rng);
      views[v].data.set(crop, j * crop.length);
    });
    if (labels && labelMask && img.label && img.label.length === numLabels) {
      labels.set(img.label, j * numLabels);
      labelMask[j] = 1;
    }
  });
  return {
    epoch, step, ids: rows.map((r) => images[r].id), modalities: rows.map((r) => images[r].modality), views,
    ...(labels ? { labels, labelMask } : {}), numLabels,
  };
}

function cropPlan(a: AugmentConfig) {
  return [
    ...Array.from({ length: a.global.count }, () => ({ kind: 'global' as const, size: a.global.size, scale: a.global.scale })),
    ...Array.from({ length: a.local.count }, () => ({ kind: 'local' as const, size: a.local.size, scale: a.local.scale })),
  ];
}

/** A box covering `scale` of the area with log-uniform aspect `ratio`, bilinearly resized to size x size, maybe flipped. */
export function randomResizedCrop(img: PlainImage, size: number, scale: readonly [number, number], ratio: readonly [number, number], flipP: number, rng: RandomStream): Float32Array {
  const area = img.height * img.width * rng.range(scale[0], scale[1]);
  const aspect = Math.exp(rng.range(Math.log(ratio[0]), Math.log(ratio[1])));
  const bw = Math.min(img.width, Math.max(1, Math.sqrt(area * aspect)));
  const bh = Math.min(img.height, Math.max(1, Math.sqrt(area / aspect)));
  const x0 = rng.range(0, img.width - bw);
  const y0 = rng.range(0, img.height - bh);
  const flip = rng.bernoulli(flipP);
  const c = img.channels;
  const out = new Float32Array(size * size * c);
  for (let y = 0; y < size; y++) {
    const sy = Math.min(img.height - 1, Math.max(0, y0 + ((y + 0.5) * bh) / size - 0.5));
    const yA = Math.floor(sy), yB = Math.min(img.height - 1, yA + 1), fy = sy - yA;
    for (let x = 0; x < size; x++) {
      const xx = flip ? size - 1 - x : x;
      const sx = Math.min(img.width - 1, Math.max(0, x0 + ((xx + 0.5) * bw) / size - 0.5));
      const xA = Math.floor(sx), xB = Math.min(img.width - 1, xA + 1), fx = sx - xA;
      for (let k = 0; k < c; k++) {
        const p = (yy: number, xq: number) => img.data[(yy * img.width + xq) * c + k];
        const top = p(yA, xA) * (1 - fx) + p(yA, xB) * fx;
        const bottom = p(yB, xA) * (1 - fx) + p(yB, xB) * fx;
        out[(y * size + x) * c + k] = top * (1 - fy) + bottom * fy;
      }
    }
  }
  return out;
}
