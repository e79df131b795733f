// One network, its optimizer and queues, and the training step. The RxJS stage (train.ts) drives it; checkpoint.ts
// saves and restores it.
//
// The step is a functional forward pass over named tf.Variables differentiated with tf.variableGrads: crops of the
// same resolution are stacked and go through the encoder together (as SwAV's multi-crop wrapper does, so each
// resolution has its own batch statistics). What follows the encoder is the objective's (objectives/: the heads it
// trains, the crops it looks at, its loss, the names of its metrics); the trainer asks it rather than testing
// `train.objective`. The only value read back from the device is one small vector of metrics per step, decoded by
// the objective's metric names.
//
// On the native backends the step runs as a TensorFlow graph (graph/): the first time a step of a given structure
// comes, it runs eagerly once while what it asks of TensorFlow is recorded, its effect is rolled back, and the record
// is rebuilt as a graph that runs in a session for that step and every later one. Same ops, same attributes, one session run instead of ~3,000 eager dispatches. The step's per-step values
// (crops, labels, group rows, learning rate, lambda, Adam's step) are named inputs; everything it updates
// (parameters, optimizer slots, queues) is state, which stays in TensorFlow until `store`, `optimizer` or `queues`
// is read. MEDSSL_GRAPH=0 keeps every step eager.
import type { NamedTensorMap, Scalar, Tensor, Tensor1D, Tensor2D, Tensor4D, Variable } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import type { Config } from '../../schemas/config.js';
import type { Batch } from '../../schemas/records.js';
import { MedsslError } from '../../pipeline/core/failures.js';
import type { BnObservation } from './batchnorm.js';
import { addClassifierParams, addProjectionParams, addPrototypes, normalizePrototypes, prototypeName } from './heads.js';
import { type Group, type Kept, namedMetrics, type Objective, objectiveFor, type StepAgreement } from './objectives/index.js';
import { Optimizer } from './optimizers.js';
import { ParamStore } from './params.js';
import { EmbeddingQueue } from './queue.js';
import { addEncoderParams, encode, type EncoderSpec, encoderSpec, updateMovingStats } from './resnet.js';
import { learningRate } from './schedule.js';
import { type Capture, GraphSteps, nativeGraphSteps, type StateSlot } from './graph/engine.js';
import type { HostTensor } from './graph/graph-step.js';
import { DT } from './graph/libtensorflow.js';
import type { Communicator } from '../../pipeline/core/mpi.js';
import { allEqual } from './distributed.js';

export type { Group } from './objectives/index.js';

/** What one step reports (numbers already read back from the device). */
export interface StepResult {
  loss: number;
  sslLoss?: number;
  supervisedLoss?: number;
  lambda?: number;
  lr: number;
  codeEntropy?: number;
  prototypeUsage?: number;
}

/** Where training stands: the part of a checkpoint that is not tensors. */
export interface TrainerPosition {
  /** Optimizer steps done. */
  step: number;
  /** The last batch trained on, as (epoch, batch.step); null before the first. */
  last: { epoch: number; step: number } | null;
}

export interface TrainerOptions {
  /**
   * Data-parallel training (stages/train/README.md): this trainer is one rank of `world`, its batches are its share of
   * each global batch, and every step averages gradients, batch statistics and metrics over the ranks. Steps then run
   * eagerly (their collectives are host calls). Without it: one process, as always.
   */
  world?: Communicator;
}

export class Trainer {
  private readonly params: ParamStore;
  private readonly opt: Optimizer;
  private readonly embeddingQueues = new Map<string, EmbeddingQueue>();
  readonly spec: EncoderSpec;
  /** What the step trains for (train.objective). */
  readonly objective: Objective;
  position: TrainerPosition = { step: 0, last: null };
  /** Steps run as graphs (null: every step eager). */
  private readonly graphs: GraphSteps | null;
  /** Data-parallel: this rank's job (null: one process). */
  readonly world: Communicator | null;
  /** Data-parallel, uni-modal: the modalities any rank has met, in the same order on every rank. */
  private readonly modalities: string[] = [];
  private stateShared = false;

