// When a training step runs as a graph, and where its state lives in the meantime.
//
// A step's structure (objective, crop shapes, groups, queue use, frozen prototypes: the trainer's key) fixes its
// graph. The first step of a structure runs eagerly while being recorded (trace.ts), its effect on the state is rolled
// back, and the record is compiled (graph-step.ts): that step and every later one of the structure run in the session.
// (The trainer creates all state before a step runs, so a recorded step only replaces it.) Between graph steps the state (parameters, slots, queues) stays in TensorFlow tensors owned here; it is
// copied back into the tfjs tensors when anything outside the graph needs them (`sync`), and read again from them by
// the next graph step. A step that cannot be recorded faithfully (it reads a value back midway, or reads a tensor that
// is neither state nor an input) stays eager, with a note.
import type { Tensor, Tensor1D } from '@tensorflow/tfjs';
import { backendInfo, tf } from '../../../pipeline/core/tensorflow.js';
import { GraphStep, type HostTensor, type NodeTime, UntraceableStep } from './graph-step.js';
import { DT, libtensorflow, newTensor, readTensor } from './libtensorflow.js';
import { type NodeBackend, NotSymbolic, symbolicTrace, tensorId, traceStep } from './trace.js';

/** One piece of trainer state: read it, or replace it with a (copied) tensor. */
export interface StateSlot {
  get(): Tensor;
  set(t: Tensor): void;
}

/** Lets the eager step hand over its input tensors and metrics before it disposes them. */
export type Capture = (inputs: Map<string, Tensor>, metrics: Tensor1D) => void;

const DTYPES: Record<string, number> = { float32: DT.FLOAT, int32: DT.INT32, bool: DT.BOOL };

export class GraphSteps {
  private readonly graphs = new Map<string, GraphStep | 'eager'>();
  private readonly seen = new Map<string, number>();
  /** Slot -> TF_Tensor, while the session holds the state. */
  private readonly state = new Map<string, unknown>();
  /** Slots whose tfjs tensor is older than the session's. */
  private readonly stale = new Set<string>();
  readonly stats = { compiled: 0, graphSteps: 0, eagerSteps: 0, notes: [] as string[] };
  /** While set, graph steps run traced and leave their node timings in `lastProfile` (bench/train-profile.ts). */
  profiling = false;
  lastProfile: NodeTime[] | null = null;

  constructor(private readonly pkg: string, private readonly threads: { intraOp: number; interOp: number }) {}

  ready(key: string): boolean {
    return this.graphs.get(key) instanceof GraphStep;
  }

  /** Whether steps of this structure could not be recorded and run eagerly. */
  eagerOnly(key: string): boolean {
    return this.graphs.get(key) === 'eager';
  }

  /**
   * The step of structure `key`: recorded and compiled the first time (`run` is the eager step, given a Capture),
   * then run as a graph, returning its metrics. Null when it must run eagerly (it could not be recorded, or the caller
   * says it is not `graphable`): the session's state has then been copied back, and the caller runs `run()` itself.
   */
  step(key: string, slots: () => Map<string, StateSlot>, inputs: Map<string, HostTensor>, run: (capture: Capture) => { metrics: Tensor1D }, graphable = true): Float32Array | null {
    if (graphable && !this.ready(key) && !this.eagerOnly(key)) {
      this.sync(slots());
      this.compile(key, slots(), run, slots);
    }
    if (graphable && this.ready(key)) return this.run(key, inputs, slots());
    this.sync(slots());
    this.stats.eagerSteps++;
    return null;
  }

