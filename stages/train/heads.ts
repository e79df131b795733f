// What sits on the pooled features: the projection head (SwAV/SimCLR: linear, BN, ReLU, linear, then L2
// normalisation), the prototypes (K unit vectors, one set or one per modality) and the supervised classifier.
import type { Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import { batchNorm, relu } from './batchnorm.js';
import { l2Normalize } from './l2-normalize.js';
import type { ParamStore } from './params.js';
import { addBnParams, bnParams, type ForwardMode } from './resnet.js';

export interface HeadSpec {
  featureDim: number;
  hidden: number;
  out: number;
}

export function addProjectionParams(store: ParamStore, h: HeadSpec): void {
  store.add('head_fc1/kernel', [h.featureDim, h.hidden], { kind: 'uniform', fanIn: h.featureDim });
  addBnParams(store, 'head_bn', h.hidden);
  store.add('head_fc2/kernel', [h.hidden, h.out], { kind: 'uniform', fanIn: h.hidden });
  store.add('head_fc2/bias', [h.out], { kind: 'uniform', fanIn: h.hidden });
}

/** Unit-norm embeddings z [N, out] of features [N, featureDim]. */
export function project(store: ParamStore, features: Tensor2D, mode: ForwardMode): Tensor2D {
  const h = tf.matMul(features, store.get('head_fc1/kernel') as Tensor as Tensor2D);
  const n = relu(batchNorm(h, bnParams(store, 'head_bn'), mode.training, 'head_bn', mode.observed, mode.sync)) as Tensor2D;
  const z = tf.add(tf.matMul(n, store.get('head_fc2/kernel') as Tensor as Tensor2D), store.get('head_fc2/bias')) as Tensor2D;
  return l2Normalize(z);
}

/** Name of a prototype set: one shared set, or one per modality (uni-modal clustering with separate prototypes). */
export const prototypeName = (modality: string | null) => (modality === null ? 'prototypes/kernel' : `prototypes_${modality.replace(/[^A-Za-z0-9]/g, '_')}/kernel`);

/** Prototype matrix C [D, K] (columns are prototypes), created on first use, unit columns. */
export function addPrototypes(store: ParamStore, name: string, dim: number, k: number): void {
  if (store.has(name)) return;
  store.add(name, [dim, k], { kind: 'uniform', fanIn: dim });
  normalizePrototypes(store, [name]);
}

/** SwAV keeps prototypes on the unit sphere by renormalising them after every update (section 4, "prototypes"). */
export function normalizePrototypes(store: ParamStore, names: string[]): void {
  tf.tidy(() => {
    for (const n of names) {
      const c = store.get(n);
      c.assign(l2Normalize(c, 0));
    }
  });
}

export function addClassifierParams(store: ParamStore, featureDim: number, labels: number): void {
  store.add('classifier/kernel', [featureDim, labels], { kind: 'uniform', fanIn: featureDim });
  store.add('classifier/bias', [labels], { kind: 'zeros' });
}

/** Logits [N, labels] of features [N, featureDim]. */
export function classify(store: ParamStore, features: Tensor2D): Tensor2D {
  return tf.add(tf.matMul(features, store.get('classifier/kernel') as Tensor as Tensor2D), store.get('classifier/bias') as Tensor as Tensor1D) as Tensor2D;
}
