import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../schemas/config.js';
import { lambdaAt, learningRate } from '../../../stages/train/schedule.js';

describe('schedules', () => {
  it('warms up linearly, then follows a cosine down to minLr', () => {
    const o = parseConfig({ train: { optimizer: { lr: 1, minLr: 0.1, warmupSteps: 10, warmupStartLr: 0 } } }).train.optimizer;
    expect(learningRate(o, 0, 110)).toBe(0);
    expect(learningRate(o, 5, 110)).toBeCloseTo(0.5);
    expect(learningRate(o, 10, 110)).toBeCloseTo(1);
    expect(learningRate(o, 60, 110)).toBeCloseTo(0.55); // half-way through the cosine
    expect(learningRate(o, 110, 110)).toBeCloseTo(0.1);
  });

  it('ramps the hybrid lambda', () => {
    const t = parseConfig({ train: { lambda: 2, lambdaSchedule: { kind: 'linear', start: 0, steps: 100 } } }).train;
    expect(lambdaAt(t, 0)).toBe(0);
    expect(lambdaAt(t, 50)).toBeCloseTo(1);
    expect(lambdaAt(t, 500)).toBe(2);
    const c = parseConfig({ train: { lambda: 0.5 } }).train;
    expect(lambdaAt(c, 7)).toBe(0.5);
  });
});
