import type { Tensor } from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EMPTY, take } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { readJsonl } from '../../../pipeline/core/bridge.js';
import { batchesFor, stepsPerEpochFor } from '../../support/medmnist-batches.js';
import { Gate } from '../../../pipeline/core/flow.js';
import { tf } from '../../../pipeline/core/tensorflow.js';
import { MetricsEvent, type StepEvent } from '../../../schemas/metrics.js';
import { loadEncoder } from '../../../stages/train/checkpoint.js';
import { pretrain } from '../../../stages/train/pretrain.js';
import { tinyConfig } from './helpers.js';

// A few seconds natively; the pure-JS backend (MEDSSL_BACKEND=cpu) is hundreds of times slower.
const PURE_JS_TIMEOUT = 600_000;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-train-'));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('pretrain on real MedMNIST images', () => {
  it('lowers the SwAV loss with healthy prototype usage, no NaN, and exports a usable encoder', async () => {
    const config = tinyConfig({ epochs: 3, stepsPerEpoch: 8, queue: { length: 48, startEpoch: 1 }, optimizer: { name: 'sgd', lr: 0.1, warmupSteps: 3, weightDecay: 1e-5 } });
    const runDir = tmp();
    const gate = new Gate({ window: 3 });
    const result = await pretrain({ config, runDir, gate, stepsPerEpoch: stepsPerEpochFor(config), batches: (epoch) => batchesFor(config, { seed: config.seed, epoch, gate }) });
    const events = readJsonl<MetricsEvent>(path.join(runDir, 'metrics.jsonl'));
    for (const e of events) MetricsEvent.parse(e); // every line is a valid event record
    const steps = events.filter((e): e is StepEvent => e.type === 'step');
    expect(steps).toHaveLength(24);
    expect(steps.every((s) => Number.isFinite(s.loss) && Number.isFinite(s.codeEntropy as number))).toBe(true);
    expect(mean(steps.slice(-6).map((s) => s.loss))).toBeLessThan(mean(steps.slice(0, 6).map((s) => s.loss)));
    expect(mean(steps.map((s) => s.prototypeUsage as number))).toBeGreaterThan(0.3);
    expect(events.filter((e) => e.type === 'epoch')).toHaveLength(3);
    expect(events.filter((e) => e.type === 'checkpoint')).toHaveLength(3);
    expect(events.some((e) => e.type === 'alarm' && e.kind === 'nan')).toBe(false);
    for (const s of steps) expect(s.waitFraction).toBeGreaterThanOrEqual(0);
    expect(result.steps).toBe(24);
    // The run's summary is its metrics.jsonl in a few numbers (all 24 steps at each end of so short a run).
    expect(result.summary).toEqual({
      steps: 24, window: 24, loss: [mean(steps.map((s) => s.loss)), mean(steps.map((s) => s.loss))],
      codeEntropy: mean(steps.map((s) => s.codeEntropy as number)) / Math.log(config.model.prototypes),
      prototypeUsage: mean(steps.map((s) => s.prototypeUsage as number)), alarms: {},
    });
    expect(JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')).train.epochs).toBe(3);
    const encoder = await loadEncoder(runDir);
    const features = encoder.predict(tf.zeros([2, 28, 28, 1])) as Tensor;
    expect(features.shape).toEqual([2, 8]); // width 4, two stages: 4 * 2 channels
    // A second run into the same folder without --resume would overwrite it: refused.
    await expect(pretrain({ config, runDir, stepsPerEpoch: 8, batches: () => EMPTY })).rejects.toThrow(/already holds a run/);
    // A run in which every sample failed before the trainer trained nothing: an error, not an encoder at its initial weights.
    await expect(pretrain({ config, runDir: tmp(), stepsPerEpoch: 8, batches: () => EMPTY })).rejects.toThrow(/no batch reached the trainer \(24 steps to go\)/);
  }, PURE_JS_TIMEOUT);

  it('resuming continues the same run: the result equals an uninterrupted run', async () => {
    const config = tinyConfig({ epochs: 2, stepsPerEpoch: 3, queue: { length: 32, startEpoch: 0 }, optimizer: { name: 'lars', lr: 0.5, warmupSteps: 1 } });
    const batches = (epoch: number) => batchesFor(config, { seed: config.seed, epoch });
    const whole = tmp();
    await pretrain({ config, runDir: whole, stepsPerEpoch: 3, batches });
    const parts = tmp();
    // Interrupted after the first epoch (the second yields nothing), then resumed.
    const first = await pretrain({ config, runDir: parts, stepsPerEpoch: 3, batches: (e) => (e === 0 ? batches(e) : EMPTY) });
    expect(first.steps).toBe(3);
    // As if killed after the checkpoint: a step line it does not cover and a line cut short.
    const file = path.join(parts, 'metrics.jsonl');
    const beyond = readJsonl<MetricsEvent>(path.join(whole, 'metrics.jsonl')).find((e) => e.type === 'step' && e.step === 3);
    fs.appendFileSync(file, `${JSON.stringify(beyond)}\n{"type":"step","epo`);
    const second = await pretrain({ config, runDir: parts, stepsPerEpoch: 3, batches, resume: true });
    expect(second.stepsThisRun).toBe(3);
    expect(second.steps).toBe(6);
    const a = fs.readFileSync(path.join(whole, 'checkpoint', 'tensors.bin'));
    const b = fs.readFileSync(path.join(parts, 'checkpoint', 'tensors.bin'));
    expect(b.length).toBe(a.length);
    const fa = new Float32Array(a.buffer, a.byteOffset, a.length / 4), fb = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    let maxDiff = 0;
    for (let i = 0; i < fa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(fa[i] - fb[i]));
    expect(maxDiff).toBe(0);
    // The resumed metrics hold each step once, as the uninterrupted run's, and every line parses.
    const events = (dir: string) => readJsonl<MetricsEvent>(path.join(dir, 'metrics.jsonl'));
    const steps = events(parts).filter((e) => e.type === 'step').map((e) => (e as StepEvent).step);
    expect(steps).toEqual([0, 1, 2, 3, 4, 5]);
    const losses = (dir: string) => events(dir).filter((e) => e.type === 'step').map((e) => (e as StepEvent).loss);
    expect(losses(parts)).toEqual(losses(whole));
    expect(events(parts).map((e) => e.type)).toEqual(events(whole).map((e) => e.type));
    // Interrupted in the middle of an epoch (after step 1 of epoch 0, checkpointed every step): same result.
    const mid = tmp();
    const midConfig = { ...config, train: { ...config.train, checkpointEverySteps: 1 } };
    await pretrain({ config: midConfig, runDir: mid, stepsPerEpoch: 3, batches: (e) => (e === 0 ? batches(e).pipe(take(2)) : EMPTY) });
    const resumedMid = await pretrain({ config: midConfig, runDir: mid, stepsPerEpoch: 3, batches, resume: true });
    expect(resumedMid.stepsThisRun).toBe(4);
    expect(fs.readFileSync(path.join(mid, 'checkpoint', 'tensors.bin')).equals(a)).toBe(true);
    // A different config cannot resume the run.
    const other = tinyConfig({ epochs: 2, stepsPerEpoch: 3, temperature: 0.2 });
    await expect(pretrain({ config: other, runDir: parts, stepsPerEpoch: 3, batches, resume: true })).rejects.toThrow(/config differs/);
  }, PURE_JS_TIMEOUT);
});
