// A tiny conv encoder and a synthetic labelled set for protocol tests (fast on the pure-JS backend too).
import { tf } from '../../../pipeline/core/tensorflow.js';
import { random } from '../../../pipeline/core/random.js';
import { initialiseWeights } from '../../../stages/evaluate/protocols.js';
import type { Encoder } from '../../../schemas/encoder.js';
import type { LabelledDataset, LabelledSplit } from '../../../stages/evaluate/datasets.js';

export function tinyEncoder(size = 8, seed = 0): Encoder {
  const input = tf.input({ shape: [size, size, 1] });
  let x = tf.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(input) as ReturnType<typeof tf.input>;
  x = tf.layers.globalAveragePooling2d({}).apply(x) as typeof x;
  const model = tf.model({ inputs: input, outputs: x });
  initialiseWeights(model, seed);
  return model;
}

/** The same with batch normalisation (its moving statistics change when fine-tuned). */
export function tinyBnEncoder(size = 8, seed = 0): Encoder {
  const input = tf.input({ shape: [size, size, 1] });
  let x = tf.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', useBias: false }).apply(input) as ReturnType<typeof tf.input>;
  x = tf.layers.batchNormalization({}).apply(x) as typeof x;
  x = tf.layers.reLU().apply(x) as typeof x;
  x = tf.layers.globalAveragePooling2d({}).apply(x) as typeof x;
  const model = tf.model({ inputs: input, outputs: x });
  initialiseWeights(model, seed);
  return model;
}

/** Positives carry a bright 3x3 square at a random place; everything has uniform noise. */
export function syntheticSplit(n: number, seed: number, size = 8, positiveRate = 0.4): LabelledSplit {
  const images = new Float32Array(n * size * size), labels = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const rs = random(seed).stream({ sample: i, purpose: 'synthetic' });
    const y = rs.bernoulli(positiveRate) ? 1 : 0;
    labels[i] = y;
    for (let p = 0; p < size * size; p++) images[i * size * size + p] = 0.3 * rs.uniform();
    if (y) {
      const r0 = rs.int(size - 2), c0 = rs.int(size - 2);
      for (let r = r0; r < r0 + 3; r++) for (let c = c0; c < c0 + 3; c++) images[i * size * size + r * size + c] = 0.6 + 0.4 * rs.uniform();
    }
  }
  return { images, n, height: size, width: size, channels: 1, labels };
}

export function syntheticDataset(name = 'synthetic', n = [120, 40, 60]): LabelledDataset {
  return { name, modality: 'OT', tasks: [name], train: syntheticSplit(n[0], 1), val: syntheticSplit(n[1], 2), test: syntheticSplit(n[2], 3) };
}
