// The SwAV reference cases (float64 numpy): codes of Sinkhorn-Knopp and the swapped-prediction loss. The default tests
// read 8 of them (fixtures/vectors/swav_vectors.sample.json); the corpus suite reads all 24 (../shared/vectors).
import { expect } from 'vitest';
import { tf } from '../../../pipeline/core/tensorflow.js';
import { sinkhornKnopp } from '../../../stages/train/sinkhorn.js';
import { swavLoss } from '../../../stages/train/swav-loss.js';

export interface Case {
  id: number; batch: number; prototypes: number; epsilon: number; iterations: number; temperature: number;
  cropsForAssign: number[]; cropScores: number[][][]; queueScores?: number[][][] | null; sinkhornOfCrop0: number[][]; loss: number;
}
export interface Vectors { about: string; cases: Case[] }

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

export const caseName = (c: Case) => `case ${c.id}: B=${c.batch} K=${c.prototypes} eps=${c.epsilon} iters=${c.iterations} crops=${c.cropScores.length}${c.queueScores ? ' queue' : ''}`;

/** Codes within 1e-4 of the reference (relative to each row's largest code) and the loss within 1e-4 relative. */
export function checkCase(c: Case): void {
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
}
