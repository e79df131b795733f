// Run under mpirun by test/stages/train/mpi.test.ts (node --import tsx): every rank builds the same global batches
// (the trainer tests' MedMNIST batches), trains on its share (rows r, r + N, ...), and compares each step with one
// process training on the whole batch from the same weights: the loss and metrics, and every parameter's update.
// After each step both trainers are set to the one-process weights, so that each step is compared from the same point
// (over several steps, float32 rounding differences are amplified where a ReLU changes side: with LARS at lr 0.05, one
// activation 6.5e-6 from a ReLU's kink at the third step moved one channel's gradient by 2.7e-4 absolute, so LARS is
// covered by the two-rank CLI test instead). Rank 0 prints one JSON line per case: the largest relative differences.
import { openWorld } from '../../pipeline/core/mpi.js';
import type { Batch } from '../../schemas/records.js';
import { Trainer } from '../../stages/train/trainer.js';
import { nativeKernels } from '../../stages/train/batchnorm.js';
import type { ConfigInput } from '../../schemas/config.js';
import { tinyConfig } from '../stages/train/helpers.js';
import { assembleBatch, epochOrder, imagesFor } from './medmnist-batches.js';

// The one-process reference uses the composed batch norm (tf.moments + tf.batchNorm, differentiated by tfjs): the fused
// kernels' sums differ from it by up to 1.5% in this tiny network's first layers on some batches (measured with
// MEDSSL_FUSED_BN=0 against the default), which would hide what is compared here. ReLU then uses tfjs's gradient too.
nativeKernels.enabled = false;
const world = openWorld();
if (!world) throw new Error('run me under mpirun');

const cases: Record<string, { train: NonNullable<ConfigInput['train']>; labelled?: boolean; oneSided?: boolean }> = {
  'swav, queue': { train: { queue: { length: 16, startEpoch: 0 } } },
  'swav uni-modal, prototypes per modality': { train: { clustering: 'uni-modal', prototypesPerModality: true } },
  // Rows ordered so that rank 0 holds every CT row (when there are at most B/N of them): rank 1 has no rows of that
  // modality, and takes part in its collectives with none.
  'swav uni-modal, a modality on rank 0 only': { train: { clustering: 'uni-modal' }, oneSided: true },
  simclr: { train: { objective: 'simclr' } },
  hybrid: { train: { objective: 'hybrid', lambda: 0.5 }, labelled: true },
};

/** The batch's rows reordered: CT rows at the positions of rank 0 (0, N, 2N, ...), the others after. */
function oneSided(batch: Batch): Batch {
  const ct = batch.ids.map((_, i) => i).filter((i) => batch.modalities[i] === 'CT');
  const rest = batch.ids.map((_, i) => i).filter((i) => batch.modalities[i] !== 'CT');
  const slots = batch.ids.map((_, p) => p);
  const mine = slots.filter((p) => p % world!.size === 0);
  const order = new Array<number>(batch.ids.length);
  const queue = [...ct, ...rest];
  for (const p of [...mine, ...slots.filter((p) => p % world!.size !== 0)]) order[p] = queue.shift() as number;
  const pick = <T>(xs: ArrayLike<T>) => order.map((i) => xs[i]);
  return {
    ...batch, ids: pick(batch.ids), modalities: pick(batch.modalities),
    views: batch.views.map((v) => {
      const per = v.size * v.size * v.channels;
      const data = new Float32Array(order.length * per);
      order.forEach((i, j) => data.set(v.data.subarray(i * per, (i + 1) * per), j * per));
      return { ...v, data };
    }),
  };
}

