import { describe, expect, it } from 'vitest';
import { tf } from '../../../pipeline/core/tensorflow.js';
import { ntXentLoss } from '../../../stages/train/ntxent-loss.js';
import { sigmoidCrossEntropy } from '../../../stages/train/supervised-loss.js';

const value = (t: { dataSync(): ArrayLike<number> }) => t.dataSync()[0];

describe('ntXentLoss (SimCLR)', () => {
  it('matches hand-computed values', () => {
    // Views agree: anchor e1 has positive e1 (sim 1) and negatives e2, e2 (sim 0): -log(e / (e + 2)).
    const same = ntXentLoss(tf.tensor2d([[1, 0], [0, 1]]), tf.tensor2d([[1, 0], [0, 1]]), 1);
    expect(value(same)).toBeCloseTo(Math.log(2 + Math.E) - 1, 5);
    // Views swapped, tau 0.5: the positive has sim 0, one negative sim 1 / 0.5: -log(1 / (2 + e^2)).
    const swapped = ntXentLoss(tf.tensor2d([[1, 0], [0, 1]]), tf.tensor2d([[0, 1], [1, 0]]), 0.5);
    expect(value(swapped)).toBeCloseTo(Math.log(2 + Math.exp(2)), 5);
  });

  it('uses cosine similarity (invariant to the embeddings\' scale) and rewards agreeing views', () => {
    const a = tf.tensor2d([[0.3, -1, 2], [1, 1, 0], [-0.5, 0.2, 0.1]]);
    const b = tf.tensor2d([[0.2, -0.9, 2.1], [1.1, 0.8, 0.1], [-0.4, 0.3, 0]]);
    expect(value(ntXentLoss(a, b, 0.2))).toBeCloseTo(value(ntXentLoss(a.mul(7), b.mul(0.1), 0.2)), 4);
    const shuffled = tf.gather(b, [1, 2, 0]);
    expect(value(ntXentLoss(a, b, 0.2))).toBeLessThan(value(ntXentLoss(a, shuffled as typeof b, 0.2)));
  });

  it('rejects views of different shapes', () => {
    expect(() => ntXentLoss(tf.zeros([2, 3]), tf.zeros([3, 3]), 0.1)).toThrow(/same shape/);
  });
});

describe('sigmoidCrossEntropy', () => {
  it('averages over labelled rows only', () => {
    const logits = tf.tensor2d([[0], [2], [100]]);
    const targets = tf.tensor2d([[1], [0], [0]]);
    // Row 3 is masked out (its loss would be 100).
    const loss = sigmoidCrossEntropy(logits, targets, tf.tensor1d([1, 1, 0]));
    const want = (Math.log(2) + Math.log(1 + Math.exp(2))) / 2;
    expect(value(loss)).toBeCloseTo(want, 5);
    expect(value(sigmoidCrossEntropy(logits, targets, tf.tensor1d([0, 0, 0])))).toBe(0);
  });
});
