// A small convolutional encoder for tests of the evaluation protocols: four conv-BN-ReLU blocks and global average
// pooling, seeded. Not the trainer's ResNet (pipeline/compose/arms.ts freshEncoder builds that).
import type * as TF from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import { initialiseWeights } from '../../stages/evaluate/protocols.js';
import type { Encoder } from '../../schemas/encoder.js';

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
