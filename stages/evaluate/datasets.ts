// Labelled datasets for downstream evaluation, loaded from MedMNIST .npz archives.
//
// 2-D sets (PneumoniaMNIST: [n, 28, 28] uint8) become float images in [0, 1]. 3-D sets (AdrenalMNIST3D:
// [n, 28, 28, 28]) are evaluated on 2-D slices: each volume gives the slice with the largest foreground area along
// voxel axis 0 (`slice: 'max-area'`) or its central slice (`slice: 'central'`); the patient key is the volume, so label
// fractions never split a volume. AdrenalMNIST3D volumes are binary shape masks (0/255), not CT intensities.
// Labels are 0/1 per column (one binary or several multi-label tasks), or one column of class ids (RetinaMNIST's
// grades 0-4): those become one-vs-rest tasks, so the AUC is the macro average over classes, as MedMNIST's own
// evaluator reports it.
import fs from 'node:fs';
import path from 'node:path';
import { MedsslError } from '../../pipeline/core/failures.js';
import { readNpz, type NdArray } from '../source/npy.js';
import { resampleBox } from '../kernels/resample.js';
import { luma, repeatChannels } from '../normalize/intensity.js';
import type { Image } from './perturb.js';
import { labelFractions } from './splits.js';

export interface LabelledSplit {
  /** [n, height, width, channels] row-major float32. */
  images: Float32Array;
  n: number;
  height: number;
  width: number;
  channels: number;
  /** [n, tasks] row-major 0/1 (class ids arrive one-hot: one task per class). */
  labels: Float32Array;
  /** Patient (or volume) key per sample, for patient-level label fractions. */
  patients?: string[];
}

export interface LabelledDataset {
  name: string;
  /** 'radiography', 'ct', 'mr', ... (the pool's modality names). */
  modality: string;
  tasks: string[];
  /** The file it was read from, when it came from one. */
  file?: string;
  train: LabelledSplit;
  val: LabelledSplit;
  test: LabelledSplit;
  /** Pre-trained on by the supervised and hybrid arms as "another labelled dataset", never evaluated. */
  pretrainOnly?: boolean;
}

export interface MedmnistOptions {
  name?: string;
  modality?: string;
  /** 3-D only: which slice of each volume to evaluate on. */
  slice?: 'max-area' | 'central';
  /** Task names (default: the file's name for a single binary task). */
  tasks?: string[];
}

/** Loads a MedMNIST-layout .npz (train/val/test _images and _labels, uint8). */
export function loadMedmnist(file: string, opts: MedmnistOptions = {}): LabelledDataset {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new MedsslError((e as { code?: string }).code === 'ENOENT' ? 'not-found' : 'unreadable', file, (e as Error).message);
  }
  const arrays = readNpz(buf, file);
  const base = path.basename(file).replace(/\.npz$/i, '');
  const split = (name: 'train' | 'val' | 'test'): LabelledSplit => {
    const images = arrays.get(`${name}_images`), labels = arrays.get(`${name}_labels`);
    if (!images || !labels) throw new MedsslError('wrong-format', file, `no ${name}_images/${name}_labels arrays (MedMNIST layout expected)`);
    return toSplit(images, labels, file, name, opts.slice ?? 'max-area');
  };
  const splits = [split('train'), split('val'), split('test')];
  const columns = splits[0].labels.length / splits[0].n;
  const classes = classCount(splits, columns, file);
  const [train, val, test] = classes ? splits.map((s) => ({ ...s, labels: oneHot(s.labels, classes) })) : splits;
  const tasks = classes || columns;
  return {
    name: opts.name ?? base,
    modality: opts.modality ?? 'OT',
    tasks: opts.tasks ?? (tasks === 1 ? [base] : Array.from({ length: tasks }, (_, t) => `${base}:${t}`)),
    file,
    train, val, test,
  };
}

/** Most classes a class-id column may declare (MedMNIST's largest has 11): the one-hot labels are allocated from it. */
export const MAX_CLASSES = 256;

/**
 * 0 when every label is 0/1 (binary or multi-label tasks); otherwise the number of classes of a single column of
 * class ids (the largest id + 1). Anything else is refused, naming the file and the value.
 */