  constructor(readonly config: Config, readonly channels: number, readonly numLabels: number, opts: TrainerOptions = {}) {
    const t = config.train;
    const objective = objectiveFor(config);
    this.objective = objective;
    if (objective.labelled && numLabels < 1) {
      throw new RangeError(`objective ${objective.name} needs labelled batches (numLabels >= 1)`);
    }
    this.world = opts.world ?? null;
    // A data-parallel step calls MPI between TensorFlow ops, which a graph cannot hold: it runs eagerly.
    this.graphs = this.world ? null : nativeGraphSteps();
    this.params = new ParamStore(config.seed);
    const store = this.params;
    this.spec = encoderSpec(config.model, channels, config.augment.global.size);
    addEncoderParams(store, this.spec);
    const heads = objective.heads;
    if (heads.projection) {
      addProjectionParams(store, { featureDim: this.spec.featureDim, hidden: config.model.projection.hidden, out: config.model.projection.out });
    }
    // Per-modality prototypes are made on first sight of their modality (addGroupPrototypes).
    if (heads.prototypes && !this.perModalityPrototypes) addPrototypes(store, prototypeName(null), config.model.projection.out, config.model.prototypes);
    if (numLabels > 0 && heads.classifier) addClassifierParams(store, this.spec.featureDim, numLabels);
    this.opt = new Optimizer(t.optimizer);
    this.opt.prepare(store.vars, store.trainable);
  }

  // Reading the state from outside brings it back from the graph session first (and the session re-reads it on its
  // next step, so changes made through these are seen).
  /** The named parameters and moving statistics. */
  get store(): ParamStore {
    this.graphs?.sync(this.stateSlots());
    return this.params;
  }

  get optimizer(): Optimizer {
    this.graphs?.sync(this.stateSlots());
    return this.opt;
  }

  get queues(): Map<string, EmbeddingQueue> {
    this.graphs?.sync(this.stateSlots());
    return this.embeddingQueues;
  }

  /** Graph steps compiled so far, and steps run as graphs (for the record). */
  get graphStats(): { compiled: number; graphSteps: number; eagerSteps: number; notes: string[] } {
    const off = this.world ? 'graph steps off: data-parallel steps run eagerly (their MPI calls are host calls between ops)' : 'graph steps off';
    return this.graphs?.stats ?? { compiled: 0, graphSteps: 0, eagerSteps: this.position.step, notes: [off] };
  }

  /** Ranks training together (1: one process). */
  get worldSize(): number {
    return this.world?.size ?? 1;
  }

  /** The graph engine, for profiling (null when steps run eagerly). */
  get graphEngine(): GraphSteps | null {
    return this.graphs;
  }

  /** Everything a step reads and may replace, by name: parameters, optimizer slots, queue blocks. */
  private stateSlots(): Map<string, StateSlot> {
    const slots = new Map<string, StateSlot>();
    for (const [name, v] of this.params.vars) slots.set(`param:${name}`, { get: () => v, set: (t) => v.assign(t) });
    for (const [name, v] of this.opt.slots) slots.set(`slot:${name}`, { get: () => v, set: (t) => v.assign(t) });
    for (const [key, q] of this.embeddingQueues) {
      q.blocks.forEach((_, i) => slots.set(`queue:${key}:${i}`, { get: () => q.blocks[i], set: (t) => { q.blocks[i].dispose(); q.blocks[i] = tf.keep(t.clone()) as Tensor2D; } }));
    }
    return slots;
  }

  private get perModalityPrototypes(): boolean {
    return this.config.train.clustering === 'uni-modal' && this.config.train.prototypesPerModality;
  }

