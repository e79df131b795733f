// Data-parallel training under MPI: `npm run bench -- distributed`.
//
// The trainer's SwAV step at the 64 px size of bench/train-sizes.json (the small ResNet, 361k parameters, global batch
// 64), one TensorFlow thread pair per rank on this 2-core machine:
//
//   distributed/1-rank-graph   one process, the default graph step              (local batch 64)
//   distributed/1-rank-eager   one process, MEDSSL_GRAPH=0: what a rank runs     (local batch 64)
//   distributed/2-ranks        mpirun -np 2, the data-parallel eager step        (local batch 32 each)
//
// each in its own process (mpirun for the last; its waiting rank yields its core, OMPI_MCA_mpi_yield_when_idle=1,
// since both ranks share this machine's two cores), in alternating rounds so that all see the same machine. The 2-rank
// line carries the collectives per step (count, bytes, milliseconds, waiting for the slower rank included) and the
// fused gradient allreduce alone, timed after a barrier (no waiting). `distributed/gradient-bytes` gives the
// gradient bytes of the bench models, and `distributed/estimate` turns them into a ring-allreduce estimate for 8 and 64
// ranks over 25 and 100 Gb/s networks: an estimate from a formula, not a measurement (stages/train/README.md).
// Without mpirun, the 2-rank line is skipped with one line on stderr.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Benchmark, BenchResult } from './harness.js';

const here = fileURLToPath(import.meta.url);
const projectRoot = path.resolve(path.dirname(here), here.endsWith('.ts') ? '..' : path.join('..', '..'));
const sizes = () => (JSON.parse(fs.readFileSync(path.join(projectRoot, 'bench', 'train-sizes.json'), 'utf8')) as { sizes: Record<string, Record<string, unknown>> }).sizes;
const SIZE = '64px';
const STEPS = Number(process.env.MEDSSL_BENCH_STEPS ?? 4);
const ROUNDS = Number(process.env.MEDSSL_BENCH_ROUNDS ?? 2);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// ---------------------------------------------------------------- worker: one process, or one rank of mpirun

