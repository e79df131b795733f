// SGD with momentum, LARS (You et al. 2017, as SwAV uses it through LARC without clipping) and AdamW
// (Loshchilov & Hutter 2019), over named variables. Weight decay and the LARS trust ratio skip batch-norm
// parameters and biases (`decays`). All updates stay on the device: no value is read back per step.
import type { NamedTensorMap, Scalar, Tensor, Variable } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';
import type { OptimizerConfig } from '../../schemas/config.js';
import { decays } from './params.js';

export class Optimizer {
  /** Per-variable state buffers by name: `m` (momentum / first moment) and `v` (second moment). */
  readonly slots = new Map<string, Variable>();
  /** Optimizer steps applied (Adam's bias correction). */
  iterations = 0;

  constructor(readonly config: OptimizerConfig) {}

  /**
   * Creates the state buffers of `names` now (zeros, as a first update would): a step never creates state, so that it
   * can be recorded and run as a graph (graph/).
   */
  prepare(vars: Map<string, Variable>, names: Iterable<string>): void {
    for (const name of names) {
      const w = vars.get(name);
      if (!w) continue;
      if (this.config.name === 'adamw') {
        this.slot(`${name}/m`, w);
        this.slot(`${name}/v`, w);
      } else if (this.config.momentum > 0) this.slot(`${name}/m`, w);
    }
  }

  private slot(name: string, like: Tensor): Variable {
    let s = this.slots.get(name);
    if (!s) {
      // The variable shares the zeros' data: dispose the tensor object itself.
      const zeros = tf.zerosLike(like);
      s = tf.variable(zeros, false, undefined, 'float32');
      zeros.dispose();
      this.slots.set(name, s);
    }
    return s;
  }

  /**
   * Applies one update with learning rate `lr` to `vars` from `grads` (disposes nothing it was given). `iteration` is
   * the number of this update (Adam's bias corrections); without it the optimizer counts its own calls. The trainer
   * passes both as tensors, so that a recorded step reads them as inputs (graph/).
   */
  apply(vars: Map<string, Variable>, grads: NamedTensorMap, lr: number | Scalar, iteration?: number | Scalar): void {
    const t = iteration ?? ++this.iterations;
    const o = this.config;
    tf.tidy(() => {
      for (const [name, g] of Object.entries(grads)) {
        const w = vars.get(name);
        if (!w) continue;
        const wd = decays(name) ? o.weightDecay : 0;
        if (o.name === 'adamw') {
          const [b1, b2] = o.betas;
          const m = this.slot(`${name}/m`, w);
          const v = this.slot(`${name}/v`, w);
          m.assign(tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1)));
          v.assign(tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2)));
          const mHat = tf.div(m, tf.sub(1, tf.pow(b1, t)));
          const vHat = tf.div(v, tf.sub(1, tf.pow(b2, t)));
          let update: Tensor = tf.div(mHat, tf.add(tf.sqrt(vHat), o.adamEpsilon));
          // Decoupled decay: shrink the weights directly, not through the adaptive moments.
          if (wd > 0) update = tf.add(update, tf.mul(w, wd));
          w.assign(tf.sub(w, tf.mul(update, lr)));
          continue;
        }
        let d: Tensor = wd > 0 ? tf.add(g, tf.mul(w, wd)) : g;
        if (o.name === 'lars' && decays(name)) {
          // Layer-wise trust ratio eta * ||w|| / (||g|| + wd ||w||); 1 where either norm is 0 (fresh or dead layers).
          const wn = tf.norm(w);
          const gn = tf.norm(g);
          const ratio = tf.div(tf.mul(wn, o.larsEta), tf.add(tf.add(gn, tf.mul(wn, wd)), 1e-12));
          const ok = tf.logicalAnd(tf.greater(wn, 0), tf.greater(gn, 0));
          d = tf.mul(d, tf.where(ok, ratio, tf.onesLike(ratio)));
        }
        if (o.momentum > 0) {
          const m = this.slot(`${name}/m`, w);
          m.assign(tf.add(tf.mul(m, o.momentum), d));
          d = m;
        }
        w.assign(tf.sub(w, tf.mul(d, lr)));
      }
    });
  }

  dispose(): void {
    for (const s of this.slots.values()) s.dispose();
    this.slots.clear();
  }
}
