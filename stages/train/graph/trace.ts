// Records what one training step asks of TensorFlow, so that the same step can run as one graph.
//
// tfjs-node executes every kernel, the gradient's included, as a TensorFlow op through its binding
// (`executeOp(type, attrs, inputIds, numOutputs)`) and uploads JavaScript values with `createTensor`. While a trace is
// on, both calls are recorded: the list of ops with their attributes and the tensor ids that flow between them is the
// step's dataflow graph, gradients and optimizer update included. `symbolicTrace` records without computing (shape
// inference stands in for the kernels); `traceStep` records a step that runs as it always does, for steps that need
// values midway.
import type { Tensor } from '@tensorflow/tfjs';
import { type AttrTypes, type OpArgCache, addNode } from './graph-step.js';
import { type LibTensorflow, type Output } from './libtensorflow.js';

export interface TfeAttr { name: string; type: number; value: unknown }

export interface TracedOp {
  type: string;
  attrs: TfeAttr[];
  inputs: number[];
  outputs: number[];
}

export interface CreatedTensor { dtype: number; shape: number[]; bytes: Uint8Array }

export interface Trace {
  ops: TracedOp[];
  /** Values uploaded during the step, by tensor id (constants of the graph unless they are inputs). */
  created: Map<number, CreatedTensor>;
  /** Set when the step read a value back in the middle (the graph would then differ from step to step). */
  readBack: boolean;
}

interface Binding {
  executeOp(type: string, attrs: TfeAttr[], inputs: number[], n: number): Array<{ id: number; shape: number[]; dtype: number }>;
  createTensor(shape: number[], dtype: number, values: ArrayLike<number> | ArrayBufferView): number;
  tensorDataSync(id: number): ArrayBufferView;
  TF_FLOAT: number;
  TF_INT32: number;
  TF_BOOL: number;
}

export interface NodeBackend {
  binding: Binding;
  tensorMap: { get(dataId: object): { id: number; values: unknown } };
  getInputTensorIds(tensors: Tensor[]): number[];
}

/** Runs `fn` with the binding's calls recorded: every op runs as it always does. */
export function traceStep<T>(backend: NodeBackend, fn: () => T): { result: T; trace: Trace } {
  const binding = backend.binding;
  const trace: Trace = { ops: [], created: new Map(), readBack: false };
  return withBinding(backend, trace, {
    executeOp(type, attrs, inputs, n) {
      const out = binding.executeOp(type, attrs, inputs, n);
      trace.ops.push({ type, attrs, inputs: [...inputs], outputs: out.map((o) => o.id) });
      return out;
    },
    tensorDataSync(id) {
      trace.readBack = true;
      return binding.tensorDataSync(id);
    },
  }, fn);
}

/**
 * Outputs whose shape inference leaves open and that only other kernels read: FusedBatchNormV3's reserve_space_3 (a
 * workspace that only FusedBatchNormGradV3 reads, batchnorm.ts). tfjs is told they are empty.
 */
const OPAQUE_OUTPUTS: Record<string, number[]> = { FusedBatchNormV3: [5] };

/** Why a step could not be traced without running it (it is then traced by running it). */
export class NotSymbolic extends Error {}

/**
 * Records the step without computing it. Each op is added to a scratch graph instead of run: TensorFlow's shape
 * inference gives its outputs' shapes and types, which is all tfjs needs to go on, and the op returns empty stand-in
 * tensors of those types. So the record costs no arithmetic and holds no activations (an eager step keeps every
 * activation and every intermediate gradient until it ends: at 224 px that was twice PyTorch's peak memory).
 * Anything that needs values (a read-back) or a shape that inference leaves open throws NotSymbolic.
 * `known` gives the dtype and shape of the tensors that exist before the step (the state).
 */
