// Evaluation costs that decide the quick preset's sizes: exact AUC + DeLong on a large score vector, the linear
// probe on PneumoniaMNIST-sized features, one perturbation pass over a test set, and fine-tuning throughput of the
// stand-in encoder on 28x28 images.
import { random } from '../pipeline/random.js';
import { delongAuc } from '../stages/evaluate/auc.js';
import { rotate, type Image } from '../stages/evaluate/perturb.js';
import { logisticRegression } from '../stages/evaluate/protocols.js';
import { type Benchmark, timeIt } from './harness.js';

function scores(n: number): { s: Float64Array; y: Uint8Array } {
  const rs = random(0).stream({ purpose: 'bench-auc' });
  const s = new Float64Array(n), y = new Uint8Array(n);
  for (let i = 0; i < n; i++) { y[i] = rs.bernoulli(0.3) ? 1 : 0; s[i] = Math.round((rs.normal() + y[i]) * 1000) / 1000; }
  return { s, y };
}

export const benchmarks: Benchmark[] = [
  {
    name: 'evaluate/delong-auc',
    async run() {
      const n = 1_000_000, { s, y } = scores(n);
      const ms = await timeIt(() => delongAuc(s, y), { repeats: 3 });
      return [{ name: 'evaluate/delong-auc', unit: 'scores/s', value: n / (ms / 1000), config: { n, ties: 'scores rounded to 1e-3' } }];
    },
  },
  {
    name: 'evaluate/linear-probe',
    async run() {
      const n = 3882, d = 64, rs = random(0).stream({ purpose: 'bench-probe' });
      const x = Float64Array.from({ length: n * d }, () => rs.normal()), y = Float64Array.from({ length: n }, () => (rs.bernoulli(0.5) ? 1 : 0));
      const ms = await timeIt(() => logisticRegression(x, y, n, d, 1e-3, 150, 0.05), { repeats: 3 });
      return [{ name: 'evaluate/linear-probe', unit: 'ms', value: ms, config: { n, d, steps: 150 } }];
    },
  },
  {
    name: 'evaluate/rotate',
    async run() {
      const rs = random(0).stream({ purpose: 'bench-rotate' });
      const img: Image = { data: Float32Array.from({ length: 28 * 28 }, () => rs.uniform()), height: 28, width: 28, channels: 1 };
      const count = 624;
      const ms = await timeIt(() => { for (let i = 0; i < count; i++) rotate(img, 15); }, { repeats: 5 });
      return [{ name: 'evaluate/rotate', unit: 'images/s', value: count / (ms / 1000), config: { size: 28, degrees: 15 } }];
    },
  },
  {
    name: 'evaluate/finetune',
    async run() {
      const { tf, backendInfo } = await import('../pipeline/tensorflow.js');
      const { standInEncoder } = await import('../pipeline/arms.js');
      const { finetune } = await import('../stages/evaluate/protocols.js');
      const n = 512, rs = random(0).stream({ purpose: 'bench-finetune' });
      const split = (m: number) => ({ images: Float32Array.from({ length: m * 784 }, () => rs.uniform()), n: m, height: 28, width: 28, channels: 1, labels: Float32Array.from({ length: m }, (_, i) => i % 2) });
      const train = split(n), val = split(128);
      const steps = 40, batchSize = 32;
      const t0 = performance.now();
      const r = await finetune(standInEncoder([28, 28, 1], 0), train, val, val, { steps, batchSize, evalEvery: 1000, seed: 0 });
      const seconds = (performance.now() - t0) / 1000;
      r.dispose();
      return [{ name: `evaluate/finetune/${backendInfo.backend}`, unit: 'images/s', value: (steps * batchSize) / seconds, config: { encoder: 'stand-in 60k params', input: 28, batchSize, steps, tfTensors: tf.memory().numTensors } }];
    },
  },
];
