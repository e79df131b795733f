import { describe, expect, it } from 'vitest';
import type { Scalar, Tensor, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../../pipeline/core/tensorflow.js';
import { sinkhornKnopp } from '../../../stages/train/sinkhorn.js';
import { swavLoss } from '../../../stages/train/swav-loss.js';
import { fixture, readJson } from '../../shared.js';
import { type Case, type Vectors, caseName, checkCase } from './swav-vectors.js';

// 8 of the 24 reference cases, copied unmodified (fixtures/vectors/SOURCES.md); swav-loss.corpus.test.ts checks all 24.
const vectors = readJson<Vectors>(fixture('vectors/swav_vectors.sample.json'));

describe('sinkhornKnopp and swavLoss against the float64 reference', () => {
  it('has the 8 sample cases: with and without a queue, several K, eps, iteration and crop counts', () => {
    const cases = vectors.cases;
    expect(cases.map((c) => c.id)).toEqual([0, 2, 3, 8, 11, 15, 16, 22]);
    expect(cases.filter((c) => c.queueScores).length).toBeGreaterThan(0);
    expect(cases.filter((c) => !c.queueScores).length).toBeGreaterThan(0);
    expect(new Set(cases.map((c) => c.prototypes)).size).toBeGreaterThanOrEqual(3);
    expect(new Set(cases.map((c) => c.epsilon)).size).toBeGreaterThanOrEqual(3);
    expect(new Set(cases.map((c) => c.iterations)).size).toBeGreaterThanOrEqual(3);
  });

  for (const c of vectors.cases) it(caseName(c), () => checkCase(c));
});

describe('Sinkhorn numerics', () => {
  it('does not overflow in float32 for a small epsilon', () => {
    const scores = tf.tensor2d([[1, -1, 0.5], [0.9, 0.2, -0.3], [-1, 1, 0.99], [0.1, 0.1, 0.1]]);
    for (const epsilon of [0.05, 0.01, 0.001]) {
      const q = sinkhornKnopp(scores, { epsilon, iterations: 3 }).arraySync();
      for (const row of q) {
        expect(row.every(Number.isFinite)).toBe(true);
        expect(row.reduce((s, x) => s + x, 0)).toBeCloseTo(1, 5);
      }
    }
    // The naive exp(score / 0.001) is e^1000: infinite in float32 (what the log domain avoids).
    expect(tf.exp(tf.div(scores, 0.001)).max().dataSync()[0]).toBe(Infinity);
  });

  it('spreads a batch whose samples all prefer one prototype over all prototypes', () => {
    const scores = tf.tensor2d(Array.from({ length: 8 }, (_, i) => [0.9, 0.1 + i * 0.01, 0.2 - i * 0.01, 0]));
    const q = sinkhornKnopp(scores, { epsilon: 0.05, iterations: 10 });
    const mass = q.sum(0).arraySync() as number[];
    for (const m of mass) expect(m).toBeCloseTo(8 / 4, 1);
  });
});

describe('swavLoss gradients', () => {
  it('flows into the predicting scores and not through the codes', () => {
    const c = vectors.cases.find((x) => x.queueScores && x.cropScores.length > 2) as Case;
    const opts = { temperature: c.temperature, epsilon: c.epsilon, iterations: c.iterations, cropsForAssign: c.cropsForAssign };
    const inputs = c.cropScores.map((s) => tf.tensor2d(s));
    const queue = (c.queueScores as number[][][]).map((s) => tf.tensor2d(s));
    const grads = tf.grads((...xs: Tensor[]) => swavLoss(xs as Tensor2D[], { ...opts, queueScores: queue }))(inputs);
    // The same loss with the codes as constants: if gradient leaked through Sinkhorn the two would differ.
    const codes = c.cropsForAssign.map((a, i) => {
      const all = tf.concat([queue[i], inputs[a]], 0);
      const q = sinkhornKnopp(all as Tensor2D, opts);
      return tf.slice(q, [q.shape[0] - c.batch, 0], [c.batch, c.prototypes]);
    });
    const constantCodes = (xs: Tensor[]) => {
      let total: Tensor = tf.scalar(0);
      c.cropsForAssign.forEach((a, i) => {
        let sub: Tensor = tf.scalar(0);
        xs.forEach((x, w) => {
          if (w !== a) sub = sub.sub(codes[i].mul(tf.logSoftmax(x.div(c.temperature))).sum(1).mean());
        });
        total = total.add(sub.div(xs.length - 1));
      });
      return total.div(c.cropsForAssign.length) as Scalar;
    };
    const want = tf.grads((...xs: Tensor[]) => constantCodes(xs))(inputs);
    grads.forEach((g, i) => {
      const diff = tf.abs(g.sub(want[i])).max().dataSync()[0];
      expect(diff).toBeLessThan(1e-5);
      expect(tf.abs(g).max().dataSync()[0]).toBeGreaterThan(1e-4);
    });
  });
});
