// Records what one eager training step asks of TensorFlow, so that the same step can run as one graph.
//
// tfjs-node executes every kernel, the gradient's included, as a TensorFlow op through its binding
// (`executeOp(type, attrs, inputIds, numOutputs)`) and uploads JavaScript values with `createTensor`. While a trace is
// on, both calls are recorded as they happen: the list of ops with their attributes and the tensor ids that flow
// between them is the step's dataflow graph, gradients and optimizer update included. Nothing about the step
// changes: it computes as it always does.
import type { Tensor } from '@tensorflow/tfjs';

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
}

export interface NodeBackend {
  binding: Binding;
  tensorMap: { get(dataId: object): { id: number; values: unknown } };
  getInputTensorIds(tensors: Tensor[]): number[];
}

/** Runs `fn` with the binding's calls recorded. */
export function traceStep<T>(backend: NodeBackend, fn: () => T): { result: T; trace: Trace } {
  const binding = backend.binding;
  const trace: Trace = { ops: [], created: new Map(), readBack: false };
  // The binding's methods are native and read-only: the backend is given a stand-in (the binding as its prototype,
  // for the constants) that records and forwards.
  const recorded: Partial<Binding> = {
    executeOp(type, attrs, inputs, n) {
      const out = binding.executeOp(type, attrs, inputs, n);
      trace.ops.push({ type, attrs, inputs: [...inputs], outputs: out.map((o) => o.id) });
      return out;
    },
    createTensor(shape, dtype, values) {
      const id = binding.createTensor(shape, dtype, values);
      const view = ArrayBuffer.isView(values) ? values : Float32Array.from(values as ArrayLike<number>);
      trace.created.set(id, { dtype, shape: [...shape], bytes: new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice() });
      return id;
    },
    tensorDataSync(id) {
      trace.readBack = true;
      return binding.tensorDataSync(id);
    },
  };
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
