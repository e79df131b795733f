// Batch normalisation for training (batch statistics) and inference (moving statistics), NHWC or [N, C], and
// the ReLU that follows it.
//
// On the native backend the training forward is TensorFlow's FusedBatchNormV3 and its backward is
// FusedBatchNormGradV3: one kernel each way instead of the dozen element-wise ops that tf.moments + tf.batchNorm and
// their gradients expand to (each a full pass over the activation). Elsewhere the composed ops are used.
import type { Tensor, Tensor1D } from '@tensorflow/tfjs';
import type { Communicator } from '../../pipeline/core/mpi.js';
import { tf, backendInfo } from '../../pipeline/core/tensorflow.js';
import { syncBatchNorm } from './distributed.js';

export const BN_EPSILON = 1e-5;
/** Moving statistics keep 90% of their value per step (PyTorch's momentum 0.1). */
export const BN_MOMENTUM = 0.9;

/** Batch statistics observed during a training forward, to fold into the moving averages after the step. */
export interface BnObservation {
  layer: string;
  mean: Tensor1D;
  /** Unbiased batch variance (what the moving variance tracks). */
  variance: Tensor1D;
}

export interface BnParams {
  gamma: Tensor1D;
  beta: Tensor1D;
  movingMean: Tensor1D;
  movingVariance: Tensor1D;
}

/**
 * y = gamma (x - mean) / sqrt(var + eps) + beta over all axes but the last. With `sync` (data-parallel training), the
 * batch statistics are those of every rank's rows (distributed.ts).
 */
export function batchNorm(x: Tensor, p: BnParams, training: boolean, layer: string, observed?: BnObservation[], sync?: Communicator): Tensor {
  if (!training) return tf.batchNorm(x, p.movingMean, p.movingVariance, p.beta, p.gamma, BN_EPSILON);
  if (sync) {
    const { y, mean, variance, count } = syncBatchNorm(x, p.gamma, p.beta, sync);
    if (observed) observed.push({ layer, mean: tf.keep(mean), variance: tf.keep(tf.mul(variance, count / Math.max(count - 1, 1)) as Tensor1D) });
    return y;
  }
  const useNative = nativeKernels.enabled && x.rank === 4;
  const { y, mean, variance } = useNative ? fusedTraining(x, p.gamma, p.beta) : composedTraining(x, p.gamma, p.beta);
  if (observed) {
    const n = x.size / x.shape[x.rank - 1];
    observed.push({ layer, mean: tf.keep(mean), variance: tf.keep(tf.mul(variance, n / Math.max(n - 1, 1)) as Tensor1D) });
  }
  return y;
}

function composedTraining(x: Tensor, gamma: Tensor1D, beta: Tensor1D) {
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  const { mean, variance } = tf.moments(x, axes);
  const y = tf.batchNorm(x, mean, variance, beta, gamma, BN_EPSILON);
  // Statistics leave the graph: they feed the moving averages only.
  return { y, mean: tf.clone(mean) as Tensor1D, variance: tf.clone(variance) as Tensor1D };
}

// ---- native FusedBatchNormV3 (is_training) with its own gradient ----

interface NativeBackend {
  binding: { TF_ATTR_FLOAT: number; TF_ATTR_STRING: number; TF_ATTR_BOOL: number; TF_ATTR_TYPE: number; TF_FLOAT: number };
  executeMultipleOutputs(name: string, attrs: unknown[], inputs: Tensor[], numOutputs: number): Tensor[];
  executeSingleOutput(name: string, attrs: unknown[], inputs: Tensor[]): Tensor;
}

/**
 * Whether the native kernels (fused batch norm, ReluGrad) are used: on the native backends unless
 * MEDSSL_FUSED_BN=0. `available` says whether they can be; tests switch `enabled` to compare both paths.
 */
