// Downstream protocols on a frozen or trainable encoder: linear probe, kNN, fine-tuning.
//
// An Encoder is any tf.LayersModel mapping [N, H, W, C] float32 images to [N, D] features (the trainer's ResNet
// trunk, or a freshly initialised one for "no pre-training"). Every protocol returns test scores and a `scorer`
// (images -> scores) that the robustness probes call on perturbed test images.
import type * as TF from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import { random } from '../../pipeline/core/random.js';
import { aucWithCi, type AucResult } from './auc.js';
import type { LabelledSplit } from './datasets.js';
import { FinetuneStep } from './finetune-step.js';
import type { Encoder } from '../../schemas/encoder.js';

/** Images ([n, H, W, C] row-major) to scores ([n, tasks]); disposes nothing of its caller. */
export type Scorer = (split: LabelledSplit) => Float32Array;

export interface ProtocolResult {
  test: AucResult & { perTask: number[] };
  /** Test-set scores, [n, tasks] row-major (paired comparisons between arms score the same test set). */
  testScores: Float32Array;
  val: number;
  scorer: Scorer;
  /** Releases the tensors the scorer holds. */
  dispose(): void;
}

/** Features of a split, [n, dim] row-major. */
export interface Features { data: Float32Array; dim: number }

/** Precomputed features of the train/val/test splits a probe is given (saves re-encoding across fractions). */
export interface FeatureSet { train: Features; val: Features; test: Features }

/** The rows `idx` of a feature matrix (the label-fraction subset of the training features). */
export function selectRows(f: Features, idx: ArrayLike<number>): Features {
  const data = new Float32Array(idx.length * f.dim);
  for (let k = 0; k < idx.length; k++) data.set(f.data.subarray(idx[k] * f.dim, (idx[k] + 1) * f.dim), k * f.dim);
  return { data, dim: f.dim };
}

export interface LinearProbeOptions {
  /** L2 weights tried; the one with the best validation AUC is kept. */
  weightDecays?: number[];
  steps?: number;
  lr?: number;
}

export interface KnnOptions {
  k?: number;
  /** Temperature of the vote weights exp(cos / T) (Wu et al. 2018 use 0.07). */
  temperature?: number;
}

export interface FinetuneOptions {
  steps: number;
  batchSize?: number;
  lr?: number;
  /** Validation AUC every this many steps (the convergence curve). */
  evalEvery?: number;
  /** Stop after this many evaluations without a better validation AUC (0 = never). */
  patience?: number;
  seed: number;
  /** Random horizontal flips of training images (seeded). */
  flip?: boolean;
}

export interface CurvePoint { step: number; loss: number; valAuc: number }

export interface FinetuneResult extends ProtocolResult {
  curve: CurvePoint[];
  bestStep: number;
  stepsRun: number;
  /** How the updates ran: compiled graphs, steps run as graphs and eagerly, and why any stayed eager. */
  steps: FinetuneStep['stats'];
}

const tasksOf = (s: LabelledSplit) => s.labels.length / s.n;
const toTensor = (s: LabelledSplit, from = 0, to = s.n) =>
  tf.tensor4d(s.images.subarray(from * s.height * s.width * s.channels, to * s.height * s.width * s.channels), [to - from, s.height, s.width, s.channels]);

/** Encoder features of every image, in batches (inference mode). */
export function extractFeatures(encoder: Encoder, split: LabelledSplit, batchSize = 256): Features {
  const parts: Float32Array[] = [];
  let dim = 0;
  for (let i = 0; i < split.n; i += batchSize) {
    const f = tf.tidy(() => {
      const out = encoder.predict(toTensor(split, i, Math.min(split.n, i + batchSize))) as TF.Tensor;
      return out.reshape([out.shape[0], -1]);
    });
    dim = f.shape[1] as number;
    parts.push(f.dataSync() as Float32Array);
    f.dispose();
  }
  const data = new Float32Array(split.n * dim);
  let o = 0;
  for (const p of parts) { data.set(p, o); o += p.length; }
  return { data, dim };
}

