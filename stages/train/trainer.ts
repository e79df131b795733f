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

export class Trainer {
  private readonly params: ParamStore;
  private readonly opt: Optimizer;
  private readonly embeddingQueues = new Map<string, EmbeddingQueue>();
  readonly spec: EncoderSpec;
  position: TrainerPosition = { step: 0, last: null };
  /** Steps run as graphs (null: every step eager). */
  private readonly graphs: GraphSteps | null;

  constructor(readonly config: Config, readonly channels: number, readonly numLabels: number) {
    const t = config.train;
    if ((t.objective === 'supervised' || t.objective === 'hybrid') && numLabels < 1) {
      throw new RangeError(`objective ${t.objective} needs labelled batches (numLabels >= 1)`);
    }
    const native = backendInfo.backend === 'tensorflow' || backendInfo.backend === 'tensorflow-gpu';
    this.graphs = native && process.env.MEDSSL_GRAPH !== '0' ? new GraphSteps(backendInfo.backend === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node', backendInfo.threads) : null;
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
    return this.graphs?.stats ?? { compiled: 0, graphSteps: 0, eagerSteps: this.position.step, notes: ['graph steps off'] };
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
    const t = this.config.train;
    const step = this.position.step;
    const lr = learningRate(t.optimizer, step, totalSteps);
    const lambda = t.objective === 'hybrid' ? lambdaAt(t, step) : undefined;
    const views = this.viewsFor(batch);
    const groups = modalityGroups(batch, t.clustering);
    // State the step needs exists before it runs (a new modality's prototypes, queues): never created inside a step.
    if (this.usesSwav && this.perModalityPrototypes) {
      for (const g of groups) {
        const name = prototypeName(g.modality);
        if (this.params.has(name)) continue;
        addPrototypes(this.params, name, this.config.model.projection.out, this.config.model.prototypes);
        this.opt.prepare(this.params.vars, [name]);
      }
    }
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
  private eagerStep(batch: Batch, views: number[], groups: Group[], queues: Map<Group, EmbeddingQueue | null>, frozen: boolean, inputs: Map<string, HostTensor>, capture?: Capture): { metrics: Tensor1D } {
    const t = this.config.train;
    const store = this.params;
    const b = batch.ids.length;
    const observed: BnObservation[] = [];
    const kept: { scores: Array<{ group: Group; assigned: Tensor2D[]; queue?: Tensor2D[]; z: Tensor2D[] }>; parts: Tensor[] } = { scores: [], parts: [] };
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
        const f = encode(store, this.spec, g.x, { training: true, observed });
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
          sup = sigmoidCrossEntropy(logits, y, m);
        } else {
          // A batch without labels adds no supervised term (the hybrid objective's unlabelled part).
          sup = tf.scalar(0);
        }
        if (t.objective === 'supervised') {
          kept.parts = [tf.keep(tf.clone(sup))];
          return sup;
        }
      }
      const z = project(store, tf.concat(ordered, 0) as Tensor2D, { training: true, observed });
      const zByView = views.map((_, i) => tf.slice(z, [i * b, 0], [b, z.shape[1]]) as Tensor2D);
      if (t.objective === 'simclr') {
        const loss = ntXentLoss(zByView[0], zByView[1], t.temperature);
        kept.parts = [tf.keep(tf.clone(loss))];
        return loss;
      }
      let ssl: Tensor = tf.scalar(0);
      for (const g of groups) {
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
      const byParam: NamedTensorMap = {};
      names.forEach((n, i) => { const g = (grads as NamedTensorMap)[varList[i].name]; if (g) byParam[n] = g; });
      this.opt.apply(store.vars, byParam, input('lr') as Scalar, input('iteration') as Scalar);
      tf.dispose(grads);
      // Prototypes back onto the unit sphere after their update (untouched while frozen).
      normalizePrototypes(store, names.filter((n) => n.startsWith('prototypes')));
      updateMovingStats(store, observed);
      metrics = tf.tidy(() => tf.concat([...kept.parts.map((p) => tf.reshape(p, [1])), ...this.codeMetrics(kept.scores)]) as Tensor1D);
      // The queue gets this batch's embeddings after they were used (SwAV fills it after the loss).
      for (const s of kept.scores) {
        queues.get(s.group)?.push(s.z);
      }
    } finally {
      tf.dispose([...(mask && !inputs.has('mask') ? [mask] : []), ...kept.parts]);
      for (const s of kept.scores) tf.dispose([...s.assigned, ...(s.queue ?? []), ...s.z]);
      for (const o of observed) tf.dispose([o.mean, o.variance]);
    }
    capture?.(made, metrics);
    tf.dispose([...made.values()]);
    return { metrics };
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
