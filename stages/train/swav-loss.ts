// The swapped-prediction loss (SwAV, Caron et al. 2020, eq. 1-2 and the multi-crop extension of section 3.2).
//
//   L = 1/|A| sum_{a in A} 1/(V-1) sum_{v != a} l(z_v, q_a),   l(z, q) = - 1/B sum_b sum_k q_bk log p_bk,
//   p_bk = softmax_k(z_b . c_k / tau)
//
// with codes q_a = Sinkhorn(z_a . C) computed only from the assigned crops A (the two global crops by default) and
// without gradient. With a queue, the stored embeddings' scores against the current prototypes are prepended before
// Sinkhorn (so the equipartition is over queue + batch) and only the batch's last B rows of the codes are used.
import type { Scalar, Tensor, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import { sinkhornKnopp, stopGradient } from './sinkhorn.js';

export interface SwavLossOptions {
  temperature: number;
  epsilon: number;
  iterations: number;
  /** Crop indices whose codes are computed (and predicted from every other crop). */
  cropsForAssign: number[];
  /** One [Q, K] block per assigned crop (same order as cropsForAssign), prepended before Sinkhorn. */
  queueScores?: Tensor2D[];
  /** The codes of the assigned crops, already computed (data-parallel training: Sinkhorn over every rank's rows). */
  codes?: Tensor2D[];
}

/** Loss over one [B, K] score matrix (z . c before temperature) per crop. */
export function swavLoss(cropScores: Tensor2D[], opts: SwavLossOptions): Scalar {
  const v = cropScores.length;
  if (v < 2) throw new RangeError(`swavLoss needs at least 2 crops, got ${v}`);
  for (const a of opts.cropsForAssign) {
    if (!(a >= 0 && a < v)) throw new RangeError(`cropsForAssign ${a} is not a crop index (0..${v - 1})`);
  }
  if (opts.queueScores && opts.queueScores.length !== opts.cropsForAssign.length) {
    throw new RangeError(`queueScores needs one block per assigned crop (${opts.cropsForAssign.length}), got ${opts.queueScores.length}`);
  }
  return tf.tidy(() => {
    const logP = cropScores.map((s) => tf.logSoftmax(tf.div(s, opts.temperature)));
    let total: Tensor = tf.scalar(0);
    opts.cropsForAssign.forEach((a, i) => {
      const q = opts.codes ? opts.codes[i] : assignedCodes(cropScores[a], opts.queueScores?.[i], opts);
      let sub: Tensor = tf.scalar(0);
      for (let w = 0; w < v; w++) {
        if (w === a) continue;
        sub = tf.sub(sub, tf.mean(tf.sum(tf.mul(q, logP[w]), 1)));
      }
      total = tf.add(total, tf.div(sub, v - 1));
    });
    return tf.div(total, opts.cropsForAssign.length) as Scalar;
  });
}

/** Codes of one assigned crop's B samples, with the queue's scores (if any) prepended for the equipartition. */
export function assignedCodes(scores: Tensor2D, queueScores: Tensor2D | undefined, opts: { epsilon: number; iterations: number }): Tensor2D {
  return tf.tidy(() => {
    const b = scores.shape[0];
    const all = queueScores ? tf.concat([stopGradient(queueScores), stopGradient(scores)], 0) : stopGradient(scores);
    const q = sinkhornKnopp(all, opts);
    return (queueScores ? tf.slice(q, [q.shape[0] - b, 0], [b, q.shape[1]]) : q) as Tensor2D;
  });
}