  /** One optimizer step on `batch`. `totalSteps` sets the cosine schedule's length. */
  async trainStep(batch: Batch, totalSteps: number): Promise<StepResult> {
    if (this.world) return this.parallelStep(batch, totalSteps, this.world);
    const t = this.config.train;
    const step = this.position.step;
    const lr = learningRate(t.optimizer, step, totalSteps);
    const lambda = this.objective.lambda?.(step);
    const views = this.objective.views(batch);
    const groups = modalityGroups(batch, t.clustering);
    // State the step needs exists before it runs (a new modality's prototypes, queues): never created inside a step.
    this.addGroupPrototypes(groups);
    const queues = new Map(groups.map((g) => [g, this.objective.queues ? this.queueFor(g, batch.epoch) : null]));
    const frozen = step < t.freezePrototypesSteps;
    const inputs = this.stepInputs(batch, views, groups, lr, lambda);
    // What fixes the step's graph: everything that changes which ops run or their shapes.
    const key = [
      this.objective.name, frozen, batch.ids.length, batch.views.map((v) => `${v.kind}${v.size}x${v.channels}`).join(','),
      groups.map((g) => `${g.modality}:${g.size}:${g.rows ? 'rows' : 'all'}:${queues.get(g)?.full ? 'queue' : queues.get(g) ? 'filling' : '-'}`).join(','),
      batch.labels && batch.numLabels > 0 ? `labels${batch.numLabels}` : '', batch.labelMask ? 'mask' : '',
    ].join('|');

    const run = (capture?: Capture) => this.eagerStep(batch, views, groups, queues, frozen, inputs, capture);
    // A structure met for the first time is recorded from an eager run of the step, whose result is then rolled back:
    // every step of a structure runs the same way (as a graph, or eagerly if it cannot be recorded), so a run resumed
    // from a checkpoint repeats an uninterrupted one bit for bit.
    // Batches that mix modalities under uni-modal clustering split into groups whose sizes change from batch to batch:
    // each would need a graph of its own, recorded and compiled once and rarely met again, so they run eagerly.
    const graphable = groups.every((g) => g.rows === null);
    let values = this.graphs?.step(key, () => this.stateSlots(), inputs, run, graphable) ?? null;
    if (!values) {
      const metrics = run().metrics;
      values = (await metrics.data()) as Float32Array;
      metrics.dispose();
    }
    // What a step changes outside the tensors, the same whether it ran eagerly or as a graph.
    this.opt.iterations++;
    for (const q of new Set(queues.values())) q?.advance(batch.ids.length);
    this.position = { step: step + 1, last: { epoch: batch.epoch, step: batch.step } };
    return this.result(values, lr, lambda);
  }

  /**
   * One data-parallel step: this rank's share of the global batch, through the same objective (which takes Sinkhorn's
   * sums, SimCLR's candidates and the supervised denominator over every rank when given `dp`), batch statistics over
   * every rank, and the gradients averaged over the ranks in one fused allreduce before the optimizer (so LARS sees the
   * averaged gradients) with the objective's metric shares. Every rank ends with the same weights.
   */
  private async parallelStep(batch: Batch, totalSteps: number, world: Communicator): Promise<StepResult> {
    const t = this.config.train;
    if (!this.stateShared) this.shareState(world);
    const agreed = this.agree(batch, world);
    const step = this.position.step;
    const lr = learningRate(t.optimizer, step, totalSteps);
    const lambda = this.objective.lambda?.(step);
    const views = this.objective.views(batch);
    const groups = agreed.groups;
    this.addGroupPrototypes(groups);
    const queues = new Map(groups.map((g) => [g, this.objective.queues ? this.queueFor(g, batch.epoch) : null]));
    const frozen = step < t.freezePrototypesSteps;
    const inputs = this.stepInputs(batch, views, groups.filter((g) => g.size > 0), lr, lambda);
    const metrics = this.eagerStep(batch, views, groups, queues, frozen, inputs, undefined, { world, agreed }).metrics;
    const values = (await metrics.data()) as Float32Array;
    metrics.dispose();
    this.opt.iterations++;
    // Queues are per rank: a rank's queue holds its own embeddings (SwAV's queue is per process too).
    for (const [g, q] of queues) if (q && g.size > 0) q.advance(batch.ids.length);
    this.position = { step: step + 1, last: { epoch: batch.epoch, step: batch.step } };
    return this.result(values, lr, lambda);
  }

  /**
   * Parameters and optimizer state from rank 0 to every rank (they already agree when built from the seed or read
   * from the same checkpoint; this makes sure of it), and a check that every rank stands at the same position.
   */
  private shareState(world: Communicator): void {
    const tensors = [...this.params.vars.values(), ...this.opt.slots.values()];
    const total = tensors.reduce((a, v) => a + v.size, 0);
    const buf = new Float32Array(total);
    if (world.rank === 0) {
      let off = 0;
      for (const v of tensors) {
        buf.set(v.dataSync() as Float32Array, off);
        off += v.size;
      }
    }
    world.broadcast(buf);
    if (world.rank !== 0) {
      let off = 0;
      for (const v of tensors) {
        v.assign(tf.tensor(buf.subarray(off, off + v.size), v.shape, 'float32'));
        off += v.size;
      }
    }
    const where = Float64Array.of(this.opt.iterations, this.position.step, this.position.last?.epoch ?? -1, this.position.last?.step ?? -1);
    const root = where.slice();
    world.broadcast(root);
    if (root.some((x, i) => x !== where[i])) {
      throw new MedsslError('invalid-value', 'checkpoint', `rank ${world.rank} resumes at step ${where[1]}, rank 0 at step ${root[1]}: the ranks read different checkpoints`);
    }
    this.stateShared = true;
  }

