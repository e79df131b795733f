// NT-Xent, the SimCLR objective (Chen et al. 2020, eq. 1): for 2N embeddings of N samples seen twice,
//
//   l(i, j) = -log( exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ),   sim = cosine similarity
//
// averaged over all 2N anchors (each sample's two views are each other's positive; the other 2N - 2 are negatives).
import type { Scalar, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import { l2Normalize } from './l2-normalize.js';

/** z1, z2: [N, D] embeddings of the two views (normalised here, so any scale is fine). */
export function ntXentLoss(z1: Tensor2D, z2: Tensor2D, temperature: number): Scalar {
  if (z1.shape[0] !== z2.shape[0] || z1.shape[1] !== z2.shape[1]) {
    throw new RangeError(`ntXentLoss needs two views of the same shape, got [${z1.shape}] and [${z2.shape}]`);
  }
  const n = z1.shape[0];
  if (n < 2) throw new RangeError('ntXentLoss needs at least 2 samples (negatives come from the batch)');
  return tf.tidy(() => {
    const z = tf.concat([l2Normalize(z1), l2Normalize(z2)], 0);
    const sim = tf.div(tf.matMul(z, z, false, true), temperature);
    // A sample is never its own negative: -inf on the diagonal (a large finite value keeps gradients clean).
    const self = tf.mul(tf.eye(2 * n), -1e9);
    const logits = tf.add(sim, self);
    // The positive of row i is i + N (mod 2N).
    const positives = tf.concat([tf.range(n, 2 * n, 1, 'int32'), tf.range(0, n, 1, 'int32')]);
    const logProb = tf.logSoftmax(logits);
    const picked = tf.sum(tf.mul(logProb, tf.oneHot(positives, 2 * n)), 1);
    return tf.neg(tf.mean(picked)) as Scalar;
  });
}

/**
 * NT-Xent with the candidates of every rank (data-parallel training): this rank's anchors are its own rows of each
 * view; positives and negatives come from `gather` (every rank's rows in rank order, this rank's at rows
 * rank * n ... (rank + 1) * n - 1). The mean over ranks of this loss is the loss of one process on the whole batch.
 */
export function ntXentLossSharded(z1: Tensor2D, z2: Tensor2D, temperature: number, gather: (z: Tensor2D) => Tensor2D, rank: number): Scalar {
  if (z1.shape[0] !== z2.shape[0] || z1.shape[1] !== z2.shape[1]) {
    throw new RangeError(`ntXentLoss needs two views of the same shape, got [${z1.shape}] and [${z2.shape}]`);
  }
  const n = z1.shape[0];
  return tf.tidy(() => {
    const a1 = l2Normalize(z1), a2 = l2Normalize(z2);
    const all = tf.concat([gather(a1), gather(a2)], 0);
    const total = all.shape[0] / 2;
    if (total < 2) throw new RangeError('ntXentLoss needs at least 2 samples (negatives come from the batch)');
    const sim = tf.div(tf.matMul(tf.concat([a1, a2], 0), all, false, true), temperature);
    const off = rank * n;
    const own = tf.concat([tf.range(off, off + n, 1, 'int32'), tf.range(total + off, total + off + n, 1, 'int32')]);
    const positives = tf.concat([tf.range(total + off, total + off + n, 1, 'int32'), tf.range(off, off + n, 1, 'int32')]);
    const logits = tf.add(sim, tf.mul(tf.oneHot(own, 2 * total), -1e9));
    const picked = tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(positives, 2 * total)), 1);
    return tf.neg(tf.mean(picked)) as Scalar;
  });
}
