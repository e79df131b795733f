// Trainer throughput against PyTorch, side by side: `npm run bench -- train`.
//
// For each size of bench/train-sizes.json (64 px: the small ResNet; 128 and 224 px: ResNet-18 with its ImageNet stem)
// one medssl worker and one PyTorch worker (bench/train-peer.py) are started fresh, each warms up, and then they run
// the same SwAV step in alternating rounds (medssl, PyTorch NCHW, PyTorch channels-last, again), so that both see
// the same machine: its speed drifts by up to 2.5x between hours. Each result line gives the medians and ranges over
// the rounds; the `train/<size>/ratio` line is the median over rounds of medssl / (the faster PyTorch format in that
// round). Peak RSS is per worker process, so per size. Without torch (no `.peer/bin/python`, nor
// MEDSSL_PEER_PYTHON) the peer is skipped with one line and medssl's figures still print.
//
// Other results: `train/waiting` (the trainer fed from an LMDB cache through the Gate: the fraction of time it waits
// for data), `train/recipes` (examples/recipes and the config defaults: images/s and peak RSS), and with
// MEDSSL_BENCH_VARIANTS=1 the variants (graph steps off, oneDNN off, one thread, composed batch norm; at 128 px,
// direct convolutions on maps smaller than the kernel) in alternating rounds with the default.
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Benchmark, BenchResult } from './harness.js';

const here = fileURLToPath(import.meta.url);
// bench/ from the sources, dist/bench/ once compiled.
const projectRoot = path.resolve(path.dirname(here), here.endsWith('.ts') ? '..' : path.join('..', '..'));
const sizesFile = path.join(projectRoot, 'bench', 'train-sizes.json');
const peerScript = path.join(projectRoot, 'bench', 'train-peer.py');
const pneumonia = () => path.join(projectRoot, 'fixtures', 'data', 'medmnist', 'pneumoniamnist.npz');

type SizeConfig = Record<string, unknown> & { augment: { global: { count: number; size: number }; local: { count: number; size: number } }; train: { batchSize: number } };
const readSizes = (): Record<string, SizeConfig> => (JSON.parse(fs.readFileSync(sizesFile, 'utf8')) as { sizes: Record<string, SizeConfig> }).sizes;

/** Rounds and steps per round for each size (the 224 px ResNet-18 step takes tens of seconds on 2 cores). */
const PLAN: Record<string, { rounds: number; steps: number }> = {
  '64px': { rounds: 5, steps: 3 },
  '128px': { rounds: 3, steps: 2 },
  '224px': { rounds: 3, steps: 1 },
};

// ---------------------------------------------------------------- the medssl worker (a child process per size)

/** Random-normal batches of the size's crop shapes: a step's speed does not depend on the data (as the peer does). */
async function benchBatches(config: import('../schemas/config.js').Config, n: number) {
  const { random } = await import('../pipeline/core/random.js');
  const { global: g, local: l } = config.augment;
  const b = config.train.batchSize;
  const views = (epoch: number) => [...Array.from({ length: g.count }, () => ['global', g.size] as const), ...Array.from({ length: l.count }, () => ['local', l.size] as const)]
    .map(([kind, size], v) => {
      const rng = random(config.seed).stream({ epoch, crop: v, purpose: 'bench/train' });
      const data = new Float32Array(b * size * size);
      for (let i = 0; i < data.length; i++) data[i] = rng.normal();
      return { kind, size, channels: 1, data };
    });
  return Array.from({ length: n }, (_, s) => ({
    epoch: 0, step: s, ids: Array.from({ length: b }, (_, i) => `${s}/${i}`), modalities: Array(b).fill('CT'), views: views(s % 2), numLabels: 0,
  }));
}

