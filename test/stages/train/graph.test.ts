// The trainer's step as a TensorFlow graph (stages/train/graph/): the same numbers as the eager step, for every
// objective and for the structures that change during a run (frozen prototypes, a queue filling up, modality groups),
// bit-identical from run to run, and actually used.
import { describe, expect, it } from 'vitest';
import { backendInfo } from '../../../pipeline/core/tensorflow.js';
import type { ConfigInput } from '../../../schemas/config.js';
import { Trainer } from '../../../stages/train/trainer.js';
import { assembleBatch, epochOrder, imagesFor } from '../../support/medmnist-batches.js';
import { tinyConfig } from './helpers.js';
import { sample } from '../../shared.js';

const native = backendInfo.backend !== 'cpu';

function trainer(config: ReturnType<typeof tinyConfig>, numLabels: number, graph: boolean): Trainer {
  const before = process.env.MEDSSL_GRAPH;
  process.env.MEDSSL_GRAPH = graph ? '1' : '0';
  try {
    return new Trainer(config, 1, numLabels);
  } finally {
    if (before === undefined) delete process.env.MEDSSL_GRAPH;
    else process.env.MEDSSL_GRAPH = before;
  }
}

async function run(config: ReturnType<typeof tinyConfig>, steps: number, graph: boolean, labelled = false, orderFrom = config) {
  const images = imagesFor(config);
  const order = epochOrder(images, orderFrom, config.seed, 0);
  const batches = order.slice(0, steps).map((rows, s) => assembleBatch(images, rows, config.augment, config.seed, 0, s));
  const t = trainer(config, labelled ? batches[0].numLabels : 0, graph);
  const losses: number[] = [];
  for (const b of batches) losses.push((await t.trainStep(b, steps)).loss);
  const params = new Map([...t.store.vars].map(([n, v]) => [n, v.dataSync().slice()]));
  const stats = t.graphStats;
  t.dispose();
  return { losses, params, stats };
}

const oneModality = { data: { inputs: [sample('medmnist/pneumoniamnist.npz')] } };
const CASES: Array<[string, NonNullable<ConfigInput['train']>, boolean, Partial<ConfigInput>?]> = [
  ['SwAV, LARS with warm-up and cosine, prototypes frozen for 2 steps, a queue that fills', { optimizer: { name: 'lars', lr: 0.5, warmupSteps: 2 }, freezePrototypesSteps: 2, queue: { length: 32, startEpoch: 0 } }, false],
  ['SwAV uni-modal on one modality with per-modality prototypes, AdamW', { clustering: 'uni-modal', prototypesPerModality: true, optimizer: { name: 'adamw', lr: 0.01, weightDecay: 0.05 } }, false, oneModality],
  ['hybrid with a lambda schedule', { objective: 'hybrid', lambdaSchedule: { kind: 'linear', start: 0, steps: 4 } }, true],
  ['SimCLR', { objective: 'simclr' }, false],
  ['supervised', { objective: 'supervised' }, true],
];

describe.runIf(native)('the step as a graph', () => {
  for (const [name, train, labelled, extra] of CASES) {
    it(`${name}: the same losses and weights as the eager step`, async () => {
      const config = tinyConfig(train, extra);
      const steps = 6;
      const eager = await run(config, steps, false, labelled);
      const graph = await run(config, steps, true, labelled);
      expect(eager.stats.graphSteps).toBe(0);
      // Every step ran in the session (its structure recorded once, from an eager run that was rolled back).
      expect(graph.stats).toMatchObject({ graphSteps: steps, eagerSteps: 0, notes: [] });
      expect(graph.stats.compiled).toBeGreaterThanOrEqual(1);
      graph.losses.forEach((l, i) => expect(Math.abs(l - eager.losses[i]) / Math.abs(eager.losses[i]), `step ${i}`).toBeLessThan(1e-4));
      // TensorFlow's graph optimizer may reorder float sums: the weights agree to float32 rounding, not bit for bit.
      for (const [p, e] of eager.params) {
        const g = graph.params.get(p)!;
        const scale = Math.max(1e-3, ...Array.from(e, Math.abs));
        const diff = Math.max(...Array.from(e, (x, i) => Math.abs(x - g[i])));
        expect(diff / scale, p).toBeLessThan(1e-3);
      }
    });
  }

  it('runs batches that mix modalities under uni-modal clustering eagerly (their groups change size every batch)', async () => {
    const config = tinyConfig({ clustering: 'uni-modal' });
    // The multi-modal order mixes modalities in a batch (a uni-modal order would stratify them).
    const r = await run(config, 3, true, false, tinyConfig());
    expect(r.stats).toMatchObject({ compiled: 0, graphSteps: 0, eagerSteps: 3 });
  });

  it('gives bit-identical weights from run to run', async () => {
    const config = tinyConfig({ optimizer: { name: 'lars', lr: 0.5, warmupSteps: 1 } });
    const a = await run(config, 4, true);
    const b = await run(config, 4, true);
    expect(b.losses).toEqual(a.losses);
    for (const [p, v] of a.params) expect(Buffer.from(b.params.get(p)!.buffer).equals(Buffer.from(v.buffer)), p).toBe(true);
  });
});
