// One traced training step, rebuilt as a TensorFlow graph and run in a session.
//
// The trace (trace.ts) is the step's dataflow: ops with their attributes, the values uploaded from JavaScript, and the
// tensors that were alive before it (parameters, optimizer slots, queues: the state). Rebuilt through the C API,
//   - the step's inputs (crops, labels, learning rate, ...) and the state become placeholders,
//   - every other uploaded value becomes a constant,
//   - every op becomes a graph node with the same type and attributes,
// and one TF_SessionRun replaces thousands of eager dispatches. TensorFlow's graph optimizer (grappler) prunes,
// folds and fuses it, and the executor runs independent ops side by side on the inter-op pool. The state stays in
// TensorFlow between steps; it is copied back to the tfjs tensors only when asked (checkpoint, export, an eager step).
import { type LibTensorflow, type Output, libtensorflow, listInputs, newTensor, protoFields, readTensor, threadConfig } from './libtensorflow.js';
import type { CreatedTensor, Trace, TracedOp } from './trace.js';

/** A value fed to the graph: its TF_DataType, shape and bytes (C order). */
export interface HostTensor { dtype: number; shape: number[]; bytes: Uint8Array }

export interface StepSignature {
  /** Input name -> the tensor id it had in the traced step. */
  inputs: Map<string, number>;
  /** State slot -> tensor id before the step. */
  stateIn: Map<string, number>;
  /** State slot -> tensor id after the step (only slots the step replaced). */
  stateOut: Map<string, number>;
  /** Values read back after the step (metrics), by tensor id. */
  fetch: number[];
  /** dtype and shape of the state tensors (they were made before the trace). */
  stateMeta: Map<number, { dtype: number; shape: number[] }>;
}

export interface AttrTypes { STRING: number; INT: number; FLOAT: number; BOOL: number; TYPE: number; SHAPE: number }

export class GraphStep {
  private readonly l: LibTensorflow;
  private readonly graph: unknown;
  private readonly session: unknown;
  private readonly inputOrder: Array<{ kind: 'input' | 'state'; name: string; out: Output }> = [];
  private readonly outputOrder: Array<{ kind: 'fetch' | 'state'; name: string; out: Output }> = [];
  /** Graph nodes, for the record (`medssl info`-style reports and tests). */
  readonly nodes: number;
  /** Set `profile` to have the next run traced: its node timings land in `lastProfile` (see `nodeTimes`). */
  profile = false;
  lastProfile: NodeTime[] | null = null;

  constructor(pkg: string, trace: Trace, sig: StepSignature, attrTypes: AttrTypes, threads: { intraOp: number; interOp: number }) {
    const l = (this.l = libtensorflow(pkg));
    const f = l.f;
    this.graph = f.TF_NewGraph();
    const outputs = new Map<number, Output>();
    const byId = new Map<number, string>();
    for (const [name, id] of sig.inputs) byId.set(id, `input:${name}`);
    for (const [name, id] of sig.stateIn) byId.set(id, `state:${name}`);
    const produced = new Set(trace.ops.flatMap((o) => o.outputs));
    let n = 0;

    const placeholder = (name: string, t: { dtype: number; shape: number[] }): Output => {
      const d = f.TF_NewOperation(this.graph, 'Placeholder', `in${n++}`);
      f.TF_SetAttrType(d, 'dtype', t.dtype);
      f.TF_SetAttrShape(d, 'shape', t.shape.map(BigInt), t.shape.length);
      const oper = f.TF_FinishOperation(d, l.status);
      l.check(`placeholder ${name}`);
      return { oper, index: 0 };
    };
    const constant = (c: CreatedTensor): Output => {
      const d = f.TF_NewOperation(this.graph, 'Const', `c${n++}`);
      const t = newTensor(l, c.dtype, c.shape, c.bytes);
      f.TF_SetAttrTensor(d, 'value', t, l.status);
      f.TF_DeleteTensor(t);
      l.check('constant value');
      f.TF_SetAttrType(d, 'dtype', c.dtype);
      const oper = f.TF_FinishOperation(d, l.status);
      l.check('constant');
      return { oper, index: 0 };
    };
    // Shapes and dtypes of inputs and state, as the trace saw them.
    const meta = new Map<number, { dtype: number; shape: number[] }>();
    for (const [id, c] of trace.created) meta.set(id, c);
    const valueOf = (id: number, shape?: { dtype: number; shape: number[] }): Output => {
      let out = outputs.get(id);
      if (out) return out;
      const role = byId.get(id);
      if (role) {
        const m = meta.get(id) ?? shape;
        if (!m) throw new Error(`no shape for ${role}`);
        out = placeholder(role, m);
        const [kind, name] = [role.slice(0, role.indexOf(':')), role.slice(role.indexOf(':') + 1)] as ['input' | 'state', string];
        this.inputOrder.push({ kind, name, out });
      } else if (trace.created.has(id)) {
        out = constant(trace.created.get(id) as CreatedTensor);
      } else if (!produced.has(id)) {
        throw new UntraceableStep(`the step reads a tensor (id ${id}) that is neither state, an input nor made in the step`);
      } else throw new Error(`tensor ${id} is used before the op that makes it`);
      outputs.set(id, out);
      return out;
    };

    const lists: OpArgCache = new Map();
    const stateMeta = sig.stateMeta;
    for (const [id, m] of stateMeta) meta.set(id, m);
    for (const op of trace.ops) {
      const oper = addNode(l, this.graph, op, `n${n++}`, (id) => valueOf(id, stateMeta?.get(id)), lists, attrTypes);
      op.outputs.forEach((id, index) => outputs.set(id, { oper, index }));
    }
    this.nodes = n;

    for (const id of sig.fetch) this.outputOrder.push({ kind: 'fetch', name: String(id), out: valueOf(id) });
    for (const [name, id] of sig.stateOut) this.outputOrder.push({ kind: 'state', name, out: valueOf(id) });

    const opts = f.TF_NewSessionOptions();
    const config = threadConfig(threads.intraOp, threads.interOp);
    f.TF_SetConfig(opts, config, config.byteLength, l.status);
    l.check('session config');
    this.session = f.TF_NewSession(this.graph, opts, l.status);
    f.TF_DeleteSessionOptions(opts);
    l.check('session');
  }

