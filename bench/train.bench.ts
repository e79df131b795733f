// Trainer throughput on the native backend: the small ResNet (config defaults: width 16, one basic block per stage,
// 3x3 stem) at 64x64 and 96x96, batch 64, 2 global + 6 local crops (local crops at the SwAV ratio 96/224, rounded
// to a multiple of 4: 28 and 40 px). Batches are built before timing, so this is the trainer alone.
// `train/waiting`: the trainer fed by a cache-backed pipeline (LMDB records -> seeded crops -> batches, through the
// Gate and pull), reporting the fraction of wall time the trainer waited for data.
// Variants run in child processes so that environment switches (fused batch norm off, oneDNN off, thread counts)
// take effect at TensorFlow's start: MEDSSL_BENCH_VARIANTS=1 adds them (they take several minutes).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Benchmark, BenchResult } from './harness.js';

const here = fileURLToPath(import.meta.url);
// bench/ from the sources, dist/bench/ once compiled; the shared data sits beside the project.
const projectRoot = path.resolve(path.dirname(here), here.endsWith('.ts') ? '..' : path.join('..', '..'));
const pneumonia = () => path.join(projectRoot, 'fixtures', 'data', 'medmnist', 'pneumoniamnist.npz');

async function trainerRate(size: number, local: number, steps: number, label: string): Promise<BenchResult> {
  const { tf, backendInfo } = await import('../pipeline/tensorflow.js');
  const { parseConfig } = await import('../schemas/config.js');
  const { Trainer } = await import('../stages/train/trainer.js');
  const { assembleBatch, epochOrder, readMedmnist } = await import('../test/support/medmnist-batches.js');
  const config = parseConfig({
    augment: { global: { count: 2, size, scale: [0.14, 1] }, local: { count: 6, size: local, scale: [0.05, 0.14] } },
    train: { batchSize: 64, optimizer: { name: 'lars', warmupSteps: 0 } },
  });
  const images = readMedmnist(pneumonia());
  const order = epochOrder(images, config, 0, 0);
  const batches = Array.from({ length: steps + 1 }, (_, s) => assembleBatch(images, order[s], config.augment, 0, 0, s));
  const trainer = new Trainer(config, 1, 0);
  await trainer.trainStep(batches[0], 100); // warm-up: kernel selection and allocation
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let s = 1; s <= steps; s++) await trainer.trainStep(batches[s], 100);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  // On a shared machine wall time depends on the neighbours; CPU time per image does much less.
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const params = trainer.store.count((n) => !/moving_/.test(n));
  trainer.dispose();
  void tf;
  return {
    name: `train/${label}/${size}px`, unit: 'images/s', value: (64 * steps) / seconds,
    config: {
      model: 'resnet width 16 depth [1,1,1,1] small stem', params, batch: 64, crops: `2x${size} + 6x${local}`, steps,
      backend: backendInfo.backend, threads: backendInfo.threads, fusedBatchNorm: process.env.MEDSSL_FUSED_BN !== '0',
      onednn: process.env.TF_ENABLE_ONEDNN_OPTS ?? 'default', load: os.loadavg()[0],
      cpuSecondsPerImage: cpuSeconds / (64 * steps), imagesPerCpuSecond: (64 * steps) / cpuSeconds,
    },
  };
}

/** The bench/train-step.bench.ts net trained functionally (variableGrads + fused conv/bias/relu) instead of trainOnBatch. */
async function functionalStepNet(steps: number): Promise<BenchResult> {
  const { tf, backendInfo } = await import('../pipeline/tensorflow.js');
  // Same shape as STEP_NET in train-step.bench.ts (not imported: that module runs its own child mode on --child).
  const STEP_NET = { input: 64, channels: 1, batch: 64 };
  const { random } = await import('../pipeline/random.js');
  const rng = random(0).stream({ purpose: 'bench' });
  const he = (shape: number[], fan: number) => tf.variable(tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * Math.sqrt(2 / fan)), shape));
  const layers: Array<{ w: ReturnType<typeof he>; b: ReturnType<typeof he> | null; stride: number }> = [];
  let c = STEP_NET.channels;
  for (const [f, s, bias] of [[32, 1, true], [64, 2, false], [128, 2, false], [128, 1, false], [256, 2, false], [256, 1, false], [256, 1, false]] as const) {
    layers.push({ w: he([3, 3, c, f], 9 * c), b: bias ? tf.variable(tf.zeros([f])) : null, stride: s });
    c = f;
  }
  const d1 = he([256, 256], 256), b1 = tf.variable(tf.zeros([256])), d2 = he([256, 10], 256), b2 = tf.variable(tf.zeros([10]));
  const x = tf.randomNormal([STEP_NET.batch, STEP_NET.input, STEP_NET.input, STEP_NET.channels]);
  const y = tf.randomNormal([STEP_NET.batch, 10]);
  const opt = tf.train.sgd(0.01);
  const step = () => tf.tidy(() => {
    opt.minimize(() => {
      let h = x as Parameters<typeof tf.fused.conv2d>[0]['x'];
      for (const l of layers) h = tf.fused.conv2d({ x: h, filter: l.w as never, strides: l.stride, pad: 'same', bias: l.b ?? undefined, activation: 'relu' });
      const p = tf.mean(h, [1, 2]) as never;
      const out = tf.fused.matMul({ a: tf.fused.matMul({ a: p, b: d1 as never, bias: b1, activation: 'relu' }), b: d2 as never, bias: b2 });
      return tf.losses.meanSquaredError(y, out) as never;
    });
  });
  step();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  await (layers[0].w as unknown as { data(): Promise<unknown> }).data();
  const seconds = (performance.now() - t0) / 1000;
  return { name: 'train-step/functional', unit: 'images/s', value: (STEP_NET.batch * steps) / seconds, config: { input: STEP_NET.input, batch: STEP_NET.batch, steps, backend: backendInfo.backend, load: os.loadavg()[0] } };
}