async function medsslWorker(): Promise<void> {
  const { backendInfo } = await import('../pipeline/core/tensorflow.js');
  const { parseConfig } = await import('../schemas/config.js');
  const { Trainer } = await import('../stages/train/trainer.js');
  const sizes = readSizes();
  let current: { size: string; trainer: InstanceType<typeof Trainer>; batches: Awaited<ReturnType<typeof benchBatches>>; firstStepSeconds: number } | null = null;
  process.stdout.write(`${JSON.stringify({ ready: true, backend: backendInfo.backend, threads: backendInfo.threads, onednn: backendInfo.onednn })}\n`);
  const { parse } = await import('yaml');
  for await (const line of readline.createInterface({ input: process.stdin })) {
    // A size of bench/train-sizes.json, or a recipe file (with the batch size to measure it at).
    const cmd = JSON.parse(line) as { size: string; steps: number; recipe?: string; batch?: number };
    if (!current || current.size !== cmd.size) {
      current?.trainer.dispose();
      const raw = cmd.recipe ? (parse(fs.readFileSync(cmd.recipe, 'utf8')) ?? {}) as Record<string, Record<string, unknown>> : sizes[cmd.size];
      if (cmd.batch) raw.train = { ...raw.train, batchSize: cmd.batch };
      const config = parseConfig(raw);
      const trainer = new Trainer(config, 1, 0);
      const batches = await benchBatches(config, 2);
      const t0 = performance.now();
      await trainer.trainStep(batches[0], 1000); // warm-up: the graph recorded and compiled, kernel selection, allocation
      current = { size: cmd.size, trainer, batches, firstStepSeconds: (performance.now() - t0) / 1000 };
    }
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let loss = NaN;
    for (let s = 0; s < cmd.steps; s++) loss = (await current.trainer.trainStep(current.batches[s % 2], 1000)).loss;
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(c0);
    const b = current.batches[0].ids.length;
    const cfg = current.trainer.config;
    const r: BenchResult = {
      name: `train/${cmd.size}/medssl`, unit: 'images/s', value: (b * cmd.steps) / seconds,
      config: {
        backend: backendInfo.backend, device: backendInfo.device, onednn: backendInfo.onednn, threads: backendInfo.threads, steps: cmd.steps, batch: b,
        model: `${cfg.model.arch}${cfg.model.arch === 'resnet' ? ` width ${cfg.model.width} depth [${cfg.model.depth}]` : ''}, ${current.trainer.spec.stem} stem, K ${cfg.model.prototypes}`,
        crops: `${cfg.augment.global.count}x${cfg.augment.global.size} + ${cfg.augment.local.count}x${cfg.augment.local.size}`,
        graph: current.trainer.graphStats, secondsPerStep: seconds / cmd.steps, firstStepSeconds: current.firstStepSeconds,
        params: current.trainer.store.count((n) => !/moving_/.test(n)),
        userSeconds: cpu.user / 1e6, systemSeconds: cpu.system / 1e6, peakRssMB: process.resourceUsage().maxRSS / 1024, loss,
      },
    };
    process.stdout.write(`${JSON.stringify(r)}\n`);
  }
  current?.trainer.dispose();
}

// ---------------------------------------------------------------- driving workers in alternating rounds

class Worker {
  private readonly lines: AsyncIterator<string>;
  private constructor(private readonly child: ChildProcessWithoutNullStreams, readonly hello: Record<string, unknown>, lines: AsyncIterator<string>) {
    this.lines = lines;
  }

  static async start(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Worker> {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error(`${path.basename(args[args.length - 1] ?? cmd)} ended before it was ready`);
    return new Worker(child, JSON.parse(first.value) as Record<string, unknown>, lines);
  }

  async run(command: Record<string, unknown>): Promise<BenchResult> {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    const next = await this.lines.next();
    if (next.done) throw new Error('worker ended');
    const r = JSON.parse(next.value) as BenchResult & { error?: string };
    if (r.error) throw new Error(r.error);
    return r;
  }

  stop(): void {
    this.child.stdin.end();
  }
}

/** The Python with torch for the peer: MEDSSL_PEER_PYTHON, else `.peer/bin/python` (bench/train-peer.py's set-up). */
export function peerPython(): string | null {
  const candidates = [process.env.MEDSSL_PEER_PYTHON, path.join(projectRoot, '.peer', 'bin', 'python')].filter((p): p is string => !!p);
  for (const py of candidates) {
    if (spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 }).status === 0) return py;
  }
  return null;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const range = (xs: number[]) => [Math.min(...xs), Math.max(...xs)];

