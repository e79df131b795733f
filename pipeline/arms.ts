// The arms of an experiment: how each one gets its encoder. This is the one place that binds the experiment runner
// to the trainer (stages/train): `pretrainArm` turns an arm of the config into a pre-trained encoder, and
// `initEncoder` builds the same architecture from scratch for "no pre-training".
//
// Until the trainer lands in this tree, only the arms that need no pre-training are provided: 'none' (fresh
// initialisation per evaluation seed) and 'random' (one fixed random encoder, frozen: the floor of the linear probe).
// Every other arm reports itself as not wired, and the runner records it as skipped instead of inventing numbers.
import type * as TF from '@tensorflow/tfjs';
import { tf } from './tensorflow.js';
import { MedsslError } from './failures.js';
import { initialiseWeights, type Encoder } from '../stages/evaluate/protocols.js';
import type { ArmContext, ArmProvider, ArmSpec } from '../stages/evaluate/experiment.js';

/** The encoder architecture for arms without pre-training (and the stand-in trunk until the trainer's ResNet is wired). */
export function standInEncoder(shape: [number, number, number], seed: number, width = 16): Encoder {
  const input = tf.input({ shape });
  let x = input as TF.SymbolicTensor;
  const block = (filters: number, strides: number) => {
    x = tf.layers.conv2d({ filters, kernelSize: 3, strides, padding: 'same', useBias: false }).apply(x) as TF.SymbolicTensor;
    x = tf.layers.batchNormalization({ momentum: 0.9 }).apply(x) as TF.SymbolicTensor;
    x = tf.layers.reLU().apply(x) as TF.SymbolicTensor;
  };
  block(width, 1);
  block(width * 2, 2);
  block(width * 4, 2);
  block(width * 4, 1);
  x = tf.layers.globalAveragePooling2d({}).apply(x) as TF.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: x, name: 'encoder' });
  initialiseWeights(model, seed);
  return model;
}

export class ArmNotWired extends MedsslError {
  constructor(arm: ArmSpec) {
    super('unsupported', arm.name, `arm kind "${arm.kind}" needs the trainer's pretrain(), which is not wired in this build`);
  }
}

/** The default provider: 'none' and 'random' honestly; the pre-training arms throw ArmNotWired. */
export const defaultArms: ArmProvider = {
  initEncoder: (ctx: ArmContext, seed: number) => standInEncoder(ctx.inputShape, seed),
  async pretrainArm(arm: ArmSpec, ctx: ArmContext): Promise<Encoder | null> {
    switch (arm.kind) {
      case 'none':
        return null;
      case 'random':
        return standInEncoder(ctx.inputShape, ctx.seed + 1_000_003);
      default:
        throw new ArmNotWired(arm);
    }
  },
};