function classCount(splits: LabelledSplit[], columns: number, file: string): number {
  let max = 0;
  for (const s of splits) {
    for (const y of s.labels) {
      if (!Number.isInteger(y) || y < 0) throw new MedsslError('invalid-value', file, `label ${y} is not a class id or 0/1`);
      if (y > max) max = y;
    }
  }
  if (max <= 1) return 0;
  if (columns !== 1) throw new MedsslError('unsupported', file, `${columns} label columns with a value of ${max}: multi-label columns must be 0/1, class ids one column`);
  if (max >= MAX_CLASSES) throw new MedsslError('unsupported', file, `class id ${max}: at most ${MAX_CLASSES} classes`);
  return max + 1;
}

function oneHot(ids: Float32Array, classes: number): Float32Array {
  const out = new Float32Array(ids.length * classes);
  ids.forEach((id, i) => { out[i * classes + id] = 1; });
  return out;
}

function toSplit(images: NdArray, labels: NdArray, file: string, name: string, slice: 'max-area' | 'central'): LabelledSplit {
  const [n] = images.shape;
  if (labels.shape[0] !== n) throw new MedsslError('corrupt', file, `${name}: ${n} images but ${labels.shape[0]} labels`);
  const tasks = labels.shape.slice(1).reduce((a, d) => a * d, 1);
  const y = Float32Array.from(labels.data as ArrayLike<number>);
  if (images.shape.length === 3 || (images.shape.length === 4 && images.shape[3] <= 4)) {
    const [, h, w] = images.shape;
    const c = images.shape[3] ?? 1;
    const x = new Float32Array(images.data.length);
    for (let i = 0; i < x.length; i++) x[i] = (images.data[i] as number) / 255;
    return { images: x, n, height: h, width: w, channels: c, labels: y };
  }
  if (images.shape.length === 4) {
    const [, d, h, w] = images.shape;
    const x = new Float32Array(n * h * w);
    const patients: string[] = [];
    for (let i = 0; i < n; i++) {
      const vol = images.data.subarray(i * d * h * w, (i + 1) * d * h * w);
      const z = slice === 'central' ? Math.floor(d / 2) : maxAreaSlice(vol, d, h * w);
      for (let p = 0; p < h * w; p++) x[i * h * w + p] = (vol[z * h * w + p] as number) / 255;
      patients.push(`${name}/${i}`);
    }
    return { images: x, n, height: h, width: w, channels: 1, labels: y, patients };
  }
  throw new MedsslError('unsupported', file, `${name}_images has shape (${images.shape.join(', ')}): expected [n, h, w] or [n, d, h, w]`);
}

/** Index of the slice (along axis 0) with the most non-zero voxels; the first one on ties, the centre if all empty. */
export function maxAreaSlice(volume: ArrayLike<number>, depth: number, sliceSize: number): number {
  let best = Math.floor(depth / 2), bestArea = 0;
  for (let z = 0; z < depth; z++) {
    let area = 0;
    for (let p = 0; p < sliceSize; p++) if (volume[z * sliceSize + p] !== 0) area++;
    if (area > bestArea) { bestArea = area; best = z; }
  }
  return best;
}

/**
 * The dataset for choosing a recipe without touching the test set (evaluate.scoreOn: validation). The validation
 * split is scored in the test split's place, and a held-out part of the training split, as large as the validation
 * split (stratified by label, whole patients, seeded), takes the validation split's place in the probes' selection
 * and early stopping; the label fractions then cut the rest of the training split.
 */
export function forRecipeSelection(ds: LabelledDataset, seed: number): LabelledDataset {
  const n = ds.train.n;
  if (ds.val.n === 0 || n < 2) throw new MedsslError('unsupported', ds.file ?? ds.name, `scoring on the validation split needs a validation split and a training split (${n}/${ds.val.n} images)`);
  const f = Math.min(0.5, ds.val.n / n);
  const held = labelFractions(ds.train.labels, { fractions: [f], seed, tasks: ds.train.labels.length / n, patients: ds.train.patients, purpose: 'selection-hold-out' }).get(f)!;
  const isHeld = new Uint8Array(n);
  for (const i of held) isHeld[i] = 1;
  const rest: number[] = [];
  for (let i = 0; i < n; i++) if (!isHeld[i]) rest.push(i);
  return { ...ds, train: subset(ds.train, rest), val: subset(ds.train, held), test: ds.val };
}