async function sideBySide(size: string): Promise<BenchResult[]> {
  const plan = { ...PLAN[size], ...(process.env.MEDSSL_BENCH_ROUNDS ? { rounds: Number(process.env.MEDSSL_BENCH_ROUNDS) } : {}) };
  const medssl = await Worker.start(process.execPath, [...process.execArgv, here, '--child', 'worker']);
  const py = peerPython();
  if (!py) process.stderr.write(`bench: train/${size}: PyTorch peer not run: no Python with torch (python3 -m venv .peer && .peer/bin/pip install torch==2.13.0 numpy, or set MEDSSL_PEER_PYTHON)\n`);
  const peer = py ? await Worker.start(py, [peerScript]) : null;
  const threads = os.availableParallelism();
  const rounds: Array<{ medssl: BenchResult; nchw?: BenchResult; cl?: BenchResult }> = [];
  try {
    // Warm-ups (model build, first step) happen inside each worker's first command: run one untimed round.
    await medssl.run({ size, steps: 1 });
    if (peer) {
      await peer.run({ size, steps: 1, format: 'nchw', threads });
      await peer.run({ size, steps: 1, format: 'channels_last', threads });
    }
    for (let r = 0; r < plan.rounds; r++) {
      const round: (typeof rounds)[number] = { medssl: await medssl.run({ size, steps: plan.steps }) };
      if (peer) {
        round.nchw = await peer.run({ size, steps: plan.steps, format: 'nchw', threads });
        round.cl = await peer.run({ size, steps: plan.steps, format: 'channels_last', threads });
      }
      rounds.push(round);
      process.stderr.write(`bench: train/${size} round ${r + 1}/${plan.rounds}: medssl ${round.medssl.value.toFixed(1)}` +
        (peer ? `, PyTorch ${round.nchw!.value.toFixed(1)} (NCHW) / ${round.cl!.value.toFixed(1)} (channels-last)` : '') + ' images/s\n');
    }
  } finally {
    medssl.stop();
    peer?.stop();
  }
  const load = os.loadavg()[0];
  const summary = (name: string, results: BenchResult[], extra: Record<string, unknown> = {}): BenchResult => ({
    name, unit: 'images/s', value: median(results.map((x) => x.value)),
    config: { ...results[results.length - 1].config, rounds: results.length, range: range(results.map((x) => x.value)), peakRssMB: Math.max(...results.map((x) => Number(x.config.peakRssMB))), load, ...extra },
  });
  const out = [summary(`train/${size}/medssl`, rounds.map((r) => r.medssl))];
  if (peer) {
    out.push(summary(`train/${size}/pytorch-nchw`, rounds.map((r) => r.nchw!)), summary(`train/${size}/pytorch-channels-last`, rounds.map((r) => r.cl!)));
    const ratios = rounds.map((r) => r.medssl.value / Math.max(r.nchw!.value, r.cl!.value));
    out.push({
      name: `train/${size}/ratio`, unit: 'medssl / PyTorch', value: median(ratios),
      config: { against: 'the faster PyTorch memory format of each round', rounds: ratios.length, range: range(ratios), perRound: ratios, torch: peer.hello.torch, load },
    });
  }
  return out;
}

// ---------------------------------------------------------------- the trainer fed by the pipeline