  /** The state slots the graph reads, and its input names. */
  get needs(): { inputs: string[]; state: string[] } {
    return {
      inputs: this.inputOrder.filter((i) => i.kind === 'input').map((i) => i.name),
      state: this.inputOrder.filter((i) => i.kind === 'state').map((i) => i.name),
    };
  }

  /** The state slots the step replaces. */
  get replaces(): string[] {
    return this.outputOrder.filter((o) => o.kind === 'state').map((o) => o.name);
  }

  /**
   * Runs the step. `state` maps slot -> TF_Tensor (owned by the caller; replaced slots are deleted and set to the
   * new tensors). Returns the fetched values in `fetch` order.
   */
  run(inputs: Map<string, HostTensor>, state: Map<string, unknown>): HostTensor[] {
    const f = this.l.f;
    const fed: unknown[] = [];
    const made: unknown[] = [];
    for (const i of this.inputOrder) {
      if (i.kind === 'input') {
        const v = inputs.get(i.name);
        if (!v) throw new Error(`graph step: no value for input ${i.name}`);
        const t = newTensor(this.l, v.dtype, v.shape, v.bytes);
        made.push(t);
        fed.push(t);
      } else {
        const t = state.get(i.name);
        if (!t) throw new Error(`graph step: no state for ${i.name}`);
        fed.push(t);
      }
    }
    const k = this.l.koffi;
    const outs = k.alloc('TF_Tensor *', this.outputOrder.length);
    // RunOptions.trace_level (field 1) = FULL_TRACE (3): the run fills RunMetadata.step_stats.
    const traced = this.profile ? { options: f.TF_NewBufferFromString(Uint8Array.of(0x08, 3), 2), metadata: f.TF_NewBuffer() } : null;
    try {
      f.TF_SessionRun(this.session, traced?.options ?? null, this.inputOrder.map((i) => i.out), fed, fed.length,
        this.outputOrder.map((o) => o.out), outs, this.outputOrder.length, null, 0, traced?.metadata ?? null, this.l.status);
      this.l.check('graph step');
      if (traced) {
        const b = k.decode(traced.metadata, 'TF_Buffer') as { data: unknown; length: number | bigint };
        this.lastProfile = nodeTimes(new Uint8Array(k.view(b.data, Number(b.length))).slice());
      }
    } finally {
      for (const t of made) f.TF_DeleteTensor(t);
      if (traced) {
        f.TF_DeleteBuffer(traced.options);
        f.TF_DeleteBuffer(traced.metadata);
      }
    }
    const results = k.decode(outs, 'TF_Tensor *', this.outputOrder.length) as unknown[];
    k.free(outs);
    const fetched: HostTensor[] = [];
    const replaced = new Set<unknown>();
    this.outputOrder.forEach((o, i) => {
      if (o.kind === 'fetch') {
        fetched.push(readTensor(this.l, results[i]));
        f.TF_DeleteTensor(results[i]);
      } else {
        replaced.add(state.get(o.name));
        state.set(o.name, results[i]);
      }
    });
    const live = new Set(state.values());
    for (const old of replaced) if (old && !live.has(old)) f.TF_DeleteTensor(old);
    return fetched;
  }

  dispose(): void {
    const f = this.l.f;
    f.TF_CloseSession(this.session, this.l.status);
    f.TF_DeleteSession(this.session, this.l.status);
    f.TF_DeleteGraph(this.graph);
  }
}