/**
 * Logistic regression on frozen, standardised features: full-batch Adam on the mean sigmoid cross-entropy plus
 * wd * ||w||^2 (bias not decayed), from zero weights. Each task is its own convex problem, so zero init is
 * deterministic and loses nothing. Solved in float64 JavaScript: the problem is small (n x D), and per-op dispatch
 * would dominate on TensorFlow. The weight decay is chosen on the validation AUC.
 */
export function linearProbe(encoder: Encoder, train: LabelledSplit, val: LabelledSplit, test: LabelledSplit, opts: LinearProbeOptions = {}, features?: FeatureSet): ProtocolResult {
  const tasks = tasksOf(train);
  const ftr = features?.train ?? extractFeatures(encoder, train), fva = features?.val ?? extractFeatures(encoder, val), fte = features?.test ?? extractFeatures(encoder, test);
  const dim = ftr.dim;
  const { mean, std } = standardiser(ftr.data, train.n, dim);
  const xtr = standardise(ftr.data, mean, std), xva = standardise(fva.data, mean, std);
  let best: { w: Float64Array; val: number } | null = null;
  for (const wd of opts.weightDecays ?? [1e-4, 1e-3, 1e-2]) {
    const w = new Float64Array(tasks * (dim + 1)); // per task: dim weights then the bias
    for (let t = 0; t < tasks; t++) {
      const y = Float64Array.from({ length: train.n }, (_, i) => train.labels[i * tasks + t]);
      w.set(logisticRegression(xtr, y, train.n, dim, wd, opts.steps ?? 300, opts.lr ?? 0.05), t * (dim + 1));
    }
    const v = aucWithCi(linearScores(xva, val.n, dim, w, tasks), val.labels, tasks, { resamples: 0 }).auc;
    if (!best || v > best.val) best = { w, val: v };
  }
  const { w } = best!;
  const scorer: Scorer = (s) => linearScores(standardise(extractFeatures(encoder, s).data, mean, std), s.n, dim, w, tasks);
  const testScores = linearScores(standardise(fte.data, mean, std), test.n, dim, w, tasks);
  return { test: aucWithCi(testScores, test.labels, tasks), testScores, val: best!.val, scorer, dispose: () => {} };
}

/** Binary logistic regression by full-batch Adam (beta 0.9/0.999); returns [w_0..w_{d-1}, b]. */
export function logisticRegression(x: Float64Array, y: Float64Array, n: number, d: number, wd: number, steps: number, lr: number): Float64Array {
  const p = new Float64Array(d + 1), m = new Float64Array(d + 1), v = new Float64Array(d + 1), g = new Float64Array(d + 1);
  const b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (let s = 1; s <= steps; s++) {
    g.fill(0);
    for (let i = 0; i < n; i++) {
      let z = p[d];
      const row = i * d;
      for (let j = 0; j < d; j++) z += x[row + j] * p[j];
      const r = 1 / (1 + Math.exp(-z)) - y[i];
      for (let j = 0; j < d; j++) g[j] += r * x[row + j];
      g[d] += r;
    }
    for (let j = 0; j <= d; j++) {
      const grad = g[j] / n + (j < d ? 2 * wd * p[j] : 0);
      m[j] = b1 * m[j] + (1 - b1) * grad;
      v[j] = b2 * v[j] + (1 - b2) * grad * grad;
      p[j] -= (lr * (m[j] / (1 - b1 ** s))) / (Math.sqrt(v[j] / (1 - b2 ** s)) + eps);
    }
  }
  return p;
}

function standardiser(data: Float32Array, n: number, dim: number): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(dim), std = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += data[i * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= n;
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) std[j] += (data[i * dim + j] - mean[j]) ** 2;
  // Constant features (dead units) get std 1, so they stay 0 instead of dividing by zero.
  for (let j = 0; j < dim; j++) std[j] = std[j] > 1e-12 * n ? Math.sqrt(std[j] / n) : 1;
  return { mean, std };
}

