// The part of libtensorflow's C API (tensorflow/c/c_api.h) that runs a graph in a session, called through koffi.
//
// It is the same shared library the tfjs-node binding already loaded (dlopen returns the loaded copy), so graph
// sessions and tfjs-node's eager context share one TensorFlow runtime, its kernels and its oneDNN settings.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/* eslint-disable @typescript-eslint/no-explicit-any */
type Ptr = unknown;
type Fn = (...args: any[]) => any;

/** TF_DataType values (tensorflow/c/tf_datatype.h). */
export const DT = { FLOAT: 1, INT32: 3, UINT8: 4, STRING: 7, INT64: 9, BOOL: 10 } as const;

export interface Output { oper: Ptr; index: number }

export interface LibTensorflow {
  koffi: any;
  f: Record<string, Fn>;
  status: Ptr;
  /** Throws TF_Message(status) when the last call failed. */
  check(what: string): void;
}

let lib: LibTensorflow | null = null;

/** The C API of the libtensorflow that tfjs-node (or tfjs-node-gpu) loaded. */
export function libtensorflow(pkg: string): LibTensorflow {
  if (lib) return lib;
  const koffi = require('koffi');
  const dir = path.join(path.dirname(require.resolve(`${pkg}/package.json`)), 'deps', 'lib');
  const so = koffi.load(path.join(dir, 'libtensorflow.so'));
  koffi.opaque('TF_Status');
  koffi.opaque('TF_Graph');
  koffi.opaque('TF_OperationDescription');
  koffi.opaque('TF_Operation');
  koffi.opaque('TF_Tensor');
  koffi.opaque('TF_SessionOptions');
  koffi.opaque('TF_Session');
  koffi.struct('TF_Output', { oper: 'TF_Operation *', index: 'int' });
  koffi.struct('TF_Buffer', { data: 'void *', length: 'size_t', data_deallocator: 'void *' });
  const sigs = [
    'TF_Status *TF_NewStatus()',
    'void TF_DeleteStatus(TF_Status *)',
    'int TF_GetCode(TF_Status *)',
    'const char *TF_Message(TF_Status *)',
    'TF_Graph *TF_NewGraph()',
    'void TF_DeleteGraph(TF_Graph *)',
    'TF_OperationDescription *TF_NewOperation(TF_Graph *, const char *type, const char *name)',
    'void TF_AddInput(TF_OperationDescription *, TF_Output)',
    'void TF_AddInputList(TF_OperationDescription *, TF_Output *inputs, int n)',
    'void TF_SetAttrString(TF_OperationDescription *, const char *name, const void *value, size_t len)',
    'void TF_SetAttrInt(TF_OperationDescription *, const char *name, int64_t value)',
    'void TF_SetAttrIntList(TF_OperationDescription *, const char *name, int64_t *values, int n)',
    'void TF_SetAttrFloat(TF_OperationDescription *, const char *name, float value)',
    'void TF_SetAttrFloatList(TF_OperationDescription *, const char *name, float *values, int n)',
    'void TF_SetAttrBool(TF_OperationDescription *, const char *name, uint8_t value)',
    'void TF_SetAttrBoolList(TF_OperationDescription *, const char *name, uint8_t *values, int n)',
    'void TF_SetAttrType(TF_OperationDescription *, const char *name, int type)',
    'void TF_SetAttrTypeList(TF_OperationDescription *, const char *name, int *types, int n)',
    'void TF_SetAttrShape(TF_OperationDescription *, const char *name, int64_t *dims, int n)',
    'void TF_SetAttrTensor(TF_OperationDescription *, const char *name, TF_Tensor *value, TF_Status *)',
    'TF_Operation *TF_FinishOperation(TF_OperationDescription *, TF_Status *)',
    'void TF_GraphGetOpDef(TF_Graph *, const char *name, _Out_ TF_Buffer *def, TF_Status *)',
    'TF_SessionOptions *TF_NewSessionOptions()',
    'void TF_SetConfig(TF_SessionOptions *, const void *proto, size_t len, TF_Status *)',
    'void TF_DeleteSessionOptions(TF_SessionOptions *)',
    'TF_Session *TF_NewSession(TF_Graph *, TF_SessionOptions *, TF_Status *)',
    'void TF_CloseSession(TF_Session *, TF_Status *)',
    'void TF_DeleteSession(TF_Session *, TF_Status *)',
    'void TF_SessionRun(TF_Session *, void *runOptions, TF_Output *inputs, TF_Tensor **values, int ninputs, TF_Output *outputs, void *outValues, int noutputs, void *targets, int ntargets, void *metadata, TF_Status *)',
    'TF_Tensor *TF_AllocateTensor(int type, int64_t *dims, int ndims, size_t len)',
    'void *TF_TensorData(TF_Tensor *)',
    'size_t TF_TensorByteSize(TF_Tensor *)',
    'int TF_TensorType(TF_Tensor *)',
    'int TF_NumDims(TF_Tensor *)',
    'int64_t TF_Dim(TF_Tensor *, int)',
    'void TF_DeleteTensor(TF_Tensor *)',
    'int TF_OperationOutputType(TF_Output)',
    'int TF_GraphGetTensorNumDims(TF_Graph *, TF_Output, TF_Status *)',
    'void TF_GraphGetTensorShape(TF_Graph *, TF_Output, _Out_ int64_t *dims, int num_dims, TF_Status *)',
    'TF_Buffer *TF_NewBufferFromString(const void *proto, size_t len)',
    'TF_Buffer *TF_NewBuffer()',
    'void TF_DeleteBuffer(TF_Buffer *)',
  ];
  const f: Record<string, Fn> = {};
  for (const sig of sigs) {
    const name = /\b(TF_\w+)\(/.exec(sig)![1];
    f[name] = so.func(sig);
  }
  const status = f.TF_NewStatus();
  lib = {
    koffi, f, status,
    check(what: string) {
      if (f.TF_GetCode(status) !== 0) throw new Error(`${what}: ${f.TF_Message(status)}`);
    },
  };
  return lib;
}

/** A TF_Tensor holding a copy of `bytes` (C order), owned by the caller (TF_DeleteTensor). */
export function newTensor(l: LibTensorflow, dtype: number, shape: number[], bytes: Uint8Array): Ptr {
  const t = l.f.TF_AllocateTensor(dtype, shape.map(BigInt), shape.length, bytes.byteLength);
  if (bytes.byteLength) new Uint8Array(l.koffi.view(l.f.TF_TensorData(t), bytes.byteLength)).set(bytes);
  return t;
}

/** A copy of a TF_Tensor's values as the typed array of its dtype, with its shape. */
export function readTensor(l: LibTensorflow, t: Ptr): { dtype: number; shape: number[]; bytes: Uint8Array } {
  const n = l.f.TF_NumDims(t);
  const shape = Array.from({ length: n }, (_, i) => Number(l.f.TF_Dim(t, i)));
  const size = Number(l.f.TF_TensorByteSize(t));
  const bytes = size ? new Uint8Array(l.koffi.view(l.f.TF_TensorData(t), size)).slice() : new Uint8Array(0);
  return { dtype: l.f.TF_TensorType(t), shape, bytes };
}

/**
 * A serialized ConfigProto (tensorflow/core/protobuf/config.proto) with the thread pools' sizes: field 2
 * intra_op_parallelism_threads, field 5 inter_op_parallelism_threads (varints).
 */
export function threadConfig(intraOp: number, interOp: number): Uint8Array {
  const varint = (n: number) => {
    const out: number[] = [];
    do {
      out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>>= 7;
    } while (n > 0);
    return out;
  };
  return Uint8Array.from([0x10, ...varint(intraOp), 0x28, ...varint(interOp)]);
}

/**
 * Which inputs of an op type are lists, and how long each is, read from its OpDef (a protobuf: OpDef.input_arg = 2,
 * ArgDef.number_attr = 5, ArgDef.type_list_attr = 6). Returns, per input arg, the attr naming its length or null.
 */
export function listInputs(l: LibTensorflow, graph: Ptr, op: string, cache: Map<string, Array<{ number?: string; typeList?: string } | null>>) {
  let args = cache.get(op);
  if (args) return args;
  const buf = {} as { data: unknown; length: number | bigint };
  l.f.TF_GraphGetOpDef(graph, op, buf, l.status);
  l.check(`no OpDef for ${op}`);
  const bytes = new Uint8Array(l.koffi.view(buf.data, Number(buf.length))).slice();
  args = [];
  for (const [field, value] of protoFields(bytes)) {
    if (field !== 2 || !(value instanceof Uint8Array)) continue;
    let number: string | undefined, typeList: string | undefined;
    for (const [f, v] of protoFields(value)) {
      if (f === 5 && v instanceof Uint8Array && v.length) number = new TextDecoder().decode(v);
      if (f === 6 && v instanceof Uint8Array && v.length) typeList = new TextDecoder().decode(v);
    }
    args.push(number || typeList ? { number, typeList } : null);
  }
  cache.set(op, args);
  return args;
}

/** The (field, value) pairs of a protobuf message: varints as numbers, length-delimited fields as bytes. */
export function* protoFields(b: Uint8Array): Generator<[number, number | Uint8Array]> {
  let i = 0;
  const varint = () => {
    let x = 0, shift = 0, byte;
    do {
      byte = b[i++];
      x += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return x;
  };
  while (i < b.length) {
    const key = varint();
    const field = Math.floor(key / 8), wire = key & 7;
    if (wire === 0) yield [field, varint()];
    else if (wire === 2) {
      const n = varint();
      yield [field, b.subarray(i, i + n)];
      i += n;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unexpected protobuf wire type ${wire}`);
  }
}
