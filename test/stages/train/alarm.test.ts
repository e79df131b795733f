import { describe, expect, it } from 'vitest';
import type { StepEvent } from '../../../schemas/metrics.js';
import { CollapseWatch } from '../../../stages/train/train.js';
import { tinyConfig } from './helpers.js';

const step = (i: number, loss: number, usage: number): StepEvent => ({
  type: 'step', epoch: 0, step: i, loss, lr: 0.1, prototypeUsage: usage, stepTimeMs: 1, imagesPerSec: 1, waitFraction: 0,
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

  it('does not judge objectives without prototypes', () => {
    const watch = new CollapseWatch(tinyConfig({ objective: 'simclr', alarm: { afterSteps: 0, window: 1 } }));
    expect(watch.observe(step(5, lnK, 0))).toBeNull();
  });
});