/** Rank r's rows of a batch: r, r + N, r + 2N, ... (what rank r's share of the epoch order gives). */
function share(batch: Batch): Batch {
  const rows = Array.from({ length: batch.ids.length / world!.size }, (_, j) => world!.rank + j * world!.size);
  const pick = <T>(xs: ArrayLike<T>) => rows.map((i) => xs[i]);
  const out: Batch = {
    ...batch, ids: pick(batch.ids), modalities: pick(batch.modalities),
    views: batch.views.map((v) => {
      const per = v.size * v.size * v.channels;
      const data = new Float32Array(rows.length * per);
      rows.forEach((i, j) => data.set(v.data.subarray(i * per, (i + 1) * per), j * per));
      return { ...v, data };
    }),
  };
  if (batch.labels) out.labels = Float32Array.from(rows.flatMap((i) => Array.from(batch.labels!.subarray(i * batch.numLabels, (i + 1) * batch.numLabels))));
  if (batch.labelMask) out.labelMask = Uint8Array.from(pick(batch.labelMask));
  return out;
}

try {
for (const [name, c] of Object.entries(cases)) {
  const config = tinyConfig(c.train);
  const images = imagesFor(config);
  // Uni-modal clustering makes the test batches one modality each; the one-sided case takes mixed ones.
  const batches = epochOrder(images, c.oneSided ? tinyConfig() : config, config.seed, 0).slice(0, 3).map((rows, s) => {
    const b = assembleBatch(images, rows, config.augment, config.seed, 0, s);
    const batch = c.labelled ? b : { ...b, numLabels: 0, labels: undefined, labelMask: undefined };
    return c.oneSided ? oneSided(batch) : batch;
  });
  // The queue is per rank: N queues of L rows hold what one process's queue of N x L rows holds (Sinkhorn does not
  // depend on the order of its rows).
  const oneConfig = config.train.queue.length ? tinyConfig({ ...c.train, queue: { length: config.train.queue.length * world.size, startEpoch: 0 } }) : config;
  const one = new Trainer(oneConfig, 1, batches[0].numLabels);
  const rank = new Trainer(config, 1, batches[0].numLabels, { world });
  let metrics = 0, weights = 0, moments = 0;
  const worst = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let d = 0, m = 1e-6;
    for (let i = 0; i < a.length; i++) {
      d = Math.max(d, Math.abs(a[i] - b[i]));
      m = Math.max(m, Math.abs(a[i]));
    }
    return d / m;
  };
  for (const batch of batches) {
    const a = await one.trainStep(batch, 10);
    const b = await rank.trainStep(share(batch), 10);
    for (const k of ['loss', 'sslLoss', 'supervisedLoss', 'codeEntropy', 'prototypeUsage'] as const) {
      if (a[k] !== undefined) metrics = Math.max(metrics, Math.abs((b[k] as number) - a[k]) / Math.max(Math.abs(a[k]), 1e-3));
    }
    // Parameters and moving statistics, relative to the tensor's largest value; the optimizer's first moments (linear in
    // the gradients: the averaged gradients themselves, before they are added to weights far larger than an update).
    for (const [n, v] of one.store.vars) weights = Math.max(weights, worst(v.dataSync(), rank.store.get(n).dataSync()));
    for (const [n, v] of one.optimizer.slots) if (n.endsWith('/m')) moments = Math.max(moments, worst(v.dataSync(), (rank.optimizer.slots.get(n) as typeof v).dataSync()));
    for (const [n, v] of one.store.vars) rank.store.get(n).assign(v);
    for (const [n, v] of one.optimizer.slots) rank.optimizer.slots.get(n)?.assign(v);
  }
  const missing = c.oneSided ? batches.filter((b) => !share(b).modalities.includes('CT') && b.modalities.includes('CT')).length : 0;
  const counts = world.allreduce(Float64Array.of(missing), 'sum');
  if (world.rank === 0) process.stdout.write(`${JSON.stringify({ case: name, ranks: world.size, steps: batches.length, metrics, weights, moments, ...(c.oneSided ? { stepsWithAModalityMissingOnARank: counts[0] } : {}) })}\n`);
  one.dispose();
  rank.dispose();
}
} catch (e) {
  process.stderr.write(`rank ${world.rank}: ${(e as Error).stack}\n`);
  process.exitCode = 1;
}