/** The trainer fed from an LMDB cache through Gate -> crops -> batches -> pull: how long does it wait for data? */
async function waitingFraction(size: number, local: number, steps: number): Promise<BenchResult> {
  const { open } = await import('lmdb');
  const { Gate, settle } = await import('../pipeline/flow.js');
  const { parseConfig } = await import('../schemas/config.js');
  const { readMedmnist, assembleBatch } = await import('../test/support/medmnist-batches.js');
  const { train } = await import('../stages/train/train.js');
  const { random } = await import('../pipeline/random.js');
  const { fromHighland } = await import('../pipeline/bridge.js');
  const { map, bufferCount, lastValueFrom, toArray } = await import('rxjs');
  const highland = (await import('highland')).default;
  const config = parseConfig({
    augment: { global: { count: 2, size, scale: [0.14, 1] }, local: { count: 6, size: local, scale: [0.05, 0.14] } },
    train: { batchSize: 64, optimizer: { name: 'lars', warmupSteps: 0 } },
  });
  const images = readMedmnist(pneumonia());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-bench-'));
  const db = open({ path: dir, encoding: 'binary' });
  const n = 64 * (steps + 1);
  await db.transaction(() => {
    for (let i = 0; i < n; i++) db.put(`img/${String(i).padStart(8, '0')}`, Buffer.from(images[i].data.buffer));
  });
  // A lazy cursor over the cache, pulled one record at a time by the gate (as a cache replay does).
  const perm = random(0).stream({ epoch: 0, purpose: 'order' }).permutation(n);
  const keys = Array.from(perm, (i) => `img/${String(i).padStart(8, '0')}`);
  const gate = new Gate({ window: 128 });
  const batches$ = gate.source(fromHighland(highland(keys).map((k: string) => ({ k, v: db.getBinary(k) as Buffer })))).pipe(
    map(({ k, v }) => ({ ...images[0], id: k, data: new Float32Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.length)) })),
    settle(gate),
    bufferCount(64),
    map((imgs, step) => assembleBatch(imgs, imgs.map((_, i) => i), config.augment, 0, 0, step)),
  );
  const events = await lastValueFrom(batches$.pipe(train({ config, totalSteps: steps + 1, gate, highWaterMark: 2 }), toArray()));
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  // The first step includes TensorFlow's warm-up; judge the steady state.
  const steady = events.filter((e) => e.type === 'step' && e.step > 0) as Array<{ stepTimeMs: number; waitFraction: number; imagesPerSec: number }>;
  const busy = steady.reduce((a, e) => a + e.stepTimeMs, 0);
  const wait = steady.reduce((a, e) => a + (e.stepTimeMs * e.waitFraction) / (1 - e.waitFraction), 0);
  return {
    name: `train/waiting/${size}px`, unit: 'fraction', value: wait / (busy + wait),
    config: { source: 'LMDB cache -> Gate -> seeded crops (main thread) -> batches -> pull', batch: 64, crops: `2x${size} + 6x${local}`, steps, load: os.loadavg()[0] },
  };
}

function child(args: string[], env: Record<string, string> = {}): BenchResult {
  const out = execFileSync(process.execPath, [...process.execArgv, here, '--child', ...args], { env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').pop() as string) as BenchResult;
}

const variants: Benchmark[] = process.env.MEDSSL_BENCH_VARIANTS ? [
  { name: 'train/composed-bn', run: async () => [child(['rate', '64', '28', '4', 'composed-bn'], { MEDSSL_FUSED_BN: '0' })] },
  { name: 'train/onednn-off', run: async () => [child(['rate', '64', '28', '4', 'onednn-off'], { TF_ENABLE_ONEDNN_OPTS: '0' })] },
  { name: 'train/intraop-1', run: async () => [child(['rate', '64', '28', '4', 'intraop-1'], { TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1' })] },
] : [];

export const benchmarks: Benchmark[] = [
  { name: 'train/64px', run: async () => [child(['rate', '64', '28', '4', 'swav'])] },
  { name: 'train/96px', run: async () => [child(['rate', '96', '40', '3', 'swav'])] },
  { name: 'train/waiting', run: async () => [child(['wait', '64', '28', '6'])] },
  { name: 'train-step/functional', run: async () => [child(['functional', '10'])] },
  ...variants,
];

if (process.argv.includes('--child')) {
  const [kind, ...a] = process.argv.slice(process.argv.indexOf('--child') + 1);
  const r = kind === 'rate' ? await trainerRate(Number(a[0]), Number(a[1]), Number(a[2]), a[3])
    : kind === 'wait' ? await waitingFraction(Number(a[0]), Number(a[1]), Number(a[2]))
      : await functionalStepNet(Number(a[0]));
  process.stdout.write(`${JSON.stringify(r)}\n`);
}