export const nativeKernels = {
  // Decided on first use, not at import: importing the trainer must not load TensorFlow.
  override: undefined as boolean | undefined,
  get available(): boolean {
    return backendInfo.backend === 'tensorflow' || backendInfo.backend === 'tensorflow-gpu';
  },
  get enabled(): boolean {
    return this.override ?? (this.available && process.env.MEDSSL_FUSED_BN !== '0');
  },
  set enabled(on: boolean) {
    this.override = on;
  },
};

function nativeAttrs(backend: NativeBackend, forward: boolean) {
  const b = backend.binding;
  return [
    { name: 'T', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
    { name: 'U', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
    { name: 'epsilon', type: b.TF_ATTR_FLOAT, value: BN_EPSILON },
    // Only the forward op has it; 1 means "this batch's statistics" (the moving averages are kept here, not by TF).
    ...(forward ? [{ name: 'exponential_avg_factor', type: b.TF_ATTR_FLOAT, value: 1 }] : []),
    { name: 'data_format', type: b.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'is_training', type: b.TF_ATTR_BOOL, value: true },
  ];
}

function fusedTraining(x: Tensor, gamma: Tensor1D, beta: Tensor1D) {
  const backend = tf.backend() as unknown as NativeBackend;
  let saved: { mean: Tensor1D; variance: Tensor1D } | null = null;
  const op = tf.customGrad(((xIn: Tensor, g: Tensor1D, bt: Tensor1D, save: (ts: Tensor[]) => void) => {
    const empty = tf.tensor1d([]);
    // Outputs: y, batch mean, batch variance (Bessel-corrected), reserve 1 (mean), reserve 2 (inverse std), reserve 3.
    const outs = backend.executeMultipleOutputs('FusedBatchNormV3', nativeAttrs(backend, true), [xIn, g, bt, empty, empty], 6);
    empty.dispose();
    save([xIn, g, outs[3], outs[4], outs[5]]);
    // The custom-gradient forward runs in its own scope: keep the statistics past it (disposed below).
    saved = { mean: tf.keep(outs[1]) as Tensor1D, variance: tf.keep(outs[2]) as Tensor1D };
    return {
      value: outs[0],
      gradFunc: (dy: Tensor, s: Tensor[]) => {
        const [xs, gs, r1, r2, r3] = s;
        const grads = backend.executeMultipleOutputs('FusedBatchNormGradV3', nativeAttrs(backend, false), [dy, xs, gs, r1, r2, r3], 5);
        grads.slice(3).forEach((t) => t.dispose());
        return [grads[0], grads[1], grads[2]];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const y = op(x, gamma, beta);
  const { mean, variance } = saved as unknown as { mean: Tensor1D; variance: Tensor1D };
  // The native op already returns the Bessel-corrected variance; undo it so both paths observe the biased one.
  const n = x.size / x.shape[x.rank - 1];
  const out = { y, mean: tf.clone(mean), variance: tf.mul(variance, (n - 1) / Math.max(n, 1)) as Tensor1D };
  mean.dispose();
  variance.dispose();
  return out;
}

// ---- ReLU with TensorFlow's ReluGrad ----
//
// tfjs differentiates relu as dy * step(x), and tfjs-node runs step(x) as IsNan + Greater + Fill + Select: profiled
// at 45% of a training step's kernel time. TensorFlow's own ReluGrad is one element-wise kernel.

/** max(x, 0); on the native backends its gradient is TensorFlow's ReluGrad. */
export function relu<T extends Tensor>(x: T): T {
  if (!nativeKernels.enabled) return tf.relu(x);
  const backend = tf.backend() as unknown as NativeBackend;
  const op = tf.customGrad(((xIn: Tensor, save: (ts: Tensor[]) => void) => {
    const y = tf.relu(xIn);
    save([y]);
    return {
      value: y,
      // ReluGrad(dy, features) passes dy where features > 0; relu(x) > 0 exactly where x > 0.
      gradFunc: (dy: Tensor, [ys]: Tensor[]) => backend.executeSingleOutput('ReluGrad', [{ name: 'T', type: backend.binding.TF_ATTR_TYPE, value: backend.binding.TF_FLOAT }], [dy, ys]),
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x) as T;
}
