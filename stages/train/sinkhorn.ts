// Sinkhorn-Knopp equipartition (SwAV, Caron et al. 2020, eq. 3 and Algorithm 1 / `distributed_sinkhorn`).
//
// Q = Diag(u) exp(C^T Z / epsilon) Diag(v) is the code matrix whose K prototypes each receive 1/K of the mass and
// whose B samples each hold 1/B of it; the returned codes are B * Q^T, so every sample's row sums to 1.
//
// Numerics: the reference implementation exponentiates scores / epsilon directly, which overflows float32 once
// epsilon is small (|score| <= 1, epsilon 0.01 gives e^100). Every step of the algorithm is a rescaling of rows or
// columns, so it is carried out in the log domain with log-sum-exp (which subtracts the maximum): the same numbers,
// no overflow, and no all-zero row (hence no 0/0) from underflow.
import type { Tensor, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';

export interface SinkhornOptions {
  /** Entropic regularisation; smaller is closer to a hard assignment. */
  epsilon: number;
  /** Alternating normalisations (SwAV uses 3). */
  iterations: number;
}

/**
 * Codes for scores [B, K] (z . c, before temperature): [B, K] with rows summing to 1 and, after the last
 * iteration, columns summing to B / K. Carries no gradient (the codes are targets).
 */
export function sinkhornKnopp(scores: Tensor2D, opts: SinkhornOptions): Tensor2D {
  return tf.tidy(() => {
    const [b, k] = scores.shape;
    const logB = Math.log(b), logK = Math.log(k);
    // Q = exp(scores / eps) / sum(...): the whole matrix sums to 1.
    let logQ = tf.div(stopGradient(scores), opts.epsilon) as Tensor2D;
    logQ = tf.sub(logQ, tf.logSumExp(logQ));
    for (let i = 0; i < opts.iterations; i++) {
      // Each prototype (a column here, a row of SwAV's K x B matrix) receives 1/K of the mass...
      logQ = tf.sub(tf.sub(logQ, tf.logSumExp(logQ, 0, true)), logK);
      // ...and each sample holds 1/B of it.
      logQ = tf.sub(tf.sub(logQ, tf.logSumExp(logQ, 1, true)), logB);
    }
    // Q *= B: each sample's code is a distribution over prototypes.
    return tf.exp(tf.add(logQ, logB)) as Tensor2D;
  });
}

/** Identity forward, zero gradient: what a target must be (tfjs has no stop_gradient op). */
export function stopGradient<T extends Tensor>(x: T): T {
  const f = tf.customGrad(((input: Tensor) => ({
    value: tf.clone(input),
    gradFunc: (dy: Tensor) => tf.zerosLike(dy),
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x) as T;
}
