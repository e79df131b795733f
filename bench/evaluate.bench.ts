// Evaluation costs that decide the quick preset's sizes: exact AUC + DeLong on a large score vector, the linear
// probe on PneumoniaMNIST-sized features, one perturbation pass over a test set, and fine-tuning throughput of the
// job's encoder on 28x28 images (graph against eager updates).
import { random } from '../pipeline/core/random.js';
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
    // The quick preset's fine-tuning (batch 32 of 28x28, the job's ResNet encoder): updates as one TensorFlow graph
    // (the default on the native backends) against the same updates dispatched eagerly, in alternating rounds.
    name: 'evaluate/finetune',
    async run() {
      const { tf, backendInfo } = await import('../pipeline/core/tensorflow.js');
      const { freshEncoder } = await import('../pipeline/compose/arms.js');
      const { Config } = await import('../schemas/config.js');
      const { finetune } = await import('../stages/evaluate/protocols.js');
      const config = Config.parse({ augment: { global: { count: 2, size: 28, scale: [0.3, 1] }, local: { count: 4, size: 14, scale: [0.1, 0.3] } } });
      const n = 512, rs = random(0).stream({ purpose: 'bench-finetune' });
      const split = (m: number) => ({ images: Float32Array.from({ length: m * 784 }, () => rs.uniform()), n: m, height: 28, width: 28, channels: 1, labels: Float32Array.from({ length: m }, (_, i) => i % 2) });
      const train = split(n), val = split(128);
      const steps = 40, batchSize = 32, rounds = 3;
      const once = async (graph: boolean) => {
        if (graph) delete process.env.MEDSSL_GRAPH; else process.env.MEDSSL_GRAPH = '0';
        const encoder = freshEncoder(config, 1, 0);
        const t0 = performance.now();
        const r = await finetune(encoder, train, val, val, { steps, batchSize, evalEvery: 1000, seed: 0 });
        const seconds = (performance.now() - t0) / 1000;
        r.dispose();
        return { rate: (steps * batchSize) / seconds, stats: r.steps };
      };
      const before = process.env.MEDSSL_GRAPH;
      const graph: number[] = [], eager: number[] = [];
      let stats;
      try {
        for (let k = 0; k < rounds; k++) {
          const g = await once(true);
          graph.push(g.rate); stats = g.stats;
          eager.push((await once(false)).rate);
        }
      } finally {
        if (before === undefined) delete process.env.MEDSSL_GRAPH; else process.env.MEDSSL_GRAPH = before;
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
      const ratios = graph.map((g, k) => g / eager[k]);
      const config2 = { encoder: `the job's ResNet (${config.model.arch}, width ${config.model.width})`, input: 28, batchSize, steps, rounds, backend: backendInfo.backend, tfTensors: tf.memory().numTensors };
      return [
        { name: 'evaluate/finetune/graph', unit: 'images/s', value: median(graph), config: { ...config2, perRound: graph, compiled: stats?.compiled, graphSteps: stats?.graphSteps, notes: stats?.notes } },
        { name: 'evaluate/finetune/eager', unit: 'images/s', value: median(eager), config: { ...config2, perRound: eager } },
        { name: 'evaluate/finetune/ratio', unit: 'graph / eager', value: median(ratios), config: { perRound: ratios, note: 'each pair in one round, first step (recording and compiling) included' } },
      ];
    },
  },
];
