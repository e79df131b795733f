// One network, its optimizer and queues, and the training step for each objective. The RxJS stage (train.ts)
// drives it; checkpoint.ts saves and restores it.
//
// The step is a functional forward pass over named tf.Variables differentiated with tf.variableGrads: crops of the
// same resolution are stacked and go through the encoder together (as SwAV's multi-crop wrapper does, so each
// resolution has its own batch statistics), the projection head and prototypes see all crops at once, and
// the only value read back from the device is one small vector of metrics per step.
//
// On the native backends the step runs as a TensorFlow graph (graph/): the first time a step of a given structure
// comes, it runs eagerly once while what it asks of TensorFlow is recorded, its effect is rolled back, and the record
// is rebuilt as a graph that runs in a session for that step and every later one. Same ops, same attributes, one session run instead of ~3,000 eager dispatches. The step's per-step values
// (crops, labels, group rows, learning rate, lambda, Adam's step) are named inputs; everything it updates
// (parameters, optimizer slots, queues) is state, which stays in TensorFlow until `store`, `optimizer` or `queues`
// is read. MEDSSL_GRAPH=0 keeps every step eager.
import type { NamedTensorMap, Scalar, Tensor, Tensor1D, Tensor2D, Tensor4D, Variable } from '@tensorflow/tfjs';
import { backendInfo, tf } from '../../pipeline/tensorflow.js';
import type { Config } from '../../schemas/config.js';
import type { Batch } from '../../schemas/records.js';
import { MedsslError } from '../../pipeline/failures.js';
import type { BnObservation } from './batchnorm.js';
import { addClassifierParams, addProjectionParams, addPrototypes, classify, normalizePrototypes, project, prototypeName } from './heads.js';
import { ntXentLoss } from './ntxent-loss.js';
import { Optimizer } from './optimizers.js';
import { ParamStore } from './params.js';
import { EmbeddingQueue } from './queue.js';
import { addEncoderParams, encode, type EncoderSpec, encoderSpec, updateMovingStats } from './resnet.js';
import { lambdaAt, learningRate } from './schedule.js';
import { sigmoidCrossEntropy } from './supervised-loss.js';
import { assignedCodes, swavLoss } from './swav-loss.js';
import { type Capture, GraphSteps, type StateSlot } from './graph/engine.js';
import type { HostTensor } from './graph/graph-step.js';
import { DT } from './graph/libtensorflow.js';
import type { Communicator } from '../../pipeline/mpi.js';
import { allEqual, distributedCodes, gatherRows } from './distributed.js';
import { ntXentLossSharded } from './ntxent-loss.js';

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

/** What the ranks agreed on before a data-parallel step. */
interface StepAgreement {
  /** The step's groups, the same on every rank; a group this rank has no rows of has size 0. */
  groups: Group[];
  /** Rows of each group over all ranks. */
  groupRows: number[];
  /** Rows of the global batch. */
  rows: number;
  /** Labelled rows over all ranks. */
  labelled: number;
}

