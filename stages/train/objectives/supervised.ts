// Supervised pre-training (the stand-in for ImageNet-style pre-training): sigmoid cross-entropy
// (../supervised-loss.ts) of a linear classifier on the pooled features of the global crops, over the labelled rows.
import type { Scalar, Tensor1D, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../../pipeline/core/tensorflow.js';
import type { Batch } from '../../../schemas/records.js';
import { classify } from '../heads.js';
import { sigmoidCrossEntropy } from '../supervised-loss.js';
import { lossPartMetrics, type Objective, type ObjectiveStep } from './objective.js';

export function supervised(): Objective {
  return {
    name: 'supervised',
    heads: { projection: false, prototypes: false, classifier: true },
    queues: false,
    labelled: true,
    // The loss is the supervised loss: both names read the same entry.
    ...lossPartMetrics(['loss', 'supervisedLoss']),
    views: globalCrops,
    loss(s, kept) {
      const sup = supervisedTerm(s);
      const k = tf.keep(tf.clone(sup));
      kept.parts = { loss: k, supervisedLoss: k };
      return sup;
    },
  };
}

/** The global crops (the first crop when the batch has none marked global). */
function globalCrops(batch: Batch): number[] {
  const globals = batch.views.map((_, i) => i).filter((i) => batch.views[i].kind === 'global');
  return globals.length ? globals : [0];
}

/** Mean sigmoid cross-entropy of the classifier on the global crops' features; 0 for a batch without labels. */
export function supervisedTerm(s: ObjectiveStep): Scalar {
  if (!s.labels || !s.mask) return tf.scalar(0);
  const globals = s.views.map((v, i) => ({ v, i })).filter((x) => s.batch.views[x.v].kind === 'global').map((x) => s.features[x.i]);
  const logits = classify(s.store, tf.concat(globals, 0) as Tensor2D);
  const y = tf.tile(s.labels, [globals.length, 1]) as Tensor2D;
  const m = tf.tile(s.mask, [globals.length]) as Tensor1D;
  // Data-parallel: divided by every rank's labelled rows / ranks, so that the mean over ranks is the global mean.
  return s.dp ? sigmoidCrossEntropy(logits, y, m, Math.max(globals.length * s.dp.agreed.labelled, 1) / s.dp.world.size) : sigmoidCrossEntropy(logits, y, m);
}