function standardise(data: Float32Array, mean: Float64Array, std: Float64Array): Float64Array {
  const d = mean.length, out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = (data[i] - mean[i % d]) / std[i % d];
  return out;
}

function linearScores(x: Float64Array, n: number, d: number, w: Float64Array, tasks: number): Float32Array {
  const out = new Float32Array(n * tasks);
  for (let i = 0; i < n; i++) for (let t = 0; t < tasks; t++) {
    let z = w[t * (d + 1) + d];
    for (let j = 0; j < d; j++) z += x[i * d + j] * w[t * (d + 1) + j];
    out[i * tasks + t] = z;
  }
  return out;
}

/**
 * Weighted kNN on cosine similarity (Wu et al., CVPR 2018): the k most similar training features vote with weight
 * exp(cos / T); a task's score is the weighted fraction of positive neighbours.
 */
export function knnProbe(encoder: Encoder, train: LabelledSplit, val: LabelledSplit, test: LabelledSplit, opts: KnnOptions = {}, features?: FeatureSet): ProtocolResult {
  const tasks = tasksOf(train);
  const ftr = features?.train ?? extractFeatures(encoder, train);
  const bank = tf.tidy(() => normalise(tf.tensor2d(ftr.data, [train.n, ftr.dim])));
  const ytr = tf.tensor2d(train.labels, [train.n, tasks]);
  const k = Math.min(opts.k ?? 20, train.n), t = opts.temperature ?? 0.07;
  const scoreFeatures = (s: LabelledSplit, f: Features) => {
    const out = new Float32Array(s.n * tasks);
    for (let i = 0; i < s.n; i += 512) {
      const part = tf.tidy(() => {
        const q = normalise(tf.tensor2d(f.data.subarray(i * f.dim, Math.min(s.n, i + 512) * f.dim), [Math.min(s.n, i + 512) - i, f.dim]));
        const { values, indices } = tf.topk(q.matMul(bank, false, true), k);
        const w = values.div(t).exp();
        const votes = tf.gather(ytr, indices.flatten()).reshape([indices.shape[0], k, tasks]);
        return votes.mul(w.expandDims(2)).sum(1).div(w.sum(1, true));
      });
      out.set(part.dataSync() as Float32Array, i * tasks);
      part.dispose();
    }
    return out;
  };
  const scorer: Scorer = (s) => scoreFeatures(s, extractFeatures(encoder, s));
  const valAuc = aucWithCi(scoreFeatures(val, features?.val ?? extractFeatures(encoder, val)), val.labels, tasks, { resamples: 0 }).auc;
  const testScores = scoreFeatures(test, features?.test ?? extractFeatures(encoder, test));
  return { test: aucWithCi(testScores, test.labels, tasks), testScores, val: valAuc, scorer, dispose: () => { bank.dispose(); ytr.dispose(); } };
}

const normalise = (x: TF.Tensor2D) => x.div(x.norm('euclidean', 1, true).add(1e-12));

/**
 * Fine-tuning: encoder + a zero-initialised linear head trained end to end with sigmoid cross-entropy (Adam), each
 * update one FinetuneStep (a TensorFlow graph on the native backends).
 * Validation AUC every `evalEvery` steps gives the convergence curve; the weights of the best validation AUC are
 * kept (early stopping after `patience` evaluations without improvement) and scored on the test set.
 * The encoder is trained in place and becomes part of the fine-tuned model: pass a copy (cloneEncoder) to keep the
 * original; the result's dispose() releases the copy too.
 */
