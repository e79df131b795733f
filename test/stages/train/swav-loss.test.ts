import { describe, expect, it } from 'vitest';
import type { Scalar, Tensor, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../../pipeline/tensorflow.js';
import { sinkhornKnopp } from '../../../stages/train/sinkhorn.js';
import { swavLoss } from '../../../stages/train/swav-loss.js';
import { readJson, sharedVectors } from '../../shared.js';

interface Case {
  id: number; batch: number; prototypes: number; epsilon: number; iterations: number; temperature: number;
  cropsForAssign: number[]; cropScores: number[][][]; queueScores?: number[][][] | null; sinkhornOfCrop0: number[][]; loss: number;
}
const vectors = readJson<{ about: string; cases: Case[] }>(sharedVectors('swav_vectors.json'));

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

describe('sinkhornKnopp and swavLoss against the float64 reference', () => {
  it('has the 24 reference cases', () => {
    expect(vectors.cases).toHaveLength(24);
    expect(vectors.cases.filter((c) => c.queueScores).length).toBeGreaterThan(0);
  });

  for (const c of vectors.cases) {
    it(`case ${c.id}: B=${c.batch} K=${c.prototypes} eps=${c.epsilon} iters=${c.iterations} crops=${c.cropScores.length}${c.queueScores ? ' queue' : ''}`, () => {
      const codes = tf.tidy(() => sinkhornKnopp(tf.tensor2d(c.cropScores[0]), c).arraySync());
      const want = c.sinkhornOfCrop0;
      // Codes within 1e-4 relative, measured against each row's largest code (tiny codes carry no weight).
      for (let b = 0; b < want.length; b++) {
        const scale = Math.max(...want[b].map(Math.abs));
        for (let k = 0; k < want[b].length; k++) expect(Math.abs(codes[b][k] - want[b][k]) / scale).toBeLessThan(1e-4);
        expect(codes[b].reduce((s, x) => s + x, 0)).toBeCloseTo(1, 5);
      }
      const loss = tf.tidy(() =>
        swavLoss(c.cropScores.map((s) => tf.tensor2d(s)), {
          temperature: c.temperature, epsilon: c.epsilon, iterations: c.iterations, cropsForAssign: c.cropsForAssign,
          queueScores: c.queueScores ? c.queueScores.map((s) => tf.tensor2d(s)) : undefined,
        }).dataSync()[0]);
      expect(relErr(loss, c.loss)).toBeLessThan(1e-4);
    });
  }
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
