// L2 normalisation, shared by the projection head, the prototypes and NT-Xent.
import type { Tensor } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';

/** Rows scaled to unit L2 norm (a tiny floor keeps an all-zero row finite). */
export function l2Normalize<T extends Tensor>(x: T, axis = -1): T {
  return tf.tidy(() => tf.div(x, tf.sqrt(tf.maximum(tf.sum(tf.square(x), axis, true), 1e-24))) as T);
}
