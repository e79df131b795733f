// Recording a step without computing it (stages/train/graph/trace.ts): tfjs must see the same shapes and TensorFlow
// the same ops as when the step runs, and a step that needs a value midway must be refused, not recorded wrong.
import type { Tensor } from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { backendInfo, tf } from '../../../pipeline/core/tensorflow.js';
import { libtensorflow } from '../../../stages/train/graph/libtensorflow.js';
import { type NodeBackend, NotSymbolic, symbolicTrace, tensorId, traceStep } from '../../../stages/train/graph/trace.js';

const native = backendInfo.backend !== 'cpu';
const DT: Record<string, number> = { float32: 1, int32: 3 };

function setup() {
  const backend = tf.backend() as unknown as NodeBackend;
  const b = backend.binding as unknown as Record<string, number>;
  const attrTypes = { STRING: b.TF_ATTR_STRING, INT: b.TF_ATTR_INT, FLOAT: b.TF_ATTR_FLOAT, BOOL: b.TF_ATTR_BOOL, TYPE: b.TF_ATTR_TYPE, SHAPE: b.TF_ATTR_SHAPE };
  const l = libtensorflow(backendInfo.backend === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node');
  return { backend, attrTypes, l };
}

describe.runIf(native)('symbolic recording', () => {
  // A small piece of a step: convolution, a reshape driven by a shape constant, a gradient, a reduction.
  const step = (x: Tensor, w: Tensor) => {
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.relu(tf.reshape(tf.conv2d(x as never, w as never, 2, 'same'), [3, -1]))) as never, [w as never]);
    return [value, ...Object.values(grads)];
  };

  it('gives tfjs the shapes and TensorFlow the ops that running the step does, without computing it', () => {
    const { backend, attrTypes, l } = setup();
    const x = tf.randomNormal([3, 5, 5, 2]);
    const w = tf.variable(tf.randomNormal([3, 3, 2, 4]));
    const known = new Map([x, w].map((t) => [tensorId(backend, t), { dtype: DT[t.dtype], shape: t.shape }]));
    const ran = traceStep(backend, () => step(x, w));
    const symbolic = symbolicTrace(backend, l, attrTypes, known, () => step(x, w));
    expect(symbolic.result.map((t) => t.shape)).toEqual(ran.result.map((t) => t.shape));
    expect(symbolic.trace.ops.map((o) => o.type)).toEqual(ran.trace.ops.map((o) => o.type));
    // The stand-ins hold no values: nothing was computed.
    expect(symbolic.result.every((t) => (backend as unknown as { binding: { tensorDataSync(id: number): ArrayBufferView } }).binding.tensorDataSync(tensorId(backend, t)).byteLength === 0)).toBe(true);
    tf.dispose([x, w, ...ran.result, ...symbolic.result]);
  });

  it('refuses a step that reads a value back midway, and one that reads a tensor it was not told about', () => {
    const { backend, attrTypes, l } = setup();
    const x = tf.randomNormal([4]);
    const known = new Map([[tensorId(backend, x), { dtype: 1, shape: [4] }]]);
    expect(() => symbolicTrace(backend, l, attrTypes, known, () => tf.tidy(() => tf.add(x, tf.scalar(tf.sum(x).dataSync()[0]))))).toThrow(NotSymbolic);
    expect(() => symbolicTrace(backend, l, attrTypes, new Map(), () => tf.tidy(() => tf.add(x, 1)))).toThrow(NotSymbolic);
    // The backend is itself again afterwards.
    expect(tf.add(x, 1).dataSync()).toHaveLength(4);
    x.dispose();
  });
});