export async function finetune(encoder: Encoder, train: LabelledSplit, val: LabelledSplit, test: LabelledSplit, opts: FinetuneOptions): Promise<FinetuneResult> {
  const tasks = tasksOf(train);
  const input = tf.input({ shape: [train.height, train.width, train.channels] });
  const head = tf.layers.dense({ units: tasks, kernelInitializer: 'zeros', biasInitializer: 'zeros' });
  const model = tf.model({ inputs: input, outputs: head.apply(encoder.apply(input)) as TF.SymbolicTensor });
  const update = new FinetuneStep(model, opts.lr ?? 1e-3);
  const batch = Math.min(opts.batchSize ?? 64, train.n);
  const evalEvery = opts.evalEvery ?? 25, patience = opts.patience ?? 0;
  const size = train.height * train.width * train.channels;
  const score = (s: LabelledSplit) => predictScores(model, s);
  const curve: CurvePoint[] = [];
  let best = { val: -Infinity, step: 0, weights: [] as TF.Tensor[] };
  let since = 0, lossSum = 0, lossCount = 0, step = 0;
  let order: Uint32Array = new Uint32Array(0), cursor = 0, epoch = 0;
  const xb = new Float32Array(batch * size), yb = new Float32Array(batch * tasks);
  for (step = 1; step <= opts.steps; step++) {
    for (let k = 0; k < batch; k++) {
      if (cursor >= order.length) { order = random(opts.seed).stream({ epoch: epoch++, purpose: 'finetune-order' }).permutation(train.n); cursor = 0; }
      const i = order[cursor++];
      const flip = opts.flip && random(opts.seed).stream({ epoch, sample: i, purpose: 'finetune-flip' }).bernoulli(0.5);
      copyImage(train.images, i, xb, k, train.height, train.width, train.channels, !!flip);
      yb.set(train.labels.subarray(i * tasks, (i + 1) * tasks), k * tasks);
    }
    lossSum += update.run(xb, [batch, train.height, train.width, train.channels], yb, tasks); lossCount++;
    if (step % evalEvery === 0 || step === opts.steps) {
      update.sync();
      const valAuc = aucWithCi(score(val), val.labels, tasks, { resamples: 0 }).auc;
      curve.push({ step, loss: lossSum / lossCount, valAuc });
      lossSum = 0; lossCount = 0;
      if (valAuc > best.val) {
        for (const w of best.weights) w.dispose();
        best = { val: valAuc, step, weights: model.getWeights().map((w) => w.clone()) };
        since = 0;
      } else if (patience > 0 && ++since >= patience) break;
    }
  }
  update.sync();
  model.setWeights(best.weights);
  for (const w of best.weights) w.dispose();
  const steps = update.stats;
  update.dispose();
  const testScores = score(test);
  return {
    test: aucWithCi(testScores, test.labels, tasks),
    testScores,
    val: best.val,
    curve,
    bestStep: best.step,
    stepsRun: Math.min(step, opts.steps),
    steps,
    scorer: score,
    dispose: () => { model.dispose(); },
  };
}

function predictScores(model: TF.LayersModel, s: LabelledSplit): Float32Array {
  const tasks = model.outputs[0].shape[1] as number;
  const out = new Float32Array(s.n * tasks);
  for (let i = 0; i < s.n; i += 256) {
    const p = tf.tidy(() => model.predict(toTensor(s, i, Math.min(s.n, i + 256))) as TF.Tensor);
    out.set(p.dataSync() as Float32Array, i * tasks);
    p.dispose();
  }
  return out;
}

function copyImage(src: Float32Array, i: number, dst: Float32Array, k: number, h: number, w: number, c: number, flip: boolean): void {
  const size = h * w * c;
  if (!flip) { dst.set(src.subarray(i * size, (i + 1) * size), k * size); return; }
  for (let yy = 0; yy < h; yy++) for (let xx = 0; xx < w; xx++) for (let ch = 0; ch < c; ch++) {
    dst[k * size + (yy * w + xx) * c + ch] = src[i * size + (yy * w + (w - 1 - xx)) * c + ch];
  }
}

/** An independent copy of an encoder (same architecture, copied weights), for fine-tuning without touching the original. */
export async function cloneEncoder(encoder: Encoder): Promise<Encoder> {
  // toJSON(null, false) returns the topology object itself (not a string) despite its declared type.
  const topology = encoder.toJSON(null, false) as unknown as TF.io.ModelJSON['modelTopology'];
  const copy = await tf.models.modelFromJSON({ modelTopology: topology } as TF.io.ModelJSON);
  copy.setWeights(encoder.getWeights());
  return copy;
}