async function worker(): Promise<void> {
  const { openWorld } = await import('../pipeline/core/mpi.js');
  const world = openWorld();
  const { backendInfo } = await import('../pipeline/core/tensorflow.js');
  const { parseConfig } = await import('../schemas/config.js');
  const { Trainer } = await import('../stages/train/trainer.js');
  const { random } = await import('../pipeline/core/random.js');
  const config = parseConfig(sizes()[SIZE]);
  const ranks = world?.size ?? 1;
  const rank = world?.rank ?? 0;
  const b = config.train.batchSize / ranks;
  const { global: g, local: l } = config.augment;
  const views = (seed: number) => [...Array.from({ length: g.count }, () => ['global', g.size] as const), ...Array.from({ length: l.count }, () => ['local', l.size] as const)]
    .map(([kind, size], v) => {
      const rng = random(config.seed).stream({ epoch: seed, sample: rank, crop: v, purpose: 'bench/distributed' });
      const data = new Float32Array(b * size * size);
      for (let i = 0; i < data.length; i++) data[i] = rng.normal();
      return { kind, size, channels: 1, data };
    });
  const batches = [0, 1].map((s) => ({ epoch: 0, step: s, ids: Array.from({ length: b }, (_, i) => `${s}/${rank}/${i}`), modalities: Array(b).fill('CT'), views: views(s), numLabels: 0 }));
  const trainer = new Trainer(config, 1, 0, world && world.size > 1 ? { world } : {});
  let step = 0;
  const run = async () => trainer.trainStep({ ...batches[step % 2], step: step++ }, 1000);
  // Warm-up: the first step of a structure records and compiles its graph (one process), or pays first-call costs.
  await run();
  await run();
  world?.barrier();
  const before = world ? JSON.parse(JSON.stringify(world.stats)) as typeof world.stats : null;
  const times: number[] = [];
  let loss = NaN;
  for (let s = 0; s < STEPS; s++) {
    const t0 = performance.now();
    loss = (await run()).loss;
    times.push(performance.now() - t0);
  }
  const out: Record<string, unknown> = {
    ranks, localBatch: b, stepMs: median(times), stepsMs: times, loss, threads: backendInfo.threads, graph: trainer.graphStats.graphSteps > 0,
    params: trainer.store.count((n) => !/moving_/.test(n)), load: os.loadavg()[0],
  };
  if (world && before) {
    const after = world.stats;
    const per = (x: number) => x / STEPS;
    const fused = { calls: after.byTag.step.calls - (before.byTag.step?.calls ?? 0), bytes: after.byTag.step.bytes - (before.byTag.step?.bytes ?? 0), ms: after.byTag.step.ms - (before.byTag.step?.ms ?? 0) };
    out.collectives = {
      callsPerStep: per(after.calls - before.calls), bytesPerStep: per(after.bytes - before.bytes), msPerStep: per(after.ms - before.ms),
      byTag: Object.fromEntries(Object.entries(after.byTag).map(([k, v]) => [k, { callsPerStep: per(v.calls - (before.byTag[k]?.calls ?? 0)), bytesPerStep: per(v.bytes - (before.byTag[k]?.bytes ?? 0)), msPerStep: per(v.ms - (before.byTag[k]?.ms ?? 0)) }])),
    };
    // The fused allreduce alone: the same bytes, every rank ready (a barrier first), 20 times.
    const buf = new Float32Array(fused.bytes / fused.calls / 4);
    const alone: number[] = [];
    for (let i = 0; i < 20; i++) {
      world.barrier();
      const t0 = performance.now();
      world.allreduce(buf, 'sum', 'bench');
      alone.push(performance.now() - t0);
    }
    out.fusedAllreduce = { bytes: buf.byteLength, inStepMs: fused.ms / fused.calls, aloneMs: median(alone) };
  }
  trainer.dispose();
  if (rank === 0) process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** Trainable parameters of a config (the gradient the fused allreduce carries is 4 bytes each). */
async function countParams(): Promise<void> {
  const { parseConfig } = await import('../schemas/config.js');
  const { Trainer } = await import('../stages/train/trainer.js');
  const out: Record<string, unknown> = {};
  const all = sizes();
  const models: Record<string, Record<string, unknown>> = {
    // bench/train-sizes.json's 64 px size: the small ResNet (width 16) of the steps above, K 64.
    [SIZE]: all['64px'],
    // Its 224 px size: ResNet-18, projection 2048 -> 128, K 3000.
    'resnet18-224px': all['224px'],
    // The same with ResNet-50 (the paper's encoder family).
    'resnet50-224px': { ...all['224px'], model: { ...(all['224px'].model as object), arch: 'resnet50' } },
  };
  for (const [name, raw] of Object.entries(models)) {
    const config = parseConfig(raw);
    const trainer = new Trainer(config, 1, 0);
    // Batch-norm layers of the encoder (each runs once per crop resolution) and of the projection head (once).
    const bnLayers = [...trainer.store.vars.keys()].filter((n) => n.endsWith('/gamma') && !n.startsWith('head_')).length;
    out[name] = { params: trainer.store.count((n) => trainer.store.trainable.has(n)), bnLayers, resolutions: new Set([config.augment.global.size, config.augment.local.size]).size, sinkhornIterations: config.train.sinkhornIterations };
    trainer.dispose();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------- driver

function launch(kind: '1-rank-graph' | '1-rank-eager' | '2-ranks'): Record<string, unknown> | null {
  const args = [...process.execArgv, here, '--worker'];
  const env = { ...process.env, TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1', ...(kind === '1-rank-eager' ? { MEDSSL_GRAPH: '0' } : {}) };
  let r;
  if (kind === '2-ranks') {
    const root = process.getuid?.() === 0;
    r = spawnSync('mpirun', ['--oversubscribe', '--bind-to', 'none', '-np', '2', process.execPath, ...args], {
      encoding: 'utf8', env: { ...env, OMPI_MCA_btl: 'self,vader,tcp', OMPI_MCA_btl_tcp_if_include: 'lo', OMPI_MCA_oob_tcp_if_include: 'lo', OMPI_MCA_btl_vader_single_copy_mechanism: 'none', OMPI_MCA_mpi_yield_when_idle: '1', ...(root ? { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' } : {}) },
    });
  } else {
    r = spawnSync(process.execPath, args, { encoding: 'utf8', env });
  }
  if (r.status !== 0) throw new Error(`${kind} worker exited with ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop() as string) as Record<string, unknown>;
}

const mpirunHere = () => spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status === 0;

/** Ring allreduce of S bytes over N ranks: 2 (N - 1) / N x S at the link rate, plus 2 (N - 1) latencies; a small allreduce (recursive doubling): 2 log2 N latencies. */
export function allreduceEstimate(bytes: number, ranks: number, gbitPerS: number, latencyUs: number, smallCalls: number): { fusedMs: number; smallMs: number } {
  const fusedMs = (2 * (ranks - 1) / ranks) * bytes / (gbitPerS * 1e9 / 8) * 1e3 + 2 * (ranks - 1) * latencyUs / 1e3;
  const smallMs = smallCalls * 2 * Math.log2(ranks) * latencyUs / 1e3;
  return { fusedMs, smallMs };
}

/** The networks of the estimate: link rate and per-message latency (assumed, typical published figures). */
const NETWORKS = [
  { name: '25 Gb/s Ethernet (TCP)', gbit: 25, latencyUs: 25 },
  { name: '100 Gb/s InfiniBand / RoCE', gbit: 100, latencyUs: 3 },
];

async function distributed(): Promise<BenchResult[]> {
  const kinds: Array<'1-rank-graph' | '1-rank-eager' | '2-ranks'> = ['1-rank-graph', '1-rank-eager', ...(mpirunHere() ? ['2-ranks' as const] : [])];
  if (!mpirunHere()) process.stderr.write('bench: distributed/2-ranks not run: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)\n');
  const rounds: Record<string, Array<Record<string, unknown>>> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of kinds) {
      const res = launch(kind) as Record<string, unknown>;
      (rounds[kind] ??= []).push(res);
      process.stderr.write(`bench: distributed/${kind} round ${r + 1}/${ROUNDS}: ${(res.stepMs as number).toFixed(0)} ms per step (load ${(res.load as number).toFixed(1)})\n`);
    }
  }
  const out: BenchResult[] = [];
  const stepMs: Record<string, number> = {};
  for (const [kind, rs] of Object.entries(rounds)) {
    stepMs[kind] = median(rs.map((x) => x.stepMs as number));
    const last = rs[rs.length - 1];
    out.push({
      name: `distributed/${kind}`, unit: 'ms per step', value: stepMs[kind],
      config: {
        size: SIZE, globalBatch: 64, localBatch: last.localBatch, ranks: last.ranks, threadsPerRank: last.threads, graph: last.graph, params: last.params,
        imagesPerSec: (64 * 1000) / stepMs[kind], rounds: rs.length, stepsPerRound: STEPS, perRound: rs.map((x) => x.stepMs), load: rs.map((x) => x.load),
        ...(last.collectives ? { collectives: last.collectives, fusedAllreduce: { ...(last.fusedAllreduce as object), aloneMsPerRound: rs.map((x) => (x.fusedAllreduce as { aloneMs: number }).aloneMs) } } : {}),
      },
    });
  }
  const counts = (() => {
    const r = spawnSync(process.execPath, [...process.execArgv, here, '--count'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`--count: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() as string) as Record<string, { params: number; bnLayers: number; resolutions: number; sinkhornIterations: number }>;
  })();
  out.push({ name: 'distributed/gradient-bytes', unit: 'bytes', value: counts[SIZE].params * 4, config: Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, { ...v, gradientBytes: v.params * 4 }])) });
  // The estimate: weak scaling (each rank keeps its local batch), the fused allreduce after the backward pass (no
  // overlap), plus the step's small allreduces (batch norm forward and backward per layer and resolution, Sinkhorn, the
  // step agreement) at latency cost each.
  const perRankMs = stepMs['2-ranks'] ?? stepMs['1-rank-eager'];
  for (const [model, c] of Object.entries(counts)) {
    // Forward and backward for each encoder batch norm at each resolution and the head's, Sinkhorn's total and
    // iterations (a maximum and a sum each), the step's agreement: 59 for the 64 px model, as the 2-rank run counts.
    const small = 2 * (c.bnLayers * c.resolutions + 1) + 2 * (1 + c.sinkhornIterations) + 1;
    for (const ranks of [8, 64]) {
      for (const net of NETWORKS) {
        const e = allreduceEstimate(c.params * 4, ranks, net.gbit, net.latencyUs, small);
        const commMs = e.fusedMs + e.smallMs;
        out.push({
          name: `distributed/estimate/${model}/${ranks}-ranks/${net.gbit}gbit`, unit: 'ms of communication per step (estimate)', value: commMs,
          config: {
            estimate: true, model, ranks, network: net.name, latencyUsAssumed: net.latencyUs, gradientBytes: c.params * 4, fusedAllreduceMs: e.fusedMs, smallAllreduces: small, smallAllreducesMs: e.smallMs,
            // A step 9x the communication spends 10% of its time communicating.
            stepTimeForTenPercentOverheadMs: commMs * 9,
            ...(model === SIZE ? { perRankStepMsMeasuredHere: perRankMs, efficiencyAtThatStepTime: perRankMs / (perRankMs + commMs) } : {}),
          },
        });
      }
    }
  }
  return out;
}

export const benchmarks: Benchmark[] = [{ name: 'distributed', run: distributed }];

if (process.argv.includes('--worker')) await worker();
if (process.argv.includes('--count')) await countParams();
