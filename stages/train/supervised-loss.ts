// Sigmoid cross-entropy over the labelled rows: the supervised half of the hybrid objective (Ghesu et al. 2022,
// section 2.3) and the supervised pre-training baseline. Binary tasks are one logit; multi-label tasks one per label.
import type { Scalar, Tensor1D, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';

/**
 * Mean sigmoid cross-entropy of logits [B, L] against targets [B, L] over the rows whose mask is 1.
 * Returns 0 (with zero gradient) when no row is labelled, so an unlabelled batch contributes nothing.
 * `denominator` replaces the number of labelled rows (data-parallel training: every rank's labelled rows / ranks, so
 * that the mean over ranks is the mean over all labelled rows).
 */
export function sigmoidCrossEntropy(logits: Tensor2D, targets: Tensor2D, rowMask: Tensor1D, denominator?: number): Scalar {
  return tf.tidy(() => {
    // max(x, 0) - x*y + log(1 + exp(-|x|)): the stable form of -y log s(x) - (1-y) log(1-s(x)).
    const x = logits;
    const perElement = tf.add(tf.sub(tf.relu(x), tf.mul(x, targets)), tf.log1p(tf.exp(tf.neg(tf.abs(x)))));
    const perRow = tf.mean(perElement, 1);
    const mask = tf.cast(rowMask, 'float32');
    if (denominator !== undefined) return tf.div(tf.sum(tf.mul(perRow, mask)), denominator) as Scalar;
    return tf.div(tf.sum(tf.mul(perRow, mask)), tf.maximum(tf.sum(mask), 1)) as Scalar;
  });
}
