// One fine-tuning update on a tf.LayersModel's own variables: sigmoid cross-entropy of the model's logits, gradients
// by tf.variableGrads, Adam (the trainer's optimizer, no weight decay), batch-norm moving statistics updated by the
// layers in training mode.
//
// Written once as tfjs code, it runs the way the trainer's step does: on the native backends it is recorded and run
// as one TensorFlow graph (stages/train/graph), since eager dispatch of its ~1,000 ops costs more than their
// arithmetic on small images; elsewhere, or with MEDSSL_GRAPH=0, it runs eagerly. The graph session holds the
// variables between steps: `sync()` brings them back before anything outside reads the model.
import type { LayersModel, Scalar, Tensor, Tensor1D, Variable } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import { OptimizerConfig } from '../../schemas/config.js';
import { type Capture, GraphSteps, nativeGraphSteps, type StateSlot } from '../train/graph/engine.js';
import type { HostTensor } from '../train/graph/graph-step.js';
import { DT } from '../train/graph/libtensorflow.js';
import { Optimizer } from '../train/optimizers.js';

export class FinetuneStep {
  private readonly opt: Optimizer;
  /** The model's trainable variables by name (tfjs variable names are unique). */
  private readonly vars: Map<string, Variable>;
  private readonly graphs: GraphSteps | null;
  private iterations = 0;

  /** `epsilon` defaults to tf.train.adam's (the backend's float32 epsilon). */
  constructor(private readonly model: LayersModel, lr: number, epsilon = 1e-7) {
    this.opt = new Optimizer(OptimizerConfig.parse({ name: 'adamw', lr, weightDecay: 0, adamEpsilon: epsilon }));
    this.vars = new Map(model.trainableWeights.map((w) => w.read() as Variable).map((v) => [v.name, v]));
    // Adam's moments exist before the first step: a recorded step never creates state.
    this.opt.prepare(this.vars, this.vars.keys());
    this.graphs = nativeGraphSteps();
  }

  /** Steps run as graphs and eagerly, and why any stayed eager. */
  get stats(): { compiled: number; graphSteps: number; eagerSteps: number; notes: string[] } {
    return this.graphs?.stats ?? { compiled: 0, graphSteps: 0, eagerSteps: this.iterations, notes: ['graph steps off'] };
  }

  /** Every variable the step reads or replaces: the model's weights (moving statistics included) and Adam's moments. */
  private slots(): Map<string, StateSlot> {
    const slots = new Map<string, StateSlot>();
    this.model.weights.forEach((w, i) => slots.set(`weight:${i}`, { get: () => w.read(), set: (t) => { w.write(t); } }));
    for (const [name, v] of this.opt.slots) slots.set(`slot:${name}`, { get: () => v, set: (t) => v.assign(t) });
    return slots;
  }

  /** One update on images `x` ([n, H, W, C]) and 0/1 targets `y` ([n, tasks]); returns the batch's mean loss. */
  run(x: Float32Array, xShape: [number, number, number, number], y: Float32Array, tasks: number): number {
    const host = (shape: number[], data: Float32Array): HostTensor => ({ dtype: DT.FLOAT, shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    const inputs = new Map<string, HostTensor>([
      ['x', host(xShape, x)],
      ['y', host([xShape[0], tasks], y)],
      // Adam's bias corrections use the number of the update being made.
      ['iteration', host([], Float32Array.of(this.iterations + 1))],
    ]);
    const run = (capture?: Capture) => this.eager(inputs, capture);
    let loss = this.graphs?.step(`${xShape.join('x')}|${tasks}`, () => this.slots(), inputs, run)?.[0];
    if (loss === undefined) {
      const { metrics } = run();
      loss = metrics.dataSync()[0];
      metrics.dispose();
    }
    this.iterations++;
    return loss;
  }

  /** Brings the variables back from the graph session (before the model is read: predictions, getWeights). */
  sync(): void {
    this.graphs?.sync(this.slots());
  }

  private eager(inputs: Map<string, HostTensor>, capture?: Capture): { metrics: Tensor1D } {
    // Inputs are made outside the gradient's scope (which disposes what is made inside it), so a recording sees them.
    const made = new Map<string, Tensor>();
    for (const [name, v] of inputs) made.set(name, tf.tensor(new Float32Array(v.bytes.buffer, v.bytes.byteOffset, v.bytes.byteLength / 4), v.shape, 'float32'));
    const { value, grads } = tf.variableGrads(() => {
      const logits = this.model.apply(made.get('x')!, { training: true }) as Tensor;
      return tf.losses.sigmoidCrossEntropy(made.get('y')!, logits) as Scalar;
    }, [...this.vars.values()]);
    this.opt.apply(this.vars, grads, this.opt.config.lr, made.get('iteration') as Scalar);
    const metrics = tf.keep(value.reshape([1])) as Tensor1D;
    capture?.(made, metrics);
    value.dispose();
    for (const g of Object.values(grads)) g.dispose();
    for (const t of made.values()) t.dispose();
    return { metrics };
  }

  dispose(): void {
    this.graphs?.dispose();
    this.opt.dispose();
  }
}