  /**
   * Before a data-parallel step, one small allreduce: every rank has a batch of the same size at the same (epoch,
   * step), how many rows are labelled in all, and (uni-modal clustering) how many rows of each modality. A modality no
   * rank had named before is first announced to all (allgather), so that every rank makes the same groups in the same
   * order, with zero rows where it has none: collectives then always pair up.
   */
  private agree(batch: Batch | null, world: Communicator): StepAgreement {
    const t = this.config.train;
    const uni = t.clustering === 'uni-modal';
    const local = batch ? modalityGroups(batch, t.clustering) : [];
    const b = batch?.ids.length ?? 0;
    const fresh = uni ? local.filter((g) => !this.modalities.includes(g.modality as string)).map((g) => g.modality as string) : [];
    const labelled = batch?.labels && batch.numLabels > 0 ? (batch.labelMask ? batch.labelMask.reduce((a, m) => a + (m ? 1 : 0), 0) : b) : 0;
    const has = batch ? 1 : 0, epoch = batch?.epoch ?? 0, step = batch?.step ?? 0;
    const head = [has, has, epoch, epoch * epoch, step, step * step, b, b * b, labelled, fresh.length];
    const counts = this.modalities.map((m) => local.find((g) => g.modality === m)?.size ?? 0);
    const sums = world.allreduce(Float64Array.from([...head, ...counts]), 'sum', 'agree');
    if (sums[9] > 0) {
      // New modality names: everyone learns them, then the rows are counted again.
      const names = world.allgather(new TextEncoder().encode(JSON.stringify(fresh))).map((bytes) => JSON.parse(new TextDecoder().decode(bytes)) as string[]);
      this.modalities.push(...new Set(names.flat().filter((m) => !this.modalities.includes(m))));
      this.modalities.sort();
      return this.agree(batch, world);
    }
    const n = world.size;
    if (sums[0] !== n && sums[0] !== 0) {
      throw new MedsslError('internal', 'data-parallel', `${n - sums[0]} of ${n} ranks ran out of batches while the others had one (rank ${world.rank} ${batch ? `is at epoch ${epoch} step ${step}` : 'has none'}): the ranks' shares of the data differ`);
    }
    if (sums[0] === 0) return { groups: [], groupRows: [], rows: 0, labelled: 0 };
    if (!allEqual(sums[2], sums[3], n) || !allEqual(sums[4], sums[5], n)) {
      throw new MedsslError('internal', 'data-parallel', `the ranks are at different batches (rank ${world.rank}: epoch ${epoch} step ${step}): the ranks' shares of the data differ`);
    }
    if (!allEqual(sums[6], sums[7], n)) throw new MedsslError('internal', 'data-parallel', `the ranks' batches differ in size (rank ${world.rank}: ${b} rows): the ranks' shares of the data differ`);
    if (!uni) return { groups: local, groupRows: [sums[6]], rows: sums[6], labelled: sums[8] };
    const groups: Group[] = [];
    const groupRows: number[] = [];
    this.modalities.forEach((m, i) => {
      const global = sums[head.length + i];
      if (global === 0) return;
      const mine = local.find((g) => g.modality === m);
      groups.push(mine ?? { modality: m, rows: new Int32Array(0), size: 0 });
      groupRows.push(global);
    });
    return { groups, groupRows, rows: sums[6], labelled: sums[8] };
  }

  /**
   * Data-parallel: this rank's batches have ended. Every rank calls it once its input completes; if another rank still
   * had a batch, every rank stops with an error instead of waiting for the missing one.
   */
  endOfData(): void {
    if (this.world) this.agree(null, this.world);
  }

