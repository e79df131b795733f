import { describe, expect, it } from 'vitest';
import type { StepEvent } from '../../../schemas/metrics.js';
import { CollapseWatch } from '../../../stages/train/train.js';
import { tinyConfig } from './helpers.js';

const step = (i: number, loss: number, usage: number, codeEntropy?: number, epoch = 0): StepEvent => ({
  type: 'step', epoch, step: i, loss, lr: 0.1, prototypeUsage: usage, stepTimeMs: 1, imagesPerSec: 1, waitFraction: 0,
  ...(codeEntropy !== undefined ? { codeEntropy } : {}),
});

describe('collapse alarm', () => {
  const config = tinyConfig({ alarm: { afterSteps: 10, window: 5, lossTolerance: 0.01, minPrototypeUsage: 0.1 } });
  const lnK = Math.log(config.model.prototypes);

  it('fires when the loss sits at ln K, once per window, and not before afterSteps', () => {
    const watch = new CollapseWatch(config);
    const alarms = Array.from({ length: 20 }, (_, i) => watch.observe(step(i, lnK * 1.001, 0.8))).map((a, i) => (a ? i : -1)).filter((i) => i >= 0);
    expect(alarms).toEqual([10, 15]);
  });

  it('fires when few prototypes win, and stays quiet for healthy training', () => {
    const unused = new CollapseWatch(config);
    const fired = Array.from({ length: 12 }, (_, i) => unused.observe(step(i, lnK * 0.5, 0.05))).filter(Boolean);
    expect(fired).toHaveLength(1);
    expect(fired[0]?.message).toMatch(/prototype usage/);
    const healthy = new CollapseWatch(config);
    expect(Array.from({ length: 40 }, (_, i) => healthy.observe(step(i, lnK * 0.6, 0.7))).filter(Boolean)).toHaveLength(0);
  });

  it('says when the codes stay close to uniform short of collapse, once per epoch, and not for sharp codes', () => {
    // 0.85 of ln K by default: ten steps per epoch, codes at 0.93 of ln K and a loss well below it.
    const run = (entropy: number) => {
      const watch = new CollapseWatch(config);
      return Array.from({ length: 40 }, (_, i) => watch.observe(step(i, lnK * 0.9, 0.5, entropy * lnK, Math.floor(i / 10)))).flatMap((a, i) => (a ? [{ i, a }] : []));
    };
    const uniform = run(0.93);
    expect(uniform.map(({ i }) => i)).toEqual([10, 20, 30]); // from afterSteps, then the first step of each epoch
    expect(uniform[0].a.kind).toBe('uniform-codes');
    expect(uniform[0].a.message).toMatch(/0\.93 of ln K.*smaller train\.epsilon/);
    expect(run(0.8)).toEqual([]);
    // A loss at ln K is collapse, which the uniform codes are part of: one alarm, of that kind.
    const collapsed = new CollapseWatch(config);
    const kinds = Array.from({ length: 12 }, (_, i) => collapsed.observe(step(i, lnK, 0.5, lnK))).flatMap((a) => (a ? [a.kind] : []));
    expect(kinds).toEqual(['collapse']);
  });

  it('does not judge objectives without prototypes', () => {
    const watch = new CollapseWatch(tinyConfig({ objective: 'simclr', alarm: { afterSteps: 0, window: 1 } }));
    expect(watch.observe(step(5, lnK, 0))).toBeNull();
  });
});
