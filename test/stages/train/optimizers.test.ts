import type { Variable } from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { tf } from '../../../pipeline/core/tensorflow.js';
import { parseConfig } from '../../../schemas/config.js';
import { Optimizer } from '../../../stages/train/optimizers.js';

const opt = (o: object) => new Optimizer(parseConfig({ train: { optimizer: o } }).train.optimizer);
const vars = () => new Map([
  ['c_conv/kernel', tf.variable(tf.tensor1d([3, 4]))],
  ['c_bn/gamma', tf.variable(tf.tensor1d([3, 4]))],
]);
const grads = () => ({ 'c_conv/kernel': tf.tensor1d([0.6, 0.8]), 'c_bn/gamma': tf.tensor1d([0.6, 0.8]) });
const values = (v: Map<string, Variable>, n: string) => Array.from(v.get(n)!.dataSync());

describe('optimizers', () => {
  it('SGD with momentum decays weights but not batch-norm parameters', () => {
    const v = vars();
    const o = opt({ name: 'sgd', momentum: 0.9, weightDecay: 0.1 });
    o.apply(v, grads(), 1);
    expect(values(v, 'c_conv/kernel')[0]).toBeCloseTo(3 - (0.6 + 0.3), 5);
    expect(values(v, 'c_bn/gamma')[0]).toBeCloseTo(3 - 0.6, 5);
    o.apply(v, grads(), 1); // momentum: second step moves further than the first
    expect(values(v, 'c_bn/gamma')[0]).toBeCloseTo(2.4 - (0.9 * 0.6 + 0.6), 5);
  });

  it('LARS scales the update by eta ||w|| / (||g|| + wd ||w||), and not for batch-norm parameters', () => {
    const v = vars();
    const o = opt({ name: 'lars', momentum: 0, weightDecay: 0, larsEta: 0.001 });
    o.apply(v, grads(), 1);
    // ||w|| = 5, ||g|| = 1: ratio 0.005.
    expect(values(v, 'c_conv/kernel')[0]).toBeCloseTo(3 - 0.6 * 0.005, 6);
    expect(values(v, 'c_bn/gamma')[0]).toBeCloseTo(3 - 0.6, 6);
  });

  it('AdamW takes a first step of lr in the gradient\'s sign, plus decoupled decay', () => {
    const v = vars();
    const o = opt({ name: 'adamw', weightDecay: 0.5 });
    o.apply(v, grads(), 0.1);
    expect(values(v, 'c_conv/kernel')[0]).toBeCloseTo(3 - 0.1 * (1 + 0.5 * 3), 4);
    expect(values(v, 'c_bn/gamma')[0]).toBeCloseTo(3 - 0.1, 4);
  });
});