  /** A new modality's prototypes (per-modality clustering), made before any step reads them. */
  private addGroupPrototypes(groups: Group[]): void {
    if (!this.objective.heads.prototypes || !this.perModalityPrototypes) return;
    for (const g of groups) {
      const name = prototypeName(g.modality);
      if (this.params.has(name)) continue;
      addPrototypes(this.params, name, this.config.model.projection.out, this.config.model.prototypes);
      this.opt.prepare(this.params.vars, [name]);
    }
  }

  /** The step's per-step values, by name: its only inputs besides the state. */
  private stepInputs(batch: Batch, views: number[], groups: Group[], lr: number, lambda: number | undefined): Map<string, HostTensor> {
    const b = batch.ids.length;
    const inputs = new Map<string, HostTensor>();
    const put = (name: string, dtype: number, shape: number[], data: Float32Array | Int32Array) =>
      inputs.set(name, { dtype, shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    for (const g of stackByResolution(batch, views)) put(`crops${g.size}`, DT.FLOAT, g.shape, g.data);
    if (batch.labels && batch.numLabels > 0) {
      put('labels', DT.FLOAT, [b, batch.numLabels], batch.labels);
      if (batch.labelMask) put('mask', DT.FLOAT, [b], Float32Array.from(batch.labelMask));
    }
    for (const g of groups) if (g.rows) put(`rows:${g.modality}`, DT.INT32, [g.size], g.rows);
    put('lr', DT.FLOAT, [], Float32Array.of(lr));
    if (lambda !== undefined) put('lambda', DT.FLOAT, [], Float32Array.of(lambda));
    // Adam's bias corrections use the step number of the update being made.
    put('iteration', DT.FLOAT, [], Float32Array.of(this.opt.iterations + 1));
    return inputs;
  }

  /**
   * The step on tfjs tensors: encoder, the objective's loss, gradients, update. Returns the metrics vector in the
   * objective's metric order (not yet read).
   */
  private eagerStep(batch: Batch, views: number[], groups: Group[], queues: Map<Group, EmbeddingQueue | null>, frozen: boolean, inputs: Map<string, HostTensor>, capture?: Capture, dp?: { world: Communicator; agreed: StepAgreement }): { metrics: Tensor1D } {
    const t = this.config.train;
    const store = this.params;
    const b = batch.ids.length;
    const observed: BnObservation[] = [];
    // What the objective keeps past the gradient's scope: its loss parts and SwAV's assignments (disposed below).
    const kept: Kept = { parts: {}, assignments: [] };
    // Data-parallel with synchronised batch norm: statistics over every rank's rows.
    const mode = { training: true, observed, ...(dp && t.syncBatchNorm ? { sync: dp.world } : {}) };
    // Every per-step value enters as one of these tensors, so a graph of this step knows them as its inputs. They are
    // made here, outside the gradient's scope (which would dispose what is made inside it).
    const made = new Map<string, Tensor>();
    for (const [name, v] of inputs) {
      const data = v.dtype === DT.INT32 ? new Int32Array(v.bytes.buffer, v.bytes.byteOffset, v.bytes.byteLength / 4) : new Float32Array(v.bytes.buffer, v.bytes.byteOffset, v.bytes.byteLength / 4);
      made.set(name, tf.tensor(data, v.shape, v.dtype === DT.INT32 ? 'int32' : 'float32'));
    }
    const input = (name: string): Tensor => made.get(name) as Tensor;
    const stacked = stackedViews(batch, views).map((g) => ({ ...g, x: input(`crops${g.size}`) as Tensor4D }));
    const labels = inputs.has('labels') ? input('labels') as Tensor2D : null;
    const mask = inputs.has('mask') ? input('mask') as Tensor1D : labels ? tf.ones([b]) as Tensor1D : null;
    const names = [...store.trainable].filter((n) => this.wanted(n, groups) && !(frozen && n.startsWith('prototypes')));
    const varList = names.map((n) => store.get(n));

    const lossFn = (): Scalar => {
      // Encoder per resolution, then features back in view order; the rest is the objective's.
      const featsByView: Tensor2D[] = new Array(views.length);
      for (const g of stacked) {
        const f = encode(store, this.spec, g.x, mode);
        g.views.forEach((v, i) => { featsByView[v] = tf.slice(f, [i * b, 0], [b, f.shape[1]]); });
      }
      const features = views.map((_, i) => featsByView[i]);
      return this.objective.loss({ store, batch, views, features, mode, labels, mask, groups, queues, input, ...(dp ? { dp } : {}) }, kept);
    };

    let metrics: Tensor1D;
    try {
      const { value, grads } = tf.variableGrads(lossFn, varList as Variable[]);
      value.dispose();
      // variableGrads keys gradients by the engine's variable names; the optimizer works with parameter names.
      let byParam: NamedTensorMap = {};
      names.forEach((n, i) => { const g = (grads as NamedTensorMap)[varList[i].name]; if (g) byParam[n] = g; });
      let reduced: Float32Array | null = null;
      if (dp) {
        // One fused allreduce: gradients, batch statistics (without synchronised batch norm) and the metrics' sums.
        const local = this.objective.rankShare(kept, groups);
        const fused = fuseStep(names, byParam, t.syncBatchNorm ? [] : observed, local, (n) => store.get(n).shape);
        dp.world.allreduce(fused.buffer, 'sum', 'step');
        byParam = fused.gradients(dp.world.size);
        if (!t.syncBatchNorm) fused.statistics(observed, dp.world.size);
        reduced = fused.metrics();
      }
      this.opt.apply(store.vars, byParam, input('lr') as Scalar, input('iteration') as Scalar);
      tf.dispose(grads);
      if (dp) tf.dispose(byParam);
      // Prototypes back onto the unit sphere after their update (untouched while frozen).
      normalizePrototypes(store, names.filter((n) => n.startsWith('prototypes')));
      updateMovingStats(store, observed);
      metrics = dp
        ? tf.tensor1d(this.objective.fromRankSums(reduced as Float32Array, dp.agreed, dp.world.size))
        : tf.tidy(() => tf.concat(this.objective.metricTensors(kept)) as Tensor1D);
      // The queue gets this batch's embeddings after they were used (SwAV fills it after the loss).
      for (const s of kept.assignments) {
        queues.get(s.group)?.push(s.z);
      }
    } finally {
      // One tensor may stand under two metric names: dispose each once.
      tf.dispose([...(mask && !inputs.has('mask') ? [mask] : []), ...new Set(Object.values(kept.parts))]);
      for (const s of kept.assignments) tf.dispose([...s.assigned, ...(s.queue ?? []), ...s.z, ...(s.codes ?? [])]);
      for (const o of observed) tf.dispose([o.mean, o.variance]);
    }
    capture?.(made, metrics);
    tf.dispose([...made.values()]);
    return { metrics };
  }

  /** The step's result from its metrics vector, read by the objective's metric names. */
  private result(v: Float32Array | Int32Array | Uint8Array, lr: number, lambda: number | undefined): StepResult {
    const m = namedMetrics(this.objective.metrics, v);
    const some = <K extends keyof StepResult>(key: K, value: StepResult[K]) => (value === undefined ? {} : { [key]: value });
    // Fields in a fixed order: metrics.jsonl's lines keep their key order whatever the objective.
    return {
      loss: m.loss as number, ...some('sslLoss', m.sslLoss), ...some('supervisedLoss', m.supervisedLoss), ...some('lambda', lambda),
      lr, ...some('codeEntropy', m.codeEntropy), ...some('prototypeUsage', m.prototypeUsage),
    };
  }

  private wanted(name: string, groups: Group[]): boolean {
    if (!name.startsWith('prototypes_')) return true;
    return groups.some((g) => prototypeName(g.modality) === name);
  }

  private queueFor(g: Group, epoch: number): EmbeddingQueue | null {
    const q = this.config.train.queue;
    if (q.length === 0 || epoch < q.startEpoch) return null;
    const key = g.modality ?? '*';
    let queue = this.embeddingQueues.get(key);
    if (!queue) {
      queue = new EmbeddingQueue(q.length, this.config.model.projection.out, this.config.train.cropsForAssign.length);
      this.embeddingQueues.set(key, queue);
    }
    return queue;
  }

  dispose(): void {
    this.graphs?.dispose();
    this.params.dispose();
    this.opt.dispose();
    for (const q of this.embeddingQueues.values()) q.dispose();
  }
}

/**
 * Clustering semantics. multi-modal: one equipartition over the whole batch, whatever modalities it mixes.
 * uni-modal: one equipartition per modality present in the batch (a modality-stratified batch has one), each over
 * that modality's rows only, against the shared prototypes or the modality's own set.
 */
export function modalityGroups(batch: Batch, clustering: 'multi-modal' | 'uni-modal'): Group[] {
  const b = batch.ids.length;
  if (clustering === 'multi-modal') return [{ modality: null, rows: null, size: b }];
  const byModality = new Map<string, number[]>();
  batch.modalities.forEach((m, i) => {
    const rows = byModality.get(m) ?? [];
    rows.push(i);
    byModality.set(m, rows);
  });
  return [...byModality.keys()].sort().map((m) => {
    const rows = byModality.get(m) as number[];
    return { modality: m, rows: rows.length === b ? null : Int32Array.from(rows), size: rows.length };
  });
}

/** The chosen views grouped by resolution (one group per distinct crop size), in view order. */
export function stackedViews(batch: Batch, views: number[]): Array<{ size: number; views: number[]; shape: [number, number, number, number] }> {
  const bySize = new Map<number, number[]>();
  views.forEach((v, i) => {
    const s = batch.views[v].size;
    bySize.set(s, [...(bySize.get(s) ?? []), i]);
  });
  const b = batch.ids.length;
  return [...bySize.entries()].map(([size, idx]) => ({ size, views: idx, shape: [idx.length * b, size, size, batch.views[views[idx[0]]].channels] }));
}

/** Stacks the chosen views by resolution: one [n * B, size, size, C] array per distinct crop size. */
export function stackByResolution(batch: Batch, views: number[]): Array<{ size: number; views: number[]; shape: [number, number, number, number]; data: Float32Array }> {
  const b = batch.ids.length;
  return stackedViews(batch, views).map((g) => {
    const per = b * g.size * g.size * g.shape[3];
    const data = new Float32Array(per * g.views.length);
    g.views.forEach((i, j) => data.set(batch.views[views[i]].data, j * per));
    return { ...g, data };
  });
}

/**
 * The buffer of a data-parallel step's one allreduce: every gradient (zeros where this rank has none, with a flag
 * per parameter so that a parameter no rank has a gradient for is left alone, as in one process), the observed batch
 * statistics when batch norm is not synchronised, then the metrics' sums.
 */
export function fuseStep(names: string[], grads: NamedTensorMap, observed: BnObservation[], metrics: Float32Array, shapeOf: (name: string) => number[]) {
  const shapes = names.map(shapeOf);
  const sizes = shapes.map((s) => s.reduce((a, d) => a * d, 1));
  const gradLen = sizes.reduce((a, n) => a + n, 0);
  const statLen = observed.reduce((a, o) => a + o.mean.size + o.variance.size, 0);
  const buffer = new Float32Array(gradLen + names.length + statLen + metrics.length);
  let off = 0;
  names.forEach((n, i) => {
    const g = grads[n];
    if (g) {
      buffer.set(g.dataSync() as Float32Array, off);
      buffer[gradLen + i] = 1;
    }
    off += sizes[i];
  });
  off = gradLen + names.length;
  for (const o of observed) {
    buffer.set(o.mean.dataSync() as Float32Array, off);
    off += o.mean.size;
    buffer.set(o.variance.dataSync() as Float32Array, off);
    off += o.variance.size;
  }
  buffer.set(metrics, off);
  return {
    buffer,
    /** The gradients averaged over `ranks`, for the parameters some rank had one for. */
    gradients(ranks: number): NamedTensorMap {
      const out: NamedTensorMap = {};
      let o = 0;
      names.forEach((n, i) => {
        if (buffer[gradLen + i] > 0) {
          const part = buffer.subarray(o, o + sizes[i]);
          for (let j = 0; j < part.length; j++) part[j] /= ranks;
          out[n] = tf.tensor(part, shapes[i], 'float32');
        }
        o += sizes[i];
      });
      return out;
    },
    /** Replaces each observation by its mean over ranks. */
    statistics(obs: BnObservation[], ranks: number): void {
      let o = gradLen + names.length;
      for (const ob of obs) {
        const take = (t: Tensor1D) => {
          const part = Float32Array.from(buffer.subarray(o, o + t.size), (v) => v / ranks);
          o += t.size;
          t.dispose();
          return tf.keep(tf.tensor1d(part));
        };
        ob.mean = take(ob.mean);
        ob.variance = take(ob.variance);
      }
    },
    metrics(): Float32Array {
      return buffer.slice(gradLen + names.length + statLen);
    },
  };
}