/**
 * Deterministic initialisation from the counter-based source (tfjs initialisers draw from their own generator):
 * kernels He-normal (fan-in from all but the last kernel axis), biases and BatchNorm beta/mean 0, gamma/variance 1.
 */
export function initialiseWeights(model: TF.LayersModel, seed: number): void {
  const values = model.weights.map((w, index) => {
    const shape = w.shape as number[];
    const name = w.name;
    const size = shape.reduce((a, d) => a * d, 1);
    if (/gamma|moving_variance/.test(name)) return tf.ones(shape);
    if (shape.length < 2) return tf.zeros(shape);
    const fanIn = shape.slice(0, -1).reduce((a, d) => a * d, 1);
    const sd = Math.sqrt(2 / fanIn);
    const rs = random(seed).stream({ sample: index, purpose: 'init-weights' });
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = rs.normal() * sd;
    return tf.tensor(data, shape);
  });
  model.setWeights(values);
  for (const v of values) v.dispose();
}

/**
 * Re-estimates every batch-norm layer's moving mean and variance on `images` ([n, H, W, C] row-major, `shape`
 * = [H, W, C]), in place, layer by layer in topological order: each layer's statistics are the per-channel mean and
 * (population) variance of its input over all images and positions, computed with the layers before it already
 * re-estimated. A fresh encoder otherwise normalises with mean 0 and variance 1, so its features are never centred;
 * this is the control that separates "pre-training" from "calibrated statistics" (the 'none-bn' arm).
 */
export async function recalibrateBatchNorm(encoder: Encoder, images: Float32Array, shape: [number, number, number], batchSize = 256): Promise<void> {
  const size = shape[0] * shape[1] * shape[2];
  const n = Math.floor(images.length / size);
  if (n === 0) throw new RangeError('recalibrateBatchNorm: no images');
  for (const layer of encoder.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    const prefix = tf.model({ inputs: encoder.inputs, outputs: layer.input as TF.SymbolicTensor });
    let channels = 0;
    let sum: Float64Array | null = null, sumSq: Float64Array | null = null, count = 0;
    for (let i = 0; i < n; i += batchSize) {
      const m = Math.min(n, i + batchSize) - i;
      const [mean, meanSq] = tf.tidy(() => {
        const x = prefix.predict(tf.tensor4d(images.subarray(i * size, (i + m) * size), [m, ...shape])) as TF.Tensor;
        const axes = Array.from({ length: x.rank - 1 }, (_, k) => k);
        return [x.mean(axes), x.square().mean(axes)];
      });
      const mv = mean.dataSync(), sv = meanSq.dataSync();
      const positions = m;
      channels = mv.length;
      sum ??= new Float64Array(channels);
      sumSq ??= new Float64Array(channels);
      // Every batch holds m images of the same spatial size, so weighting batch means by m weights every position equally.
      for (let c = 0; c < channels; c++) { sum[c] += mv[c] * positions; sumSq[c] += sv[c] * positions; }
      count += positions;
      mean.dispose(); meanSq.dispose();
    }
    const mean = Float32Array.from(sum!, (v) => v / count);
    const variance = Float32Array.from(sumSq!, (v, c) => Math.max(0, v / count - mean[c] ** 2));
    const weights = layer.getWeights();
    const names = layer.weights.map((w) => w.name);
    const next = weights.map((w, k) => /moving_mean/.test(names[k]) ? tf.tensor1d(mean) : /moving_variance/.test(names[k]) ? tf.tensor1d(variance) : w);
    layer.setWeights(next);
    // getWeights() hands out the layer's own variables: dispose only the tensors made here.
    next.forEach((t, k) => { if (t !== weights[k]) t.dispose(); });
  }
}
