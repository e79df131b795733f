// The objectives (stages/train/objectives/) on hand-made features, without the encoder: each against the pure losses
// it wires, hybrid against its two halves, and the trainer's metrics read back by name.
import type { Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { tf } from '../../../pipeline/core/tensorflow.js';
import type { Batch } from '../../../schemas/records.js';
import { addClassifierParams, addProjectionParams, addPrototypes, classify, project, prototypeName } from '../../../stages/train/heads.js';
import { ntXentLoss } from '../../../stages/train/ntxent-loss.js';
import { type Group, type Kept, namedMetrics, type Objective, objectiveFor, type ObjectiveStep } from '../../../stages/train/objectives/index.js';
import { hybrid } from '../../../stages/train/objectives/hybrid.js';
import { simclr } from '../../../stages/train/objectives/simclr.js';
import { supervised } from '../../../stages/train/objectives/supervised.js';
import { swav } from '../../../stages/train/objectives/swav.js';
import { ParamStore } from '../../../stages/train/params.js';
import { sigmoidCrossEntropy } from '../../../stages/train/supervised-loss.js';
import { swavLoss } from '../../../stages/train/swav-loss.js';
import { Trainer } from '../../../stages/train/trainer.js';
import { assembleBatch, epochOrder, imagesFor } from '../../support/medmnist-batches.js';
import { tinyConfig } from './helpers.js';

const B = 6, D = 5, LABELS = 2;
const KINDS = ['global', 'global', 'local', 'local'] as const;

/** A step of B rows over 2 global and 2 local crops, features drawn from `seed`, every head made. */
function handMade(config: ReturnType<typeof tinyConfig>, opts: { seed?: number; groups?: Group[]; labelled?: boolean; lambda?: number; mask?: number[] } = {}) {
  const store = new ParamStore(config.seed);
  addProjectionParams(store, { featureDim: D, hidden: config.model.projection.hidden, out: config.model.projection.out });
  addPrototypes(store, prototypeName(null), config.model.projection.out, config.model.prototypes);
  addClassifierParams(store, D, LABELS);
  const batch = { ids: Array.from({ length: B }, (_, i) => `s${i}`), views: KINDS.map((kind) => ({ kind })) } as unknown as Batch;
  const features = KINDS.map((_, v) => tf.randomNormal([B, D], 0, 1, 'float32', (opts.seed ?? 1) * 10 + v) as Tensor2D);
  const labels = opts.labelled === false ? null : tf.tensor2d(Array.from({ length: B * LABELS }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0), [B, LABELS]);
  const mask = labels ? tf.tensor1d(opts.mask ?? Array(B).fill(1)) as Tensor1D : null;
  const inputs = new Map<string, Tensor>([['lambda', tf.scalar(opts.lambda ?? 0.7)]]);
  const groups = opts.groups ?? [{ modality: null, rows: null, size: B }];
  for (const g of groups) if (g.rows) inputs.set(`rows:${g.modality}`, tf.tensor1d(g.rows, 'int32'));
  const step = (views: number[]): ObjectiveStep => ({
    store, batch, views, features: views.map((v) => features[v]), mode: { training: true, observed: [] }, labels, mask,
    groups, queues: new Map(groups.map((g) => [g, null])), input: (n) => inputs.get(n) as Tensor,
  });
  return { store, batch, features, labels, mask, step };
}

/** The objective's loss and what it kept. */
function lossOf(o: Objective, s: ObjectiveStep): { loss: number; kept: Kept; metrics: number[] } {
  const kept: Kept = { parts: {}, assignments: [] };
  const loss = (o.loss(s, kept).dataSync() as Float32Array)[0];
  const metrics = Array.from(tf.concat(o.metricTensors(kept)).dataSync());
  return { loss, kept, metrics };
}

const value = (t: Tensor) => (t.dataSync() as Float32Array)[0];

describe('swav', () => {
  const config = tinyConfig({ clustering: 'uni-modal' });

  it('weights each modality group\'s swapped-prediction loss by its share of the batch, and keeps its assigned crops', () => {
    const groups: Group[] = [{ modality: 'CR', rows: Int32Array.of(0, 2, 3, 5), size: 4 }, { modality: 'CT', rows: Int32Array.of(1, 4), size: 2 }];
    const h = handMade(config, { groups });
    const o = swav(config);
    const views = o.views(h.batch);
    expect(views).toEqual([0, 1, 2, 3]);
    const { loss, kept, metrics } = lossOf(o, h.step(views));
    // By hand: project every crop at once, then each group's rows scored against the prototypes.
    const z = project(h.store, tf.concat(h.features, 0) as Tensor2D, { training: true });
    const c = h.store.get(prototypeName(null)) as Tensor as Tensor2D;
    const t = config.train;
    const expected = groups.reduce((sum, g) => {
      const scores = views.map((_, i) => tf.matMul(tf.gather(tf.slice(z, [i * B, 0], [B, z.shape[1]]), g.rows as Int32Array), c) as Tensor2D);
      return sum + (g.size / B) * value(swavLoss(scores, { temperature: t.temperature, epsilon: t.epsilon, iterations: t.sinkhornIterations, cropsForAssign: t.cropsForAssign }));
    }, 0);
    expect(loss).toBeCloseTo(expected, 5);
    expect(kept.assignments.map((a) => [a.group.modality, a.assigned.length, a.assigned[0].shape[0]])).toEqual([['CR', 2, 4], ['CT', 2, 2]]);
    // Metrics: the loss, then a code entropy within [0, ln K] and a usage within (0, 1].
    expect(o.metrics).toEqual(['loss', 'codeEntropy', 'prototypeUsage']);
    expect(metrics[0]).toBe(loss);
    expect(metrics[1]).toBeGreaterThanOrEqual(0);
    expect(metrics[1]).toBeLessThanOrEqual(Math.log(config.model.prototypes) + 1e-5);
    expect(metrics[2]).toBeGreaterThan(0);
    expect(metrics[2]).toBeLessThanOrEqual(1);
  });

  it('needs two crops', () => {
    const batch = { ids: ['a'], views: [{ kind: 'global' }] } as unknown as Batch;
    expect(() => swav(config).views(batch)).toThrow(/objective swav needs at least 2 crops/);
  });
});

describe('simclr', () => {
  const config = tinyConfig({ objective: 'simclr' });

  it('is NT-Xent over the projections of the first two global crops', () => {
    const h = handMade(config);
    const o = simclr(config);
    const views = o.views(h.batch);
    expect(views).toEqual([0, 1]);
    const { loss, metrics } = lossOf(o, h.step(views));
    const z = project(h.store, tf.concat([h.features[0], h.features[1]], 0) as Tensor2D, { training: true });
    expect(loss).toBe(value(ntXentLoss(tf.slice(z, [0, 0], [B, -1]) as Tensor2D, tf.slice(z, [B, 0], [B, -1]) as Tensor2D, config.train.temperature)));
    expect(metrics).toEqual([loss]);
    expect(o.heads).toEqual({ projection: true, prototypes: false, classifier: false });
  });

  it('needs two global crops', () => {
    const batch = { ids: ['a', 'b'], views: [{ kind: 'global' }, { kind: 'local' }] } as unknown as Batch;
    expect(() => simclr(config).views(batch)).toThrow(/two global crops/);
  });
});

describe('supervised', () => {
  const config = tinyConfig({ objective: 'supervised' });

  it('is the classifier\'s cross-entropy on the global crops, over the labelled rows only', () => {
    const mask = [1, 0, 1, 1, 0, 1];
    const h = handMade(config, { mask });
    const o = supervised();
    const views = o.views(h.batch);
    expect(views).toEqual([0, 1]);
    const { loss, metrics } = lossOf(o, h.step(views));
    const logits = classify(h.store, tf.concat([h.features[0], h.features[1]], 0) as Tensor2D);
    const expected = value(sigmoidCrossEntropy(logits, tf.tile(h.labels as Tensor2D, [2, 1]) as Tensor2D, tf.tile(h.mask as Tensor1D, [2]) as Tensor1D));
    expect(loss).toBe(expected);
    // The loss is the supervised loss: one value under both names.
    expect(o.metrics).toEqual(['loss', 'supervisedLoss']);
    expect(metrics).toEqual([loss, loss]);
    // Labels of masked-out rows do not count.
    const flipped = tf.tensor2d((h.labels as Tensor2D).arraySync().map((row, i) => (mask[i] ? row : row.map((y) => 1 - y))));
    expect(value(o.loss({ ...h.step(views), labels: flipped }, { parts: {}, assignments: [] }))).toBe(expected);
  });

  it('gives 0 without labels (an unlabelled batch adds nothing)', () => {
    const h = handMade(config, { labelled: false });
    expect(lossOf(supervised(), h.step([0, 1])).loss).toBe(0);
  });
});

describe('hybrid', () => {
  const config = tinyConfig({ objective: 'hybrid' });

  it('is supervised + lambda x SwAV on the same inputs, and reports both halves by name', () => {
    const lambda = 0.7;
    const h = handMade(config, { lambda });
    const o = hybrid(config);
    const views = o.views(h.batch);
    const { loss, kept, metrics } = lossOf(o, h.step(views));
    const ssl = lossOf(swav(config), h.step(views)).loss;
    const sup = lossOf(supervised(), h.step(views)).loss;
    expect(loss).toBeCloseTo(sup + lambda * ssl, 5);
    expect(value(kept.parts.sslLoss as Tensor)).toBe(ssl);
    expect(value(kept.parts.supervisedLoss as Tensor)).toBe(sup);
    const m = namedMetrics(o.metrics, metrics);
    expect(m).toMatchObject({ loss, sslLoss: ssl, supervisedLoss: sup });
    expect(o.heads).toEqual({ projection: true, prototypes: true, classifier: true });
  });

  it('takes lambda from its schedule', () => {
    const o = hybrid(tinyConfig({ objective: 'hybrid', lambda: 2, lambdaSchedule: { kind: 'linear', start: 0, steps: 4 } }));
    expect([0, 2, 4, 9].map((s) => o.lambda?.(s))).toEqual([0, 1, 2, 2]);
    expect(swav(config).lambda).toBeUndefined();
  });
});

describe('metrics by name', () => {
  it('refuses a metrics vector whose length is not its names\'', () => {
    expect(namedMetrics(['loss', 'codeEntropy'], [1, 2])).toEqual({ loss: 1, codeEntropy: 2 });
    expect(() => namedMetrics(['loss', 'codeEntropy'], [1, 2, 3])).toThrow(/3 metrics for 2 names/);
  });

  it('every objective\'s trainer step reports the fields its names give, hybrid\'s loss from its two halves', async () => {
    for (const objective of ['swav', 'simclr', 'supervised', 'hybrid'] as const) {
      const config = tinyConfig({ objective, lambda: 0.5 });
      const images = imagesFor(config);
      const batch = assembleBatch(images, epochOrder(images, config, config.seed, 0)[0], config.augment, config.seed, 0, 0);
      const trainer = new Trainer(config, 1, batch.numLabels);
      expect(trainer.objective).toMatchObject({ name: objective, metrics: objectiveFor(config).metrics });
      const r = await trainer.trainStep(batch, 10);
      const fields = Object.keys(r);
      if (objective === 'swav') expect(fields).toEqual(['loss', 'lr', 'codeEntropy', 'prototypeUsage']);
      if (objective === 'simclr') expect(fields).toEqual(['loss', 'lr']);
      if (objective === 'supervised') {
        expect(fields).toEqual(['loss', 'supervisedLoss', 'lr']);
        expect(r.supervisedLoss).toBe(r.loss);
      }
      if (objective === 'hybrid') {
        expect(fields).toEqual(['loss', 'sslLoss', 'supervisedLoss', 'lambda', 'lr', 'codeEntropy', 'prototypeUsage']);
        // Read by index, a swapped name would break this: loss = supervised + lambda x SwAV.
        expect(r.loss).toBeCloseTo((r.supervisedLoss as number) + 0.5 * (r.sslLoss as number), 5);
        expect(r.codeEntropy).toBeLessThanOrEqual(Math.log(config.model.prototypes) + 1e-5);
      }
      trainer.dispose();
    }
  });
});