/** One executed node of a traced run: its op type as the executor ran it (after grappler's rewrites), its device, and its wall time. */
export interface NodeTime { name: string; op: string; device: string; micros: number }

/**
 * The node timings of a serialized RunMetadata (tensorflow/core/protobuf/config.proto): step_stats = 1 ->
 * StepStats.dev_stats = 1 -> DeviceStepStats { device = 1, node_stats = 2 } -> NodeExecStats { node_name = 1,
 * all_end_rel_micros = 5, timeline_label = 8 ("name = Op(inputs)") }.
 */
export function nodeTimes(metadata: Uint8Array): NodeTime[] {
  const text = (v: number | Uint8Array) => (v instanceof Uint8Array ? new TextDecoder().decode(v) : '');
  const out: NodeTime[] = [];
  for (const [f1, stepStats] of protoFields(metadata)) {
    if (f1 !== 1 || !(stepStats instanceof Uint8Array)) continue;
    for (const [f2, dev] of protoFields(stepStats)) {
      if (f2 !== 1 || !(dev instanceof Uint8Array)) continue;
      let device = '';
      for (const [f3, v] of protoFields(dev)) {
        if (f3 === 1) device = text(v);
        if (f3 !== 2 || !(v instanceof Uint8Array)) continue;
        const node: NodeTime = { name: '', op: '', device, micros: 0 };
        for (const [f4, w] of protoFields(v)) {
          if (f4 === 1) node.name = text(w);
          if (f4 === 5 && typeof w === 'number') node.micros = w;
          if (f4 === 8) node.op = /= ([\w:]+)\(/.exec(text(w))?.[1] ?? text(w);
        }
        out.push(node);
      }
    }
  }
  return out;
}

export type OpArgCache = Map<string, Array<{ number?: string; typeList?: string } | null>>;

/** Adds one traced op to `graph` as node `name`, its inputs given by `valueOf`; returns the operation. */
export function addNode(l: LibTensorflow, graph: unknown, op: TracedOp, name: string, valueOf: (id: number) => Output, lists: OpArgCache, attrTypes: AttrTypes): unknown {
  const f = l.f;
  const args = listInputs(l, graph, op.type, lists);
  const d = f.TF_NewOperation(graph, op.type, name);
  let next = 0;
  for (const arg of args) {
    if (!arg) {
      f.TF_AddInput(d, valueOf(op.inputs[next]));
      next++;
      continue;
    }
    // A list input: its length is an attribute (number_attr), the length of a type list, or what is left.
    const attr = op.attrs.find((a) => a.name === (arg.number ?? arg.typeList));
    const len = arg.number ? Number(attr?.value) : Array.isArray(attr?.value) ? attr.value.length : op.inputs.length - next - (args.length - 1 - args.indexOf(arg));
    const items = op.inputs.slice(next, next + len).map(valueOf);
    f.TF_AddInputList(d, items, items.length);
    next += len;
  }
  if (next !== op.inputs.length) throw new Error(`${op.type}: ${op.inputs.length} inputs traced, its OpDef takes ${next}`);
  for (const a of op.attrs) setAttr(l, d, a.name, a.type, a.value, attrTypes);
  const oper = f.TF_FinishOperation(d, l.status);
  l.check(`graph node ${op.type}`);
  return oper;
}

/** The step cannot be run as a graph (it reads a value from outside, or reads values back midway): stay eager. */
export class UntraceableStep extends Error {}

function setAttr(l: LibTensorflow, d: unknown, name: string, type: number, value: unknown, T: AttrTypes): void {
  const f = l.f;
  const list = Array.isArray(value);
  switch (type) {
    case T.STRING: {
      const b = Buffer.from(String(value));
      f.TF_SetAttrString(d, name, b, b.length);
      return;
    }
    case T.INT:
      if (list) f.TF_SetAttrIntList(d, name, (value as number[]).map(BigInt), (value as number[]).length);
      else f.TF_SetAttrInt(d, name, BigInt(value as number));
      return;
    case T.FLOAT:
      if (list) f.TF_SetAttrFloatList(d, name, value as number[], (value as number[]).length);
      else f.TF_SetAttrFloat(d, name, value as number);
      return;
    case T.BOOL:
      if (list) f.TF_SetAttrBoolList(d, name, (value as boolean[]).map((v) => (v ? 1 : 0)), (value as boolean[]).length);
      else f.TF_SetAttrBool(d, name, value ? 1 : 0);
      return;
    case T.TYPE:
      if (list) f.TF_SetAttrTypeList(d, name, value as number[], (value as number[]).length);
      else f.TF_SetAttrType(d, name, value as number);
      return;
    case T.SHAPE:
      f.TF_SetAttrShape(d, name, (value as number[]).map(BigInt), (value as number[]).length);
      return;
    default:
      throw new Error(`attribute ${name}: unsupported type ${type}`);
  }
}