export function symbolicTrace<T>(backend: NodeBackend, l: LibTensorflow, attrTypes: AttrTypes, known: Map<number, { dtype: number; shape: number[] }>, fn: () => T): { result: T; trace: Trace } {
  const binding = backend.binding;
  const trace: Trace = { ops: [], created: new Map(), readBack: false };
  const f = l.f;
  const graph = f.TF_NewGraph();
  const outputs = new Map<number, Output>();
  const lists: OpArgCache = new Map();
  let n = 0;
  const leaf = (type: 'Placeholder' | 'Const', t: { dtype: number; shape: number[] }, bytes?: Uint8Array): Output => {
    const d = f.TF_NewOperation(graph, type, `v${n++}`);
    f.TF_SetAttrType(d, 'dtype', t.dtype);
    if (bytes) {
      const tensor = f.TF_AllocateTensor(t.dtype, t.shape.map(BigInt), t.shape.length, bytes.byteLength);
      if (bytes.byteLength) new Uint8Array(l.koffi.view(f.TF_TensorData(tensor), bytes.byteLength)).set(bytes);
      f.TF_SetAttrTensor(d, 'value', tensor, l.status);
      f.TF_DeleteTensor(tensor);
      l.check('constant');
    } else f.TF_SetAttrShape(d, 'shape', t.shape.map(BigInt), t.shape.length);
    const oper = f.TF_FinishOperation(d, l.status);
    l.check(type);
    return { oper, index: 0 };
  };
  const valueOf = (id: number): Output => {
    let out = outputs.get(id);
    if (out) return out;
    const c = trace.created.get(id);
    const k = known.get(id);
    // Small uploads may be shapes, axes or sizes, which inference needs as values; the rest only needs shapes.
    if (c) out = c.bytes.byteLength <= 4096 ? leaf('Const', c, c.bytes) : leaf('Placeholder', c);
    else if (k) out = leaf('Placeholder', k);
    else throw new NotSymbolic(`the step reads a tensor (id ${id}) that is neither state nor made in the step`);
    outputs.set(id, out);
    return out;
  };
  const empty = (dtype: number) => (dtype === binding.TF_FLOAT ? new Float32Array(0) : dtype === binding.TF_INT32 ? new Int32Array(0) : new Uint8Array(0));
  try {
    return withBinding(backend, trace, {
      executeOp(type, attrs, inputs, count) {
        const op: TracedOp = { type, attrs, inputs: [...inputs], outputs: [] };
        let oper: unknown;
        try {
          oper = addNode(l, graph, op, `n${n++}`, valueOf, lists, attrTypes);
        } catch (e) {
          throw e instanceof NotSymbolic ? e : new NotSymbolic(`${type}: ${(e as Error).message}`);
        }
        const result = Array.from({ length: count }, (_, index) => {
          const o = { oper, index };
          const dtype = f.TF_OperationOutputType(o);
          const rank = f.TF_GraphGetTensorNumDims(graph, o, l.status);
          l.check(`${type} rank`);
          const dims = new BigInt64Array(Math.max(rank, 0));
          if (rank > 0) f.TF_GraphGetTensorShape(graph, o, dims, rank, l.status);
          l.check(`${type} shape`);
          let shape = Array.from(dims, Number);
          if (rank < 0 || shape.some((d) => d < 0)) {
            if (!OPAQUE_OUTPUTS[type]?.includes(index)) throw new NotSymbolic(`${type}: output ${index} has ${rank < 0 ? 'an unknown rank' : `shape [${shape}]`}`);
            shape = [0];
          }
          if (dtype !== binding.TF_FLOAT && dtype !== binding.TF_INT32 && dtype !== binding.TF_BOOL) throw new NotSymbolic(`${type}: output ${index} has TF_DataType ${dtype}`);
          // A real (empty) tensor, so that tfjs can dispose it like any other; the trace knows it by its id.
          const id = binding.createTensor([0], dtype, empty(dtype));
          outputs.set(id, o);
          return { id, shape, dtype };
        });
        op.outputs = result.map((r) => r.id);
        trace.ops.push(op);
        return result;
      },
      tensorDataSync() {
        throw new NotSymbolic('the step reads a value back before it ends');
      },
    }, fn);
  } finally {
    f.TF_DeleteGraph(graph);
  }
}

/** Runs `fn` with the backend's binding replaced by a stand-in that overrides `calls` (uploads are always recorded). */
function withBinding<T>(backend: NodeBackend, trace: Trace, calls: Partial<Binding>, fn: () => T): { result: T; trace: Trace } {
  const binding = backend.binding;
  const recorded: Partial<Binding> = {
    ...calls,
    createTensor(shape, dtype, values) {
      const id = binding.createTensor(shape, dtype, values);
      const view = ArrayBuffer.isView(values) ? values : Float32Array.from(values as ArrayLike<number>);
      trace.created.set(id, { dtype, shape: [...shape], bytes: new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice() });
      return id;
    },
  };
  // The binding's methods are native and read-only: the backend is given a stand-in (the binding as its prototype,
  // for the constants) that records and forwards.
  const stand = Object.create(binding) as Binding;
  for (const name of Object.getOwnPropertyNames(binding)) {
    const v = (binding as unknown as Record<string, unknown>)[name];
    if (typeof v === 'function') Object.defineProperty(stand, name, { value: name in recorded ? recorded[name as keyof Binding] : v.bind(binding) });
  }
  backend.binding = stand;
  try {
    return { result: fn(), trace };
  } finally {
    backend.binding = binding;
  }
}

/** The binding's id of a tensor, uploading its values first if tfjs still holds them in JavaScript. */
export function tensorId(backend: NodeBackend, t: Tensor): number {
  return backend.getInputTensorIds([t])[0];
}
