// The ResNet encoder (He et al. 2016): stem, four stages of basic (ResNet-18) or bottleneck (ResNet-50) residual
// blocks, global average pooling. NHWC, convolutions without bias (batch norm follows each of them).
//
// The same architecture exists twice over the same named weights: `encode` is a functional forward pass the
// trainer differentiates (fewer ops and no tfjs-layers bookkeeping per step), and `encoderModel` builds the
// equivalent tf.LayersModel for export and downstream use. A test checks that both give the same features.
import type { LayersModel, Tensor, Tensor1D, Tensor2D, Tensor4D, SymbolicTensor } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import type { ModelConfig } from '../../schemas/config.js';
import type { Communicator } from '../../pipeline/core/mpi.js';
import { type BnObservation, BN_EPSILON, BN_MOMENTUM, batchNorm, relu } from './batchnorm.js';
import { conv2dSame } from './conv.js';
import type { ParamStore } from './params.js';

export interface EncoderSpec {
  channels: number;
  block: 'basic' | 'bottleneck';
  /** 'imagenet': 7x7/2 conv + 3x3/2 max pool; 'small': one 3x3/1 conv (for 28-96 px images). */
  stem: 'imagenet' | 'small';
  width: number;
  depth: number[];
  /** Channels of the pooled feature vector. */
  featureDim: number;
}

/** The largest crop the small stem is meant for: above it, a 3x3/1 stem keeps full-resolution maps through stage 1. */
export const SMALL_STEM_MAX_SIZE = 96;

/**
 * Resolves the model section: resnet18 and resnet50 have their published shapes; `resnet` takes width and depth.
 * With `model.stem` null the stem follows the crops: `resnet` gets the small stem for global crops up to
 * SMALL_STEM_MAX_SIZE px and the ImageNet stem above (a 3x3/1 stem on 224 px crops keeps 224 x 224 maps and trains at
 * about 1 image/s on 2 cores); resnet18/50 always get their published ImageNet stem.
 */
export function encoderSpec(model: ModelConfig, channels: number, cropSize?: number): EncoderSpec {
  const block = model.arch === 'resnet50' ? 'bottleneck' : 'basic';
  const width = model.arch === 'resnet' ? model.width : 64;
  const depth = model.arch === 'resnet18' ? [2, 2, 2, 2] : model.arch === 'resnet50' ? [3, 4, 6, 3] : model.depth;
  const stem = model.stem ?? (model.arch === 'resnet' && (cropSize === undefined || cropSize <= SMALL_STEM_MAX_SIZE) ? 'small' : 'imagenet');
  const expansion = block === 'bottleneck' ? 4 : 1;
  return { channels, block, stem, width, depth, featureDim: width * 2 ** (depth.length - 1) * expansion };
}

interface ConvUnit {
  name: string;
  kernel: number;
  stride: number;
  inC: number;
  outC: number;
}

type Units = { stem: ConvUnit; blocks: Array<{ units: ConvUnit[]; shortcut: ConvUnit | null }> };
const unitsCache = new WeakMap<EncoderSpec, Units>();

/** Every conv + BN unit of the encoder, in forward order, with its block structure (computed once per spec). */
export function encoderUnits(spec: EncoderSpec): Units {
  let units = unitsCache.get(spec);
  if (!units) {
    units = listUnits(spec);
    unitsCache.set(spec, units);
  }
  return units;
}

function listUnits(spec: EncoderSpec): Units {
  const stem: ConvUnit = { name: 'stem', kernel: spec.stem === 'imagenet' ? 7 : 3, stride: spec.stem === 'imagenet' ? 2 : 1, inC: spec.channels, outC: spec.width };
  const blocks: Array<{ units: ConvUnit[]; shortcut: ConvUnit | null }> = [];
  let inC = spec.width;
  spec.depth.forEach((n, s) => {
    const w = spec.width * 2 ** s;
    for (let b = 0; b < n; b++) {
      const stride = b === 0 && s > 0 ? 2 : 1;
      const p = `s${s + 1}b${b + 1}`;
      const units: ConvUnit[] = spec.block === 'basic'
        ? [{ name: `${p}c1`, kernel: 3, stride, inC, outC: w }, { name: `${p}c2`, kernel: 3, stride: 1, inC: w, outC: w }]
        : [
          { name: `${p}c1`, kernel: 1, stride: 1, inC, outC: w },
          { name: `${p}c2`, kernel: 3, stride, inC: w, outC: w },
          { name: `${p}c3`, kernel: 1, stride: 1, inC: w, outC: 4 * w },
        ];
      const outC = units[units.length - 1].outC;
      const shortcut = stride !== 1 || inC !== outC ? { name: `${p}down`, kernel: 1, stride, inC, outC } : null;
      blocks.push({ units, shortcut });
      inC = outC;
    }
  });
  return { stem, blocks };
}

/** Creates the encoder's parameters in `store` (names follow tfjs-layers: `<layer>/kernel`, `<layer>/gamma`, ...). */
export function addEncoderParams(store: ParamStore, spec: EncoderSpec): void {
  const { stem, blocks } = encoderUnits(spec);
  for (const u of [stem, ...blocks.flatMap((b) => [...b.units, ...(b.shortcut ? [b.shortcut] : [])])]) {
    store.add(`${u.name}_conv/kernel`, [u.kernel, u.kernel, u.inC, u.outC], { kind: 'he', fan: u.kernel * u.kernel * u.outC });
    addBnParams(store, `${u.name}_bn`, u.outC);
  }
}

