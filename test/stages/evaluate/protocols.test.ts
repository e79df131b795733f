import { describe, expect, it } from 'vitest';
import { backendInfo, tf } from '../../../pipeline/core/tensorflow.js';
import { cloneEncoder, extractFeatures, finetune, knnProbe, linearProbe } from '../../../stages/evaluate/protocols.js';
import { recalibrateBatchNorm } from '../../../stages/evaluate/protocols.js';
import { syntheticDataset, tinyBnEncoder, tinyEncoder } from './tiny.js';

const data = syntheticDataset();

describe('protocols on a tiny encoder', () => {
  it('linear probe separates an easy task and is deterministic', () => {
    const enc = tinyEncoder();
    const a = linearProbe(enc, data.train, data.val, data.test, { steps: 100 });
    const b = linearProbe(enc, data.train, data.val, data.test, { steps: 100 });
    expect(a.test.auc).toBeGreaterThan(0.8);
    expect(a.test.auc).toBe(b.test.auc);
    expect(a.test.ci[0]).toBeLessThanOrEqual(a.test.auc);
    // The scorer reproduces the test scores it was evaluated with.
    expect(a.scorer(data.test).length).toBe(data.test.n);
    a.dispose(); b.dispose(); enc.dispose();
  });

  it('kNN votes with cosine similarity', () => {
    const enc = tinyEncoder();
    const r = knnProbe(enc, data.train, data.val, data.test, { k: 5 });
    expect(r.test.auc).toBeGreaterThan(0.7);
    const s = r.scorer(data.test);
    expect(Math.min(...s)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...s)).toBeLessThanOrEqual(1);
    r.dispose(); enc.dispose();
  });

  it('fine-tuning tracks validation AUC, keeps the best step, and leaves the original encoder unchanged', async () => {
    const enc = tinyEncoder();
    const before = extractFeatures(enc, data.test).data;
    const copy = await cloneEncoder(enc);
    const r = await finetune(copy, data.train, data.val, data.test, { steps: 12, batchSize: 16, evalEvery: 4, seed: 0, lr: 0.01, flip: true });
    expect(r.curve.map((p) => p.step)).toEqual([4, 8, 12]);
    expect(r.val).toBe(Math.max(...r.curve.map((p) => p.valAuc)));
    expect(r.curve.find((p) => p.step === r.bestStep)!.valAuc).toBe(r.val);
    expect(r.curve.every((p) => Number.isFinite(p.loss))).toBe(true);
    expect(extractFeatures(enc, data.test).data).toEqual(before);
    r.dispose(); enc.dispose();
    expect(tf.memory().numTensors).toBeLessThan(200);
  });
});

describe('fine-tuning steps', () => {
  const run = async (graph: boolean) => {
    const before = process.env.MEDSSL_GRAPH;
    if (graph) delete process.env.MEDSSL_GRAPH; else process.env.MEDSSL_GRAPH = '0';
    try {
      const n0 = tf.memory().numTensors;
      const enc = tinyBnEncoder();
      const r = await finetune(enc, data.train, data.val, data.test, { steps: 12, batchSize: 16, evalEvery: 4, seed: 0, lr: 0.01, flip: true });
      const movingMean = enc.weights.find((w) => /moving_mean/.test(w.name))!.read().dataSync().slice();
      const scores = r.scorer(data.test);
      r.dispose();
      // Nothing of the updates outlives the result (tfjs-layers keeps at most one initial value per weight it built).
      expect(tf.memory().numTensors - n0).toBeLessThanOrEqual(enc.weights.length);
      return { r, movingMean, scores };
    } finally {
      if (before === undefined) delete process.env.MEDSSL_GRAPH; else process.env.MEDSSL_GRAPH = before;
    }
  };

  it('run as one TensorFlow graph on the native backend, with the eager updates\' losses, batch statistics and scores', async () => {
    expect(backendInfo.backend).toMatch(/^tensorflow/);
    const graph = await run(true), eager = await run(false);
    expect(graph.r.steps).toMatchObject({ compiled: 1, graphSteps: 12, eagerSteps: 0, notes: [] });
    expect(eager.r.steps.graphSteps).toBe(0);
    // The layers' moving statistics are updated inside the graph too (they start at 0).
    expect(Math.max(...graph.movingMean.map(Math.abs))).toBeGreaterThan(1e-3);
    graph.movingMean.forEach((v, i) => expect(v).toBeCloseTo(eager.movingMean[i], 4));
    graph.r.curve.forEach((p, i) => expect(p.loss).toBeCloseTo(eager.r.curve[i].loss, 4));
    expect(graph.r.bestStep).toBe(eager.r.bestStep);
    graph.scores.forEach((v, i) => expect(v).toBeCloseTo(eager.scores[i], 3));
  });
});

describe('logisticRegression', () => {
  it('reaches the regularised optimum (zero gradient) on a small problem', async () => {
    const { logisticRegression } = await import('../../../stages/evaluate/protocols.js');
    // x in {-1, 1} with 75% agreement with y: the optimum is finite; check the gradient of the objective vanishes.
    const x = Float64Array.from([-1, -1, -1, 1, 1, 1, 1, -1]), y = Float64Array.from([0, 0, 0, 1, 1, 1, 1, 0]).map((v, i) => (i === 2 || i === 6 ? 1 - v : v));
    const wd = 0.01, p = logisticRegression(x, y, 8, 1, wd, 3000, 0.05);
    let gw = 0, gb = 0;
    for (let i = 0; i < 8; i++) { const r = 1 / (1 + Math.exp(-(p[0] * x[i] + p[1]))) - y[i]; gw += r * x[i]; gb += r; }
    expect(Math.abs(gw / 8 + 2 * wd * p[0])).toBeLessThan(1e-4);
    expect(Math.abs(gb / 8)).toBeLessThan(1e-4);
    expect(p[0]).toBeGreaterThan(0.5);
  });
});

describe('recalibrateBatchNorm', () => {
  it('re-estimates every batch norm so that its output is centred and unit-variance on the calibration images', async () => {
    const { standInEncoder } = await import('../../support/stand-in-encoder.js');
    const { tf } = await import('../../../pipeline/core/tensorflow.js');
    const { random } = await import('../../../pipeline/core/random.js');
    const encoder = standInEncoder([8, 8, 1], 3, 4);
    const rs = random(1).stream({ purpose: 'test' });
    const images = Float32Array.from({ length: 64 * 64 }, () => 0.5 + 0.2 * rs.normal());
    const bns = encoder.layers.filter((l) => l.getClassName() === 'BatchNormalization');
    const outputStats = () => bns.map((bn) => tf.tidy(() => {
      const y = tf.model({ inputs: encoder.inputs, outputs: bn.output as never }).predict(tf.tensor4d(images, [64, 8, 8, 1])) as never as import('@tensorflow/tfjs').Tensor;
      const { mean, variance } = tf.moments(y, [0, 1, 2]);
      return { mean: Array.from(mean.dataSync()), variance: Array.from(variance.dataSync()) };
    }));
    const before = outputStats();
    expect(Math.max(...before.flatMap((s) => s.mean.map(Math.abs)))).toBeGreaterThan(0.05); // mean 0 / var 1: not centred
    await recalibrateBatchNorm(encoder, images, [8, 8, 1], 16);
    for (const s of outputStats()) {
      for (const m of s.mean) expect(Math.abs(m)).toBeLessThan(1e-3);
      // var / (var + epsilon): just under 1 for the small variances of a random network
      for (const v of s.variance) { expect(v).toBeGreaterThan(0.97); expect(v).toBeLessThan(1.001); }
    }
    encoder.dispose();
  });
});