/** The trainer fed from an LMDB cache through Gate -> crops -> batches -> pull: how long does it wait for data? */
async function waitingFraction(size: number, local: number, steps: number): Promise<BenchResult> {
  const { open } = await import('lmdb');
  const { Gate, settle } = await import('../pipeline/core/flow.js');
  const { parseConfig } = await import('../schemas/config.js');
  const { readMedmnist, assembleBatch } = await import('../test/support/medmnist-batches.js');
  const { train } = await import('../stages/train/train.js');
  const { random } = await import('../pipeline/core/random.js');
  const { fromHighland } = await import('../pipeline/core/bridge.js');
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

/** One worker's rate for one size, in a child with `env` (environment switches act when TensorFlow starts). */
async function variantRounds(size: string, variants: Record<string, Record<string, string>>, rounds: number, steps: number): Promise<BenchResult[]> {
  const workers = Object.fromEntries(await Promise.all(Object.entries(variants).map(async ([name, env]) => [name, await Worker.start(process.execPath, [...process.execArgv, here, '--child', 'worker'], env)] as const)));
  const results: Record<string, BenchResult[]> = Object.fromEntries(Object.keys(variants).map((n) => [n, []]));
  try {
    for (const w of Object.values(workers)) await w.run({ size, steps: 1 });
    for (let r = 0; r < rounds; r++) for (const [name, w] of Object.entries(workers)) results[name].push(await w.run({ size, steps }));
  } finally {
    for (const w of Object.values(workers)) w.stop();
  }
  const base = results.default;
  return Object.entries(results).map(([name, rs]) => ({
    name: `train/${size}/variant/${name}`, unit: 'images/s', value: median(rs.map((x) => x.value)),
    config: { env: variants[name], rounds, range: range(rs.map((x) => x.value)), vsDefault: median(rs.map((x, i) => x.value / base[i].value)), onednn: rs[0].config.onednn, threads: rs[0].config.threads, load: os.loadavg()[0] },
  }));
}

/** The documented recipes (examples/recipes) and the config defaults, each in a fresh worker: images/s and peak RSS. */
async function recipes(): Promise<BenchResult[]> {
  const dir = path.join(projectRoot, 'examples', 'recipes');
  const plan: Array<{ name: string; recipe?: string; batch?: number; steps: number }> = [
    { name: 'quick', recipe: path.join(dir, 'quick.yaml'), steps: 5 },
    { name: 'standard', recipe: path.join(dir, 'standard.yaml'), steps: 3 },
    { name: 'defaults', recipe: path.join(os.tmpdir(), `medssl-defaults-${process.pid}.yaml`), steps: 2 },
    // ResNet-50 at 224 px: a 256-image step takes minutes on 2 cores, so it is measured at batch 32 (images/s per image).
    { name: 'paper', recipe: path.join(dir, 'paper.yaml'), batch: 32, steps: 1 },
  ];
  fs.writeFileSync(plan[2].recipe as string, '{}\n');
  const out: BenchResult[] = [];
  try {
    for (const p of plan) {
      const w = await Worker.start(process.execPath, [...process.execArgv, here, '--child', 'worker']);
      try {
        await w.run({ size: p.name, recipe: p.recipe, batch: p.batch, steps: 1 });
        const r = await w.run({ size: p.name, recipe: p.recipe, batch: p.batch, steps: p.steps });
        out.push({ ...r, name: `train/recipes/${p.name}`, config: { ...r.config, recipe: p.recipe && p.name !== 'defaults' ? path.relative(projectRoot, p.recipe) : 'config defaults ({})', load: os.loadavg()[0] } });
        process.stderr.write(`bench: train/recipes/${p.name}: ${r.value.toFixed(1)} images/s\n`);
      } catch (e) {
        // One recipe that cannot run here (a worker killed for memory, say) does not lose the others' figures.
        process.stderr.write(`bench: train/recipes/${p.name}: not measured: ${(e as Error).message}\n`);
      } finally {
        w.stop();
      }
    }
  } finally {
    fs.rmSync(plan[2].recipe as string, { force: true });
  }
  return out;
}

const sizes = fs.existsSync(sizesFile) ? Object.keys(readSizes()) : [];

export const benchmarks: Benchmark[] = [
  ...sizes.map((size) => ({ name: `train/${size}`, run: () => sideBySide(size) })),
  { name: 'train/waiting', run: async () => [await child(['wait', '64', '28', '6'])] },
  { name: 'train/recipes', run: recipes },
  ...(process.env.MEDSSL_BENCH_VARIANTS ? [{
    name: 'train/variants',
    run: () => variantRounds('64px', {
      default: {},
      'graph-off': { MEDSSL_GRAPH: '0' },
      'onednn-off': { TF_ENABLE_ONEDNN_OPTS: '0' },
      'intraop-1': { TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1' },
      'interop-1': { TF_NUM_INTEROP_THREADS: '1' },
      'composed-bn': { MEDSSL_FUSED_BN: '0' },
      'bfc-allocator': { TF_CPU_ALLOCATOR_USE_BFC: 'true' },
    }, 3, 3),
  }, {
    name: 'train/variants-128px',
    // ResNet-18's last stage on the 56 px crops: 2 x 2 maps, convolved as dense products or directly.
    run: () => variantRounds('128px', { default: {}, 'direct-conv': { MEDSSL_DENSE_CONV: '0' } }, 3, 2),
  }] : []),
];

async function child(args: string[]): Promise<BenchResult> {
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync(process.execPath, [...process.execArgv, here, '--child', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').pop() as string) as BenchResult;
}

if (process.argv.includes('--child')) {
  const [kind, ...a] = process.argv.slice(process.argv.indexOf('--child') + 1);
  if (kind === 'worker') await medsslWorker();
  else process.stdout.write(`${JSON.stringify(await waitingFraction(Number(a[0]), Number(a[1]), Number(a[2])))}\n`);
}