export function addBnParams(store: ParamStore, layer: string, c: number): void {
  store.add(`${layer}/gamma`, [c], { kind: 'ones' });
  store.add(`${layer}/beta`, [c], { kind: 'zeros' });
  store.add(`${layer}/moving_mean`, [c], { kind: 'zeros' }, false);
  store.add(`${layer}/moving_variance`, [c], { kind: 'ones' }, false);
}

export function bnParams(store: ParamStore, layer: string) {
  return {
    gamma: store.get(`${layer}/gamma`) as Tensor as Tensor1D,
    beta: store.get(`${layer}/beta`) as Tensor as Tensor1D,
    movingMean: store.get(`${layer}/moving_mean`) as Tensor as Tensor1D,
    movingVariance: store.get(`${layer}/moving_variance`) as Tensor as Tensor1D,
  };
}

export interface ForwardMode {
  training: boolean;
  /** Batch statistics are appended here in training mode (folded into the moving averages after the step). */
  observed?: BnObservation[];
  /** Data-parallel training with synchronised batch norm: statistics over every rank's rows. */
  sync?: Communicator;
}

/** Pooled features [N, featureDim] of images [N, H, W, C]. */
export function encode(store: ParamStore, spec: EncoderSpec, x: Tensor4D, mode: ForwardMode): Tensor2D {
  const { stem, blocks } = encoderUnits(spec);
  const unit = (input: Tensor4D, u: ConvUnit, withRelu: boolean): Tensor4D => {
    const y = conv2dSame(input, store.get(`${u.name}_conv/kernel`) as Tensor as Tensor4D, u.stride);
    const n = batchNorm(y, bnParams(store, `${u.name}_bn`), mode.training, `${u.name}_bn`, mode.observed, mode.sync) as Tensor4D;
    return withRelu ? relu(n) : n;
  };
  let h = unit(x, stem, true);
  if (spec.stem === 'imagenet') h = tf.maxPool(h, 3, 2, 'same') as Tensor4D;
  for (const b of blocks) {
    let y = h;
    b.units.forEach((u, i) => { y = unit(y, u, i < b.units.length - 1); });
    const short = b.shortcut ? unit(h, b.shortcut, false) : h;
    h = relu(tf.add(y, short) as Tensor4D);
  }
  return tf.mean(h, [1, 2]) as Tensor2D;
}

/** Folds observed batch statistics into the moving averages (after a training step). */
export function updateMovingStats(store: ParamStore, observed: BnObservation[]): void {
  tf.tidy(() => {
    for (const o of observed) {
      const m = store.get(`${o.layer}/moving_mean`);
      const v = store.get(`${o.layer}/moving_variance`);
      m.assign(tf.add(tf.mul(m, BN_MOMENTUM), tf.mul(o.mean, 1 - BN_MOMENTUM)));
      v.assign(tf.add(tf.mul(v, BN_MOMENTUM), tf.mul(o.variance, 1 - BN_MOMENTUM)));
    }
  });
  for (const o of observed) {
    o.mean.dispose();
    o.variance.dispose();
  }
  observed.length = 0;
}

/**
 * The encoder as a tf.LayersModel ([N, H, W, C] -> [N, featureDim], any H and W) holding copies of the current
 * weights: what downstream evaluation loads and fine-tunes.
 */
export function encoderModel(store: ParamStore, spec: EncoderSpec): LayersModel {
  const { stem, blocks } = encoderUnits(spec);
  const input = tf.input({ shape: [null, null, spec.channels], name: 'image' }) as SymbolicTensor;
  const layers: Array<{ layer: { setWeights(w: Tensor[]): void }; weights: string[] }> = [];
  const unit = (x: SymbolicTensor, u: ConvUnit, relu: boolean): SymbolicTensor => {
    const conv = tf.layers.conv2d({ name: `${u.name}_conv`, filters: u.outC, kernelSize: u.kernel, strides: u.stride, padding: 'same', useBias: false });
    const bn = tf.layers.batchNormalization({ name: `${u.name}_bn`, axis: -1, epsilon: BN_EPSILON, momentum: BN_MOMENTUM });
    layers.push({ layer: conv, weights: [`${u.name}_conv/kernel`] });
    layers.push({ layer: bn, weights: ['gamma', 'beta', 'moving_mean', 'moving_variance'].map((w) => `${u.name}_bn/${w}`) });
    const y = bn.apply(conv.apply(x)) as SymbolicTensor;
    return relu ? (tf.layers.reLU({ name: `${u.name}_relu` }).apply(y) as SymbolicTensor) : y;
  };
  let h = unit(input, stem, true);
  if (spec.stem === 'imagenet') h = tf.layers.maxPooling2d({ name: 'stem_pool', poolSize: 3, strides: 2, padding: 'same' }).apply(h) as SymbolicTensor;
  blocks.forEach((b, i) => {
    let y = h;
    b.units.forEach((u, j) => { y = unit(y, u, j < b.units.length - 1); });
    const short = b.shortcut ? unit(h, b.shortcut, false) : h;
    const sum = tf.layers.add({ name: `block${i + 1}_add` }).apply([y, short]) as SymbolicTensor;
    h = tf.layers.reLU({ name: `block${i + 1}_relu` }).apply(sum) as SymbolicTensor;
  });
  const features = tf.layers.globalAveragePooling2d({ name: 'features' }).apply(h) as SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: features, name: 'encoder' });
  for (const l of layers) l.layer.setWeights(l.weights.map((w) => store.get(w)));
  return model;
}
