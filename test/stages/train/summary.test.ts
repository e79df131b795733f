import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { MetricsEvent } from '../../../schemas/metrics.js';
import { readRunSummary, summarizeRun } from '../../../stages/train/summary.js';

const step = (i: number, loss: number, codeEntropy?: number): MetricsEvent => ({
  type: 'step', epoch: 0, step: i, loss, lr: 0.1, stepTimeMs: 1, imagesPerSec: 1, waitFraction: 0,
  ...(codeEntropy !== undefined ? { codeEntropy, prototypeUsage: 0.5 } : {}),
});

describe('a run summary', () => {
  it('averages the first and last 100 steps, gives the code entropy as a fraction of ln K, and counts alarms by kind', () => {
    // 300 steps: loss 5 for the first 100, 3 for the last 100; codes at 0.9 ln K at the end.
    const lnK = Math.log(64);
    const events: MetricsEvent[] = Array.from({ length: 300 }, (_, i) => step(i, i < 100 ? 5 : i < 200 ? 4 : 3, i < 200 ? lnK : 0.9 * lnK));
    events.push({ type: 'alarm', step: 120, kind: 'uniform-codes', message: '' }, { type: 'alarm', step: 220, kind: 'uniform-codes', message: '' }, { type: 'epoch', epoch: 0, steps: 300, meanLoss: 4, images: 1, seconds: 1, waitFraction: 0 });
    const s = summarizeRun(events, 64)!;
    expect(s.steps).toBe(300);
    expect(s.window).toBe(100);
    expect(s.loss).toEqual([5, 3]);
    expect(s.codeEntropy).toBeCloseTo(0.9, 12);
    expect(s.prototypeUsage).toBe(0.5);
    expect(s.alarms).toEqual({ 'uniform-codes': 2 });
  });

  it('has no code entropy for objectives without prototypes, and nothing for a run without steps', () => {
    const s = summarizeRun([step(0, 2), step(1, 1)], null)!;
    expect(s).toEqual({ steps: 2, window: 2, loss: [1.5, 1.5], alarms: {} });
    expect(summarizeRun([], 64)).toBeNull();
  });

  it('reads a metrics.jsonl whose last line was cut short', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-summary-')), 'metrics.jsonl');
    fs.writeFileSync(file, `${JSON.stringify(step(0, 4, 2))}\n${JSON.stringify(step(1, 2, 2))}\n{"type":"step","ep`);
    expect(readRunSummary(file, 64)).toMatchObject({ steps: 2, loss: [3, 3], codeEntropy: 2 / Math.log(64) });
  });
});
