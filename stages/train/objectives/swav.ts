// SwAV (Caron et al. 2020): the swapped-prediction loss (../swav-loss.ts) over every crop's projection scored against
// the prototypes, with codes from Sinkhorn-Knopp (../sinkhorn.ts; ../distributed.ts over all ranks), per modality
// group, each group's loss weighted by its share of the batch. Reports the code entropy and prototype usage.
import type { Scalar, Tensor, Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../../pipeline/core/tensorflow.js';
import type { Config } from '../../../schemas/config.js';
import type { Batch } from '../../../schemas/records.js';
import { distributedCodes } from '../distributed.js';
import { project, prototypeName } from '../heads.js';
import { assignedCodes, swavLoss } from '../swav-loss.js';
import { type Assignment, type Group, type Kept, type MetricName, type Objective, type ObjectiveStep, partTensors, partValues, type StepAgreement } from './objective.js';

const METRICS: readonly MetricName[] = ['loss', 'codeEntropy', 'prototypeUsage'];

export function swav(config: Config): Objective {
  return {
    name: 'swav',
    heads: { projection: true, prototypes: true, classifier: false },
    queues: true,
    labelled: false,
    metrics: METRICS,
    views: (batch) => everyCrop(batch, 'swav'),
    loss(s, kept) {
      const ssl = swavTerm(config, s, kept);
      kept.parts = { loss: tf.keep(tf.clone(ssl)) };
      return ssl as Scalar;
    },
    metricTensors: (kept) => [...partTensors(['loss'], kept), ...codeMetrics(config, kept.assignments)],
    rankShare: (kept, groups) => codeShare(config, partValues(['loss'], kept), kept.assignments, groups),
    fromRankSums: (sums, agreed, ranks) => codeMetricsFromSums(config, sums, 1, agreed, ranks),
  };
}

/** Every crop (SwAV's multi-crop: codes from the assigned crops, predicted from all the others). */
export function everyCrop(batch: Batch, objective: string): number[] {
  const all = batch.views.map((_, i) => i);
  if (all.length < 2) throw new RangeError(`objective ${objective} needs at least 2 crops per sample, got ${all.length}`);
  return all;
}

/** The prototype set a group is scored against: the shared one, or its modality's own. */
function prototypesOf(config: Config, g: Group): string {
  const t = config.train;
  return prototypeName(t.clustering === 'uni-modal' && t.prototypesPerModality ? g.modality : null);
}

/**
 * The SwAV loss of the step: projections of every crop, then per group the swapped-prediction loss (with its queue's
 * scores once the queue is full), weighted by the group's share of the batch. Each group's assigned crops go to
 * `kept.assignments`.
 */
export function swavTerm(config: Config, s: ObjectiveStep, kept: Kept): Tensor {
  const t = config.train;
  const b = s.batch.ids.length;
  const z = project(s.store, tf.concat(s.features, 0) as Tensor2D, s.mode);
  const zByView = s.views.map((_, i) => tf.slice(z, [i * b, 0], [b, z.shape[1]]) as Tensor2D);
  if (s.dp) return parallelSwav(config, s, zByView, kept);
  let ssl: Tensor = tf.scalar(0);
  for (const g of s.groups) {
    const c = s.store.get(prototypesOf(config, g)) as Tensor as Tensor2D;
    const rows = g.rows ? s.input(`rows:${g.modality}`) : null;
    const zg = zByView.map((zv) => (rows ? tf.gather(zv, rows) : zv) as Tensor2D);
    const cropScores = zg.map((zv) => tf.matMul(zv, c) as Tensor2D);
    const queue = s.queues.get(g);
    const queueScores = queue?.full ? queue.scores(c) : undefined;
    const l = swavLoss(cropScores, { temperature: t.temperature, epsilon: t.epsilon, iterations: t.sinkhornIterations, cropsForAssign: t.cropsForAssign, queueScores });
    ssl = tf.add(ssl, tf.mul(l, g.size / b));
    kept.assignments.push({
      group: g,
      assigned: t.cropsForAssign.map((a) => tf.keep(tf.clone(cropScores[a]))),
      queue: queueScores?.map((q) => tf.keep(tf.clone(q))),
      z: t.cropsForAssign.map((a) => tf.keep(tf.clone(zg[a]))),
    });
  }
  return ssl;
}

/**
 * Data-parallel: each group's scores on this rank (none where it has no rows of the group), the codes of every
 * (group, assigned crop) from one distributed Sinkhorn-Knopp (the sums over all ranks' rows, and the rank's own queue
 * rows), then the swapped-prediction loss over this rank's rows.
 */
function parallelSwav(config: Config, s: ObjectiveStep, zByView: Tensor2D[], kept: Kept): Tensor {
  const t = config.train;
  const world = s.dp!.world;
  const b = zByView[0].shape[0];
  const assign = t.cropsForAssign;
  const per = s.groups.map((g) => {
    if (g.size === 0) return null;
    const c = s.store.get(prototypesOf(config, g)) as Tensor as Tensor2D;
    const rows = g.rows ? s.input(`rows:${g.modality}`) : null;
    const zg = zByView.map((zv) => (rows ? tf.gather(zv, rows) : zv) as Tensor2D);
    const cropScores = zg.map((zv) => tf.matMul(zv, c) as Tensor2D);
    const queue = s.queues.get(g);
    return { g, zg, cropScores, queueScores: queue?.full ? queue.scores(c) : undefined };
  });
  const inputs = per.flatMap((p) => assign.map((a, i) => (p ? (p.queueScores ? tf.concat([p.queueScores[i], p.cropScores[a]], 0) as Tensor2D : p.cropScores[a]) : null)));
  const codes = distributedCodes(inputs, config.model.prototypes, { epsilon: t.epsilon, iterations: t.sinkhornIterations }, world);
  let ssl: Tensor = tf.scalar(0);
  per.forEach((p, gi) => {
    if (!p) return;
    // With a queue, the batch's rows are the last ones.
    const own = assign.map((_, i) => {
      const q = codes[gi * assign.length + i] as Tensor2D;
      return (p.queueScores ? tf.slice(q, [q.shape[0] - p.g.size, 0], [p.g.size, q.shape[1]]) : q) as Tensor2D;
    });
    const l = swavLoss(p.cropScores, { temperature: t.temperature, epsilon: t.epsilon, iterations: t.sinkhornIterations, cropsForAssign: assign, codes: own });
    ssl = tf.add(ssl, tf.mul(l, p.g.size / b));
    kept.assignments.push({
      group: p.g,
      assigned: assign.map((a) => tf.keep(tf.clone(p.cropScores[a]))),
      z: assign.map((a) => tf.keep(tf.clone(p.zg[a]))),
      codes: own.map((q) => tf.keep(tf.clone(q))),
    });
  });
  return ssl;
}

/** Mean code entropy (nats) and prototype usage over the groups, weighted by group size: two [1] tensors. */
export function codeMetrics(config: Config, assignments: Assignment[]): Tensor[] {
  const t = config.train;
  const k = config.model.prototypes;
  const total = assignments.reduce((a, s) => a + s.group.size, 0);
  let entropy: Tensor = tf.scalar(0);
  let usage: Tensor = tf.scalar(0);
  for (const s of assignments) {
    const w = s.group.size / total;
    s.assigned.forEach((sc, i) => {
      const q = assignedCodes(sc, s.queue?.[i], { epsilon: t.epsilon, iterations: t.sinkhornIterations });
      const h = tf.neg(tf.mean(tf.sum(tf.mul(q, tf.log(tf.maximum(q, 1e-30))), 1)));
      entropy = tf.add(entropy, tf.mul(h, w / s.assigned.length));
    });
    // A prototype is used when it is the best match of at least one assigned crop of the batch.
    const winners = tf.oneHot(tf.argMax(tf.concat(s.assigned, 0), 1), k);
    const used = tf.sum(tf.cast(tf.greater(tf.max(winners, 0), 0), 'float32'));
    const rows = s.assigned.length * s.group.size;
    usage = tf.add(usage, tf.mul(tf.div(used, Math.min(k, rows)), w));
  }
  return [tf.reshape(entropy, [1]), tf.reshape(usage, [1])];
}

/**
 * Data-parallel: this rank's share of the metrics, as sums the fused allreduce adds up: the loss parts (means over
 * this rank's rows; averaged over ranks), the code entropy summed over rows, and per group how many of this rank's
 * assigned crops each prototype won.
 */
export function codeShare(config: Config, parts: number[], assignments: Assignment[], groups: Group[]): Float32Array {
  const k = config.model.prototypes;
  const out = new Float32Array(parts.length + 1 + groups.length * k);
  out.set(parts);
  let entropy = 0;
  for (const s of assignments) {
    const codes = s.codes as Tensor2D[];
    const h = tf.tidy(() => tf.div(tf.addN(codes.map((q) => tf.neg(tf.sum(tf.mul(q, tf.log(tf.maximum(q, 1e-30))))))), codes.length));
    entropy += (h.dataSync() as Float32Array)[0];
    h.dispose();
    const won = tf.tidy(() => tf.sum(tf.oneHot(tf.argMax(tf.concat(s.assigned, 0), 1), k), 0));
    out.set(won.dataSync() as Float32Array, parts.length + 1 + groups.indexOf(s.group) * k);
    won.dispose();
  }
  out[parts.length] = entropy;
  return out;
}

/** Data-parallel: the loss parts (mean over ranks), code entropy and prototype usage from the ranks' summed shares. */
export function codeMetricsFromSums(config: Config, sums: Float32Array, nParts: number, agreed: StepAgreement, ranks: number): Float32Array {
  const parts = Array.from(sums.subarray(0, nParts), (v) => v / ranks);
  const k = config.model.prototypes;
  const crops = config.train.cropsForAssign.length;
  const entropy = sums[nParts] / agreed.rows;
  let usage = 0;
  agreed.groupRows.forEach((rows, gi) => {
    let used = 0;
    for (let j = 0; j < k; j++) if (sums[nParts + 1 + gi * k + j] > 0) used++;
    usage += (rows / agreed.rows) * (used / Math.min(k, crops * rows));
  });
  return Float32Array.from([...parts, entropy, usage]);
}
