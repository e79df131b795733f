// Named model parameters as plain tf.Variables: the trainer differentiates a functional forward pass over them
// (no tfjs-layers bookkeeping in the hot loop), checkpoints them by name, and copies the encoder's into a
// tf.LayersModel for export. Initial values come from the counter-based random source, so a seed fixes them.
import type { Tensor, Variable } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import { random } from '../../pipeline/core/random.js';

export class ParamStore {
  readonly vars = new Map<string, Variable>();
  /** Names of parameters the optimizer updates (moving statistics are not among them). */
  readonly trainable = new Set<string>();

  constructor(readonly seed: number) {}

  get(name: string): Variable {
    const v = this.vars.get(name);
    if (!v) throw new Error(`no parameter named ${name}`);
    return v;
  }

  has(name: string): boolean {
    return this.vars.has(name);
  }

  /** Creates a parameter once; later calls return the existing one (so lazily created parts are stable). */
  add(name: string, shape: number[], init: Init, trainable = true): Variable {
    const existing = this.vars.get(name);
    if (existing) return existing;
    const values = initialValues(this.seed, name, shape, init);
    const v = tf.variable(tf.tensor(values, shape, 'float32'), trainable, undefined, 'float32');
    this.vars.set(name, v);
    if (trainable) this.trainable.add(name);
    return v;
  }

  /** Replaces the value of an existing parameter, or creates it (checkpoint restore). */
  set(name: string, value: Tensor, trainable: boolean): void {
    const v = this.vars.get(name);
    if (v) {
      if (v.shape.join() !== value.shape.join()) throw new Error(`${name}: checkpoint shape [${value.shape}] != model shape [${v.shape}]`);
      v.assign(value);
      return;
    }
    this.vars.set(name, tf.variable(value, trainable, undefined, 'float32'));
    if (trainable) this.trainable.add(name);
  }

  count(filter: (name: string) => boolean = () => true): number {
    let n = 0;
    for (const [name, v] of this.vars) if (filter(name)) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
    this.trainable.clear();
  }
}

export type Init =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  /** He et al. 2015 normal with std sqrt(2 / fan) (torchvision initialises ResNet convs with fan = fan_out). */
  | { kind: 'he'; fan: number }
  /** Uniform(-1/sqrt(fanIn), 1/sqrt(fanIn)): PyTorch's default for linear layers. */
  | { kind: 'uniform'; fanIn: number };

function initialValues(seed: number, name: string, shape: number[], init: Init): Float32Array {
  const n = shape.reduce((a, d) => a * d, 1);
  const out = new Float32Array(n);
  if (init.kind === 'zeros') return out;
  if (init.kind === 'ones') return out.fill(1);
  const rng = random(seed).stream({ purpose: `init/${name}` });
  if (init.kind === 'he') {
    const std = Math.sqrt(2 / init.fan);
    for (let i = 0; i < n; i++) out[i] = std * rng.normal();
  } else {
    const bound = 1 / Math.sqrt(init.fanIn);
    for (let i = 0; i < n; i++) out[i] = rng.range(-bound, bound);
  }
  return out;
}

/** Decoupled weight decay and LARS adaptation skip batch-norm parameters and biases (Goyal et al. 2017; You et al. 2017). */
export const decays = (name: string): boolean => !/\/(gamma|beta|bias)$/.test(name);