export class Trainer {
  private readonly params: ParamStore;
  private readonly opt: Optimizer;
  private readonly embeddingQueues = new Map<string, EmbeddingQueue>();
  readonly spec: EncoderSpec;
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
    if ((t.objective === 'supervised' || t.objective === 'hybrid') && numLabels < 1) {
      throw new RangeError(`objective ${t.objective} needs labelled batches (numLabels >= 1)`);
    }
    this.world = opts.world ?? null;
    const native = backendInfo.backend === 'tensorflow' || backendInfo.backend === 'tensorflow-gpu';
    // A data-parallel step calls MPI between TensorFlow ops, which a graph cannot hold: it runs eagerly.
    this.graphs = native && process.env.MEDSSL_GRAPH !== '0' && !this.world ? new GraphSteps(backendInfo.backend === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node', backendInfo.threads) : null;
    this.params = new ParamStore(config.seed);
    const store = this.params;
    this.spec = encoderSpec(config.model, channels, config.augment.global.size);
    addEncoderParams(store, this.spec);
    if (t.objective !== 'supervised') {
      addProjectionParams(store, { featureDim: this.spec.featureDim, hidden: config.model.projection.hidden, out: config.model.projection.out });
    }
    if (t.objective === 'swav' || t.objective === 'hybrid') {
      if (!this.perModalityPrototypes) addPrototypes(store, prototypeName(null), config.model.projection.out, config.model.prototypes);
    }
    if (numLabels > 0 && (t.objective === 'supervised' || t.objective === 'hybrid')) addClassifierParams(store, this.spec.featureDim, numLabels);
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

  private get usesSwav(): boolean {
    return this.config.train.objective === 'swav' || this.config.train.objective === 'hybrid';
  }

  /** One optimizer step on `batch`. `totalSteps` sets the cosine schedule's length. */
  async trainStep(batch: Batch, totalSteps: number): Promise<StepResult> {
    if (this.world) return this.parallelStep(batch, totalSteps, this.world);
    const t = this.config.train;
    const step = this.position.step;
    const lr = learningRate(t.optimizer, step, totalSteps);
    const lambda = t.objective === 'hybrid' ? lambdaAt(t, step) : undefined;
    const views = this.viewsFor(batch);
    const groups = modalityGroups(batch, t.clustering);
    // State the step needs exists before it runs (a new modality's prototypes, queues): never created inside a step.
    this.addGroupPrototypes(groups);
    const queues = new Map(groups.map((g) => [g, this.usesSwav ? this.queueFor(g, batch.epoch) : null]));
    const frozen = step < t.freezePrototypesSteps;
    const inputs = this.stepInputs(batch, views, groups, lr, lambda);
    // What fixes the step's graph: everything that changes which ops run or their shapes.
    const key = [
      t.objective, frozen, batch.ids.length, batch.views.map((v) => `${v.kind}${v.size}x${v.channels}`).join(','),
      groups.map((g) => `${g.modality}:${g.size}:${g.rows ? 'rows' : 'all'}:${queues.get(g)?.full ? 'queue' : queues.get(g) ? 'filling' : '-'}`).join(','),
      batch.labels && batch.numLabels > 0 ? `labels${batch.numLabels}` : '', batch.labelMask ? 'mask' : '',
    ].join('|');

    let values: Float32Array;
    const graphs = this.graphs;
    const run = (capture?: Capture) => this.eagerStep(batch, views, groups, queues, frozen, inputs, capture);
    // A structure met for the first time is recorded from an eager run of the step, whose result is then rolled back:
    // every step of a structure runs the same way (as a graph, or eagerly if it cannot be recorded), so a run resumed
    // from a checkpoint repeats an uninterrupted one bit for bit.
    // Batches that mix modalities under uni-modal clustering split into groups whose sizes change from batch to batch:
    // each would need a graph of its own, recorded and compiled once and rarely met again, so they run eagerly.
    const graphable = groups.every((g) => g.rows === null);
    if (graphs && graphable && !graphs.ready(key) && !graphs.eagerOnly(key)) {
      graphs.sync(this.stateSlots());
      graphs.compile(key, this.stateSlots(), run, () => this.stateSlots());
    }
    if (graphable && graphs?.ready(key)) {
      values = graphs.run(key, inputs, this.stateSlots());
    } else {
      graphs?.sync(this.stateSlots());
      const metrics = run().metrics;
      values = (await metrics.data()) as Float32Array;
      metrics.dispose();
      graphs?.countEager();
    }
    // What a step changes outside the tensors, the same whether it ran eagerly or as a graph.
    this.opt.iterations++;
    for (const q of new Set(queues.values())) q?.advance(batch.ids.length);
    this.position = { step: step + 1, last: { epoch: batch.epoch, step: batch.step } };
    return this.result(values, lr, lambda);
  }

  /**
   * One data-parallel step: this rank's share of the global batch, with batch statistics, Sinkhorn's sums, SimCLR's
   * candidates and the supervised denominator taken over every rank, and the gradients averaged over the ranks in one
   * fused allreduce before the optimizer (so LARS sees the averaged gradients). Every rank ends with the same weights.
   */
  private async parallelStep(batch: Batch, totalSteps: number, world: Communicator): Promise<StepResult> {
    const t = this.config.train;
    if (!this.stateShared) this.shareState(world);
    const agreed = this.agree(batch, world);
    const step = this.position.step;
    const lr = learningRate(t.optimizer, step, totalSteps);
    const lambda = t.objective === 'hybrid' ? lambdaAt(t, step) : undefined;
    const views = this.viewsFor(batch);
    const groups = agreed.groups;
    this.addGroupPrototypes(groups);
    const queues = new Map(groups.map((g) => [g, this.usesSwav ? this.queueFor(g, batch.epoch) : null]));
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
    if (!this.usesSwav || !this.perModalityPrototypes) return;
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

  /** The step on tfjs tensors: forward, loss, gradients, update. Returns the metrics vector (not yet read). */
  private eagerStep(batch: Batch, views: number[], groups: Group[], queues: Map<Group, EmbeddingQueue | null>, frozen: boolean, inputs: Map<string, HostTensor>, capture?: Capture, dp?: { world: Communicator; agreed: StepAgreement }): { metrics: Tensor1D } {
    const t = this.config.train;
    const store = this.params;
    const b = batch.ids.length;
    const observed: BnObservation[] = [];
    const kept: { scores: Array<{ group: Group; assigned: Tensor2D[]; queue?: Tensor2D[]; z: Tensor2D[]; codes?: Tensor2D[] }>; parts: Tensor[] } = { scores: [], parts: [] };
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
      // Encoder per resolution, then features back in view order.
      const featsByView: Tensor2D[] = new Array(views.length);
      for (const g of stacked) {
        const f = encode(store, this.spec, g.x, mode);
        g.views.forEach((v, i) => { featsByView[v] = tf.slice(f, [i * b, 0], [b, f.shape[1]]); });
      }
      const ordered = views.map((_, i) => featsByView[i]);
      let sup: Scalar | null = null;
      if (t.objective === 'supervised' || t.objective === 'hybrid') {
        const globals = views.map((v, i) => ({ v, i })).filter((x) => batch.views[x.v].kind === 'global').map((x) => ordered[x.i]);
        if (labels && mask) {
          const logits = classify(store, tf.concat(globals, 0) as Tensor2D);
          const y = tf.tile(labels, [globals.length, 1]) as Tensor2D;
          const m = tf.tile(mask, [globals.length]) as Tensor1D;
          // Data-parallel: divided by every rank's labelled rows / ranks, so that the mean over ranks is the global mean.
          sup = dp ? sigmoidCrossEntropy(logits, y, m, Math.max(globals.length * dp.agreed.labelled, 1) / dp.world.size) : sigmoidCrossEntropy(logits, y, m);
        } else {
          // A batch without labels adds no supervised term (the hybrid objective's unlabelled part).
          sup = tf.scalar(0);
        }
        if (t.objective === 'supervised') {
          kept.parts = [tf.keep(tf.clone(sup))];
          return sup;
        }
      }
      const z = project(store, tf.concat(ordered, 0) as Tensor2D, mode);
      const zByView = views.map((_, i) => tf.slice(z, [i * b, 0], [b, z.shape[1]]) as Tensor2D);
      if (t.objective === 'simclr') {
        const loss = dp
          ? ntXentLossSharded(zByView[0], zByView[1], t.temperature, (zv) => gatherRows(zv, dp.world), dp.world.rank)
          : ntXentLoss(zByView[0], zByView[1], t.temperature);
        kept.parts = [tf.keep(tf.clone(loss))];
        return loss;
      }
      let ssl: Tensor = tf.scalar(0);
      if (dp) {
        ssl = this.parallelSwav(zByView, groups, queues, dp.world, input, kept);
      } else for (const g of groups) {
        const c = store.get(prototypeName(this.perModalityPrototypes ? g.modality : null)) as Tensor as Tensor2D;
        const rows = g.rows ? input(`rows:${g.modality}`) : null;
        const zg = zByView.map((zv) => (rows ? tf.gather(zv, rows) : zv) as Tensor2D);
        const cropScores = zg.map((zv) => tf.matMul(zv, c) as Tensor2D);
        const queue = queues.get(g);
        const queueScores = queue?.full ? queue.scores(c) : undefined;
        const l = swavLoss(cropScores, { temperature: t.temperature, epsilon: t.epsilon, iterations: t.sinkhornIterations, cropsForAssign: t.cropsForAssign, queueScores });
        ssl = tf.add(ssl, tf.mul(l, g.size / b));
        kept.scores.push({
          group: g,
          assigned: t.cropsForAssign.map((a) => tf.keep(tf.clone(cropScores[a]))),
          queue: queueScores?.map((q) => tf.keep(tf.clone(q))),
          z: t.cropsForAssign.map((a) => tf.keep(tf.clone(zg[a]))),
        });
      }
      const total = sup ? tf.add(sup, tf.mul(ssl, input('lambda'))) : ssl;
      kept.parts = [tf.keep(tf.clone(total)), tf.keep(tf.clone(ssl)), ...(sup ? [tf.keep(tf.clone(sup))] : [])];
      return total as Scalar;
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
        const local = this.parallelMetrics(kept, groups);
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
        ? tf.tensor1d(this.parallelResult(reduced as Float32Array, kept.parts.length, dp.agreed, dp.world.size))
        : tf.tidy(() => tf.concat([...kept.parts.map((p) => tf.reshape(p, [1])), ...this.codeMetrics(kept.scores)]) as Tensor1D);
      // The queue gets this batch's embeddings after they were used (SwAV fills it after the loss).
      for (const s of kept.scores) {
        queues.get(s.group)?.push(s.z);
      }
    } finally {
      tf.dispose([...(mask && !inputs.has('mask') ? [mask] : []), ...kept.parts]);
      for (const s of kept.scores) tf.dispose([...s.assigned, ...(s.queue ?? []), ...s.z, ...(s.codes ?? [])]);
      for (const o of observed) tf.dispose([o.mean, o.variance]);
    }
    capture?.(made, metrics);
    tf.dispose([...made.values()]);
    return { metrics };
  }

  /**
   * Data-parallel SwAV: each group's scores on this rank (none where it has no rows of the group), the codes of every
   * (group, assigned crop) from one distributed Sinkhorn-Knopp (the sums over all ranks' rows, and the rank's own queue
   * rows), then the swapped-prediction loss over this rank's rows.
   */
  private parallelSwav(zByView: Tensor2D[], groups: Group[], queues: Map<Group, EmbeddingQueue | null>, world: Communicator, input: (name: string) => Tensor, kept: { scores: Array<{ group: Group; assigned: Tensor2D[]; z: Tensor2D[]; codes?: Tensor2D[] }> }): Tensor {
    const t = this.config.train;
    const b = zByView[0].shape[0];
    const assign = t.cropsForAssign;
    const per = groups.map((g) => {
      if (g.size === 0) return null;
      const c = this.params.get(prototypeName(this.perModalityPrototypes ? g.modality : null)) as Tensor as Tensor2D;
      const rows = g.rows ? input(`rows:${g.modality}`) : null;
      const zg = zByView.map((zv) => (rows ? tf.gather(zv, rows) : zv) as Tensor2D);
      const cropScores = zg.map((zv) => tf.matMul(zv, c) as Tensor2D);
      const queue = queues.get(g);
      return { g, zg, cropScores, queueScores: queue?.full ? queue.scores(c) : undefined };
    });
    const inputs = per.flatMap((p) => assign.map((a, i) => (p ? (p.queueScores ? tf.concat([p.queueScores[i], p.cropScores[a]], 0) as Tensor2D : p.cropScores[a]) : null)));
    const codes = distributedCodes(inputs, this.config.model.prototypes, { epsilon: t.epsilon, iterations: t.sinkhornIterations }, world);
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
      kept.scores.push({
        group: p.g,
        assigned: assign.map((a) => tf.keep(tf.clone(p.cropScores[a]))),
        z: assign.map((a) => tf.keep(tf.clone(p.zg[a]))),
        codes: own.map((q) => tf.keep(tf.clone(q))),
      });
    });
    return ssl;
  }

  /**
   * Data-parallel: this rank's share of the step's metrics, as sums the fused allreduce adds up: the loss parts (means
   * over this rank's rows; averaged over ranks), the code entropy summed over rows, and per group how many of this
   * rank's assigned crops each prototype won.
   */
  private parallelMetrics(kept: { scores: Array<{ group: Group; assigned: Tensor2D[]; codes?: Tensor2D[] }>; parts: Tensor[] }, groups: Group[]): Float32Array {
    const parts = kept.parts.map((p) => (p.dataSync() as Float32Array)[0]);
    if (!this.usesSwav) return Float32Array.from(parts);
    const k = this.config.model.prototypes;
    const out = new Float32Array(parts.length + 1 + groups.length * k);
    out.set(parts);
    let entropy = 0;
    for (const s of kept.scores) {
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

  /** The metrics vector of one process (loss parts, code entropy, prototype usage) from the ranks' summed shares. */
  private parallelResult(sums: Float32Array, nParts: number, agreed: StepAgreement, ranks: number): Float32Array {
    const parts = Array.from(sums.subarray(0, nParts), (v) => v / ranks);
    if (!this.usesSwav) return Float32Array.from(parts);
    const k = this.config.model.prototypes;
    const crops = this.config.train.cropsForAssign.length;
    const entropy = sums[nParts] / agreed.rows;
    let usage = 0;
    agreed.groupRows.forEach((rows, gi) => {
      let used = 0;
      for (let j = 0; j < k; j++) if (sums[nParts + 1 + gi * k + j] > 0) used++;
      usage += (rows / agreed.rows) * (used / Math.min(k, crops * rows));
    });
    return Float32Array.from([...parts, entropy, usage]);
  }

  private result(v: Float32Array | Int32Array | Uint8Array, lr: number, lambda: number | undefined): StepResult {
    const o = this.config.train.objective;
    if (o === 'supervised') return { loss: v[0], supervisedLoss: v[0], lr };
    if (o === 'simclr') return { loss: v[0], lr };
    if (o === 'swav') return { loss: v[0], lr, codeEntropy: v[2], prototypeUsage: v[3] };
    return { loss: v[0], sslLoss: v[1], supervisedLoss: v[2], lambda, lr, codeEntropy: v[3], prototypeUsage: v[4] };
  }

  /** Mean code entropy (nats) and prototype usage over the groups, weighted by group size. */
  private codeMetrics(scores: Array<{ group: Group; assigned: Tensor2D[]; queue?: Tensor2D[] }>): Tensor[] {
    if (!this.usesSwav) return [];
    const t = this.config.train;
    const k = this.config.model.prototypes;
    const total = scores.reduce((a, s) => a + s.group.size, 0);
    let entropy: Tensor = tf.scalar(0);
    let usage: Tensor = tf.scalar(0);
    for (const s of scores) {
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

  /** The crops the objective looks at: all for SwAV, the two global crops for SimCLR, the globals for supervised. */
  private viewsFor(batch: Batch): number[] {
    const o = this.config.train.objective;
    const all = batch.views.map((_, i) => i);
    if (o === 'swav' || o === 'hybrid') {
      if (all.length < 2) throw new RangeError(`objective ${o} needs at least 2 crops per sample, got ${all.length}`);
      return all;
    }
    const globals = all.filter((i) => batch.views[i].kind === 'global');
    if (o === 'simclr') {
      if (globals.length < 2) throw new RangeError('objective simclr needs two global crops per sample');
      return globals.slice(0, 2);
    }
    return globals.length ? globals : [0];
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

/** Samples clustered together: the whole batch (multi-modal) or one modality's rows (uni-modal). */
export interface Group {
  /** null: all modalities together. */
  modality: string | null;
  /** Row indices into the batch; null means every row. */
  rows: Int32Array | null;
  size: number;
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