  /**
   * Records the step (symbolically where it can, else by one eager run), compiles it, and rolls its effect on the
   * state back (the compiled graph then runs the step for real). A step that cannot be compiled is marked eager: its
   * structure then always runs eagerly.
   */
  compile(key: string, before: Map<string, StateSlot>, run: (capture: Capture) => { metrics: Tensor1D }, after: () => Map<string, StateSlot>): void {
    const backend = tf.backend() as unknown as NodeBackend;
    const stateIn = new Map<string, number>();
    const stateMeta = new Map<number, { dtype: number; shape: number[] }>();
    // Kept copies of the state as it was (a clone shares the data, so the binding's ids stay the same).
    const snapshot = new Map<string, Tensor>();
    for (const [name, slot] of before) {
      const t = tf.keep(slot.get().clone());
      snapshot.set(name, t);
      const id = tensorId(backend, t);
      stateIn.set(name, id);
      stateMeta.set(id, { dtype: DTYPES[t.dtype], shape: t.shape });
    }
    const inputs = new Map<string, number>();
    let fetch = -1;
    const capture: Capture = (made, metrics) => {
      for (const [name, t] of made) inputs.set(name, tensorId(backend, t));
      fetch = tensorId(backend, metrics);
    };
    const b = backend.binding as unknown as Record<string, number>;
    const attrTypes = { STRING: b.TF_ATTR_STRING, INT: b.TF_ATTR_INT, FLOAT: b.TF_ATTR_FLOAT, BOOL: b.TF_ATTR_BOOL, TYPE: b.TF_ATTR_TYPE, SHAPE: b.TF_ATTR_SHAPE };
    const rollBack = () => {
      const slots = after();
      for (const [name, t] of snapshot) slots.get(name)?.set(t);
    };
    try {
      // Recorded without computing it where shape inference allows (no activations held), else by running it.
      let recorded: ReturnType<typeof traceStep<{ metrics: Tensor1D }>>;
      try {
        recorded = symbolicTrace(backend, libtensorflow(this.pkg), attrTypes, stateMeta, () => run(capture));
      } catch (e) {
        if (!(e instanceof NotSymbolic)) throw e;
        this.stats.notes.push(`a step was recorded by running it (${e.message.split('\n')[0]})`);
        rollBack();
        inputs.clear();
        recorded = traceStep(backend, () => run(capture));
      }
      const { result, trace } = recorded;
      result.metrics.dispose();
      if (trace.readBack) throw new UntraceableStep('the step reads a value back before it ends');
      const stateOut = new Map<string, number>();
      for (const [name, slot] of after()) {
        const id = tensorId(backend, slot.get());
        if (id !== stateIn.get(name)) stateOut.set(name, id);
      }
      this.graphs.set(key, new GraphStep(this.pkg, trace, { inputs, stateIn, stateOut, fetch: [fetch], stateMeta }, attrTypes, this.threads));
      this.stats.compiled++;
    } catch (e) {
      this.graphs.set(key, 'eager');
      const note = `a step stays eager (${(e as Error).message.split('\n')[0]})`;
      if (process.env.MEDSSL_DEBUG === 'stack') process.stderr.write(`${(e as Error).stack}\n`);
      this.stats.notes.push(note);
      if (process.env.MEDSSL_DEBUG) process.stderr.write(`medssl: ${note}\n`);
    } finally {
      // Back to the state before the recorded run: the step itself has not happened yet.
      rollBack();
      for (const t of snapshot.values()) t.dispose();
    }
  }

  /** Runs a compiled step; returns its metrics. */
  run(key: string, inputs: Map<string, HostTensor>, slots: Map<string, StateSlot>): Float32Array {
    const step = this.graphs.get(key) as GraphStep;
    const l = libtensorflow(this.pkg);
    for (const name of step.needs.state) {
      if (this.state.has(name)) continue;
      const slot = slots.get(name);
      if (!slot) throw new Error(`graph step: no state slot ${name}`);
      const t = slot.get();
      const data = t.dataSync() as Float32Array | Int32Array | Uint8Array;
      this.state.set(name, newTensor(l, DTYPES[t.dtype], t.shape, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    }
    step.profile = this.profiling;
    const [metrics] = step.run(inputs, this.state);
    if (this.profiling) this.lastProfile = step.lastProfile;
    for (const name of step.replaces) this.stale.add(name);
    this.stats.graphSteps++;
    return new Float32Array(metrics.bytes.buffer, metrics.bytes.byteOffset, metrics.bytes.byteLength / 4);
  }

  /** Copies the session's newer state into the tfjs tensors, then lets go of it (the next graph step reads it again). */
  sync(slots: Map<string, StateSlot>): void {
    if (this.state.size === 0) return;
    const l = libtensorflow(this.pkg);
    for (const name of this.stale) {
      const slot = slots.get(name);
      const v = readTensor(l, this.state.get(name));
      if (!slot) continue;
      const data = v.dtype === DT.INT32 ? new Int32Array(v.bytes.buffer) : new Float32Array(v.bytes.buffer);
      const t = tf.tensor(data, v.shape, v.dtype === DT.INT32 ? 'int32' : 'float32');
      slot.set(t);
      t.dispose();
    }
    this.stale.clear();
    for (const t of new Set(this.state.values())) l.f.TF_DeleteTensor(t);
    this.state.clear();
  }

  dispose(): void {
    if (this.state.size) {
      const l = libtensorflow(this.pkg);
      for (const t of new Set(this.state.values())) l.f.TF_DeleteTensor(t);
      this.state.clear();
    }
    for (const g of this.graphs.values()) if (g instanceof GraphStep) g.dispose();
    this.graphs.clear();
  }
}

/** Graph steps on the native backends, unless MEDSSL_GRAPH=0; null elsewhere (every step eager). */
export function nativeGraphSteps(): GraphSteps | null {
  const native = backendInfo.backend === 'tensorflow' || backendInfo.backend === 'tensorflow-gpu';
  if (!native || process.env.MEDSSL_GRAPH === '0') return null;
  return new GraphSteps(backendInfo.backend === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node', backendInfo.threads);
}
