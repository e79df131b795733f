// One training step of a 1.3M-parameter conv net (64x64, batch 64) on each backend this machine has: the figure
// that decides whether pre-training is practical. The pure-JS backend is measured on a smaller batch in a child
// process (a full batch takes minutes there); images/s is per image either way.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Benchmark, BenchResult } from './harness.js';

export const STEP_NET = { input: 64, channels: 1, batch: 64 };

async function measure(batch: number, steps: number): Promise<BenchResult> {
  const { tf, backendInfo } = await import('../pipeline/core/tensorflow.js');
  const model = tf.sequential();
  const conv = (filters: number, strides = 1) =>
    tf.layers.conv2d({ filters, kernelSize: 3, strides, padding: 'same', activation: 'relu', useBias: false });
  model.add(tf.layers.conv2d({ inputShape: [STEP_NET.input, STEP_NET.input, STEP_NET.channels], filters: 32, kernelSize: 3, padding: 'same', activation: 'relu' }));
  for (const [f, s] of [[64, 2], [128, 2], [128, 1], [256, 2], [256, 1]] as const) model.add(conv(f, s));
  model.add(tf.layers.globalAveragePooling2d({}));
  model.add(tf.layers.dense({ units: 512, activation: 'relu' }));
  model.add(tf.layers.dense({ units: 10 }));
  model.compile({ optimizer: tf.train.sgd(0.01), loss: 'meanSquaredError' });
  const x = tf.randomNormal([batch, STEP_NET.input, STEP_NET.input, STEP_NET.channels]);
  const y = tf.randomNormal([batch, 10]);
  await model.trainOnBatch(x, y); // warm-up: kernel selection and allocation
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await model.trainOnBatch(x, y);
  const seconds = (performance.now() - t0) / 1000;
  return {
    name: `train-step/${backendInfo.backend}`,
    unit: 'images/s',
    value: (batch * steps) / seconds,
    config: { params: model.countParams(), input: STEP_NET.input, batch, steps, backend: backendInfo.backend, tensorflow: backendInfo.tensorflowVersion, threads: backendInfo.threads },
  };
}

export const benchmarks: Benchmark[] = [
  { name: 'train-step/native', run: async () => [await measure(STEP_NET.batch, 10)] },
  {
    name: 'train-step/pure-js',
    run: async () => {
      const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child'], {
        env: { ...process.env, MEDSSL_BACKEND: 'cpu' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
      });
      return [JSON.parse(out.trim().split('\n').pop() as string) as BenchResult];
    },
  },
];

if (process.argv.includes('--child')) process.stdout.write(`${JSON.stringify(await measure(2, 1))}\n`);