/** The samples at `idx` as a new split. */
export function subset(s: LabelledSplit, idx: ArrayLike<number>): LabelledSplit {
  const size = s.height * s.width * s.channels, tasks = s.labels.length / s.n;
  const images = new Float32Array(idx.length * size), labels = new Float32Array(idx.length * tasks);
  for (let k = 0; k < idx.length; k++) {
    images.set(s.images.subarray(idx[k] * size, (idx[k] + 1) * size), k * size);
    labels.set(s.labels.subarray(idx[k] * tasks, (idx[k] + 1) * tasks), k * tasks);
  }
  return { ...s, images, labels, n: idx.length, ...(s.patients ? { patients: Array.from(idx, (i) => s.patients![i]) } : {}) };
}

/** Sample i as an Image (a view, not a copy). */
export function imageAt(s: LabelledSplit, i: number): Image {
  const size = s.height * s.width * s.channels;
  return { data: s.images.subarray(i * size, (i + 1) * size), height: s.height, width: s.width, channels: s.channels };
}

/** Applies `fn` to every image of a split (the robustness probes). */
export function mapImages(s: LabelledSplit, fn: (img: Image) => Image): LabelledSplit {
  const size = s.height * s.width * s.channels;
  const images = new Float32Array(s.images.length);
  for (let i = 0; i < s.n; i++) images.set(fn(imageAt(s, i)).data, i * size);
  return { ...s, images };
}

/**
 * The dataset at `size` x `size` pixels (the tent filter of stages/kernels: bilinear when enlarging, area-weighted
 * when shrinking), so that an encoder pre-trained on crops of that size is evaluated at its own scale. A dataset
 * already at that size is returned as it is.
 */
export function resizeDataset(ds: LabelledDataset, size: number): LabelledDataset {
  if (ds.train.height === size && ds.train.width === size) return ds;
  const split = (s: LabelledSplit): LabelledSplit => {
    const c = s.channels, inSize = s.height * s.width * c, outSize = size * size * c;
    const images = new Float32Array(s.n * outSize), plane = new Float32Array(size * size);
    const box = { x: 0, y: 0, w: s.width, h: s.height };
    for (let i = 0; i < s.n; i++) {
      const src = s.images.subarray(i * inSize, (i + 1) * inSize), dst = images.subarray(i * outSize, (i + 1) * outSize);
      for (let ch = 0; ch < c; ch++) {
        resampleBox(src, s.width, c, ch, box, size, size, plane);
        for (let p = 0; p < plane.length; p++) dst[p * c + ch] = plane[p];
      }
    }
    return { ...s, images, height: size, width: size };
  };
  return { ...ds, train: split(ds.train), val: split(ds.val), test: split(ds.test) };
}

/**
 * The dataset with `channels` channels, converted as the pool's 8-bit colour images are (stages/normalize): colour to
 * grey by BT.601 luma (alpha dropped), grey replicated. An encoder pre-trained on grey crops then reads RetinaMNIST's
 * fundus photographs as it saw them in the pool.
 */
export function withChannels(ds: LabelledDataset, channels: number): LabelledDataset {
  if (ds.train.channels === channels) return ds;
  const split = (s: LabelledSplit): LabelledSplit => {
    const from = s.channels, pixels = s.n * s.height * s.width;
    let grey = s.images;
    if (from > 1) {
      const rgb = new Float32Array(pixels * 3);
      for (let p = 0; p < pixels; p++) for (let c = 0; c < 3; c++) rgb[p * 3 + c] = s.images[p * from + Math.min(c, from - 1)];
      if (channels === 3) return { ...s, images: rgb, channels };
      grey = luma(rgb);
    }
    return { ...s, images: repeatChannels(grey, channels), channels };
  };
  return { ...ds, train: split(ds.train), val: split(ds.val), test: split(ds.test) };
}
