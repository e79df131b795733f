// Multi-crop throughput: 2 x 224 + 6 x 96 crops of a 512 x 512 CT slice (brain window), with gamma, linear and
// noise on every crop, the work torchvision's RandomResizedCrop pipeline does at about 310 sets/s on one core here.
// Reported: the pure function on the main thread, the worker pool with 1 worker, and with one worker per core
// (sets/s and sets/s per core). Pixel buffers go to the workers, and crop sets come back, without copies.
import fs from 'node:fs';
import os from 'node:os';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, tap } from 'rxjs';
import type { Benchmark, BenchResult } from './harness.js';
import { AugmentConfig, NormalizeConfig } from '../schemas/config.js';
import type { DecodedImage, NormalizedImage } from '../schemas/records.js';
import { FailureLog } from '../pipeline/core/failures.js';
import { Gate, settle } from '../pipeline/core/flow.js';
import { random } from '../pipeline/core/random.js';
import { readNpy } from '../stages/source/npy.js';
import { normalizeImage } from '../stages/normalize/normalize.js';
import { augment, multiCrop } from '../stages/augment/augment.js';
import { CropBuffers } from '../stages/augment/buffers.js';

export const BENCH_AUGMENT = AugmentConfig.parse({
  global: { count: 2, size: 224, scale: [0.14, 1] },
  local: { count: 6, size: 96, scale: [0.05, 0.14] },
  gamma: { p: 1 }, linear: { p: 1 }, noise: { p: 1 }, energy: { p: 0 }, blur: { p: 0 },
});

function ctSlice(): NormalizedImage {
  // bench/ under the sources, dist/bench/ when compiled: the fixture is at the project root either way.
  const root = new URL(import.meta.url.includes('/dist/bench/') ? '../../' : '../', import.meta.url);
  const here = fileURLToPath(new URL('fixtures/ct/ct-slice-512.npy.gz', root));
  const a = readNpy(zlib.gunzipSync(fs.readFileSync(here)), 'ct-slice-512.npy');
  const decoded: DecodedImage = {
    id: 'ct', sourceId: 'ct', path: here, format: 'dicom', frame: 0, frames: 1, modality: 'CT', rows: 512, cols: 512, samples: 1,
    dtype: 'int16', data: a.data, photometric: 'MONOCHROME2', rescale: { slope: 1, intercept: -1024 }, spacing: null,
  };
  return normalizeImage(decoded, NormalizeConfig.parse({ ct: { mode: 'channels', windows: [{ center: 40, width: 80 }] } }));
}

/** Wall-clock rate and rate per CPU-second of the whole process (all threads): the second is what the work costs,
 * and stays meaningful when other processes share the cores. For the pool, also the CPU time per set of the main
 * thread and of all other threads (the workers, and V8's helpers), where Linux tells it. */
interface Rate { wall: number; cpu: number; mainMs?: number; otherMs?: number }

/** This process's main thread's time on a CPU so far, in ns (Linux's schedstat), or undefined elsewhere. */
function mainThreadNs(): number | undefined {
  try {
    return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return undefined;
  }
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

function inline(image: NormalizedImage, sets: number, warm = 300): Rate {
  const source = random(0);
  for (let i = 0; i < warm; i++) multiCrop({ ...image, id: `warm-${i}` }, BENCH_AUGMENT, source, 0);
  const c0 = process.cpuUsage(), t0 = performance.now();
  for (let i = 0; i < sets; i++) multiCrop({ ...image, id: `ct-${i}` }, BENCH_AUGMENT, source, 0);
  return { wall: sets / ((performance.now() - t0) / 1000), cpu: sets / cpuSeconds(c0) };
}

/** A running augment pipeline, fed on demand: `run(n)` lets n more images in and measures until their n sets are out. */
interface Pool { run(sets: number): Promise<Rate>; stop(): Promise<void> }

function startPool(image: NormalizedImage, workers: number): Pool {
  const failures = new FailureLog();
  const gate = new Gate({ window: 4 * workers });
  // Each image is in shared memory, read by the worker in place: the main thread copies and allocates nothing per
  // set, as with an owned buffer (a cache read), which moves to the worker. A view on a private buffer would cost
  // one copy into a reused shared slot on the main thread (MEDSSL_BENCH_INPUT=view measures that).
  const view = process.env.MEDSSL_BENCH_INPUT === 'view';
  const backing = new Float32Array(view ? new ArrayBuffer((image.data.length + 16) * 4) : new SharedArrayBuffer(image.data.length * 4));
  backing.set(image.data, view ? 16 : 0);
  // The source yields only what run() has asked for, then waits: between runs the pool is idle, its threads and
  // compiled code kept, so a run measures steady work without thread start or warm-up.
  let credit = 0, stopped = false, wake: (() => void) | null = null;
  async function* images() {
    for (let i = 0; ; i++) {
      while (credit === 0 && !stopped) await new Promise<void>((resolve) => { wake = resolve; });
      if (stopped) return;
      credit--;
      yield { ...image, id: `ct-${i}`, data: view ? backing.subarray(16) : backing };
    }
  }
  const poke = () => { const w = wake; wake = null; w?.(); };
  // The consumer hands each set's buffer back, as toBatches does in the training pipeline (CropBuffers).
  const buffers = new CropBuffers();
  let count = 0, target = 0, reached: (() => void) | null = null;
  const done = lastValueFrom(gate.source(images()).pipe(
    augment({ failures, config: BENCH_AUGMENT, seed: 0, epoch: 0, workers, buffers }),
    settle(gate),
    tap((set) => {
      buffers.release(set);
      if (++count === target) reached?.();
    }),
  ), { defaultValue: undefined });
  return {
    async run(sets) {
      const c0 = process.cpuUsage(), t0 = performance.now(), m0 = mainThreadNs();
      await new Promise<void>((resolve) => { reached = resolve; target = count + sets; credit += sets; poke(); });
      const seconds = (performance.now() - t0) / 1000, cpu = cpuSeconds(c0), m1 = mainThreadNs();
      if (failures.records.length) throw new Error(`pool failed: ${JSON.stringify(failures.records[0])}`);
      const main = m0 === undefined || m1 === undefined ? undefined : (m1 - m0) / 1e9;
      return { wall: sets / seconds, cpu: sets / cpu, ...(main === undefined ? {} : { mainMs: (1000 * main) / sets, otherMs: (1000 * (cpu - main)) / sets }) };
    },
    async stop() {
      stopped = true;
      poke();
      await done;
    },
  };
}

const cores = Math.max(1, os.availableParallelism());
const config = { crops: '2x224 + 6x96', source: '512x512 CT slice, brain window', input: process.env.MEDSSL_BENCH_INPUT === 'view' ? 'view on a private buffer (copied)' : 'shared memory (read in place)', augmentations: 'gamma, linear, noise (p = 1), flip 0.5', cores, nodeFlags: process.execArgv.join(' '), peer: 'torchvision RandomResizedCrop ~310 sets/s on one core' };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * The pool with 1 worker and with one per core, both started once and warmed up, then fed in alternating short runs
 * (1, all; all, 1; ...). This machine's speed moves by tens of percent within seconds (the steadiness figure), so
 * two long runs one after the other compare two different machines; each round's ratio compares runs a fraction of
 * a second apart, and the median over many rounds is what is reported, with the range beside it.
 */
async function rounds(image: NormalizedImage, sets: number, count: number): Promise<{ one: Rate[]; all: Rate[]; scaling: number[]; steadiness: number[] }> {
  const one: Rate[] = [], all: Rate[] = [], scaling: number[] = [], steadiness: number[] = [];
  const single = startPool(image, 1), every = startPool(image, cores);
  try {
    await single.run(300);
    await every.run(300 * cores);
    const runOne = async () => { one.push(await single.run(sets)); };
    const runAll = async () => { all.push(await every.run(sets * cores)); };
    for (let r = 0; r < count; r++) {
      // The same single-thread work before each round: how much the machine's own speed moves during the bench.
      if (r % 3 === 0) steadiness.push(inline(image, 100, 20).wall);
      if (r % 2 === 0) { await runOne(); await runAll(); } else { await runAll(); await runOne(); }
      scaling.push(all[r].wall / one[r].wall);
    }
  } finally {
    await Promise.all([single.stop(), every.stop()]);
  }
  return { one, all, scaling, steadiness };
}

/**
 * What the pool's own overhead leaves of perfect scaling, from CPU times measured in the all-cores runs themselves
 * (so a slow spell of the machine slows both sides alike). With W workers on W cores, each set costs m ms on the main
 * thread and w ms elsewhere (workers and V8's helpers), so W cores make W / (m + w) sets per ms; one worker alone,
 * with the main thread on another core, makes 1 / w. Their ratio, W / (1 + m / w), is the most the measured scaling
 * can reach here; what it falls short of that is the machine's noise, or workers left idle.
 */
function ceiling(all: Rate[]): BenchResult[] {
  const main = all.flatMap((r) => (r.mainMs === undefined ? [] : [r.mainMs]));
  const other = all.flatMap((r) => (r.otherMs === undefined ? [] : [r.otherMs]));
  if (main.length === 0) return [];
  const m = median(main), w = median(other);
  const perRound = { workers: cores, rounds: all.length, statistic: 'median over rounds', source: 'Linux schedstat of the main thread; process CPU time' };
  return [
    { name: 'augment/multicrop/main-thread-ms-per-set', unit: 'ms', value: m, config: { ...config, ...perRound, range: range(main) } },
    { name: 'augment/multicrop/worker-ms-per-set', unit: 'ms', value: w, config: { ...config, ...perRound, range: range(other) } },
    { name: 'augment/multicrop/scaling-ceiling', unit: 'x (all cores / 1 worker)', value: cores / (1 + m / w), config: { ...config, ...perRound, formula: 'cores / (1 + main / worker)' } },
  ];
}

const range = (xs: number[]) => [Math.min(...xs), Math.max(...xs)].map((x) => Number(x.toFixed(3)));

export const benchmarks: Benchmark[] = [
  {
    name: 'augment/multicrop',
    run: async (): Promise<BenchResult[]> => {
      const image = ctSlice();
      const sets = Number(process.env.MEDSSL_BENCH_SETS ?? 200);
      const count = Number(process.env.MEDSSL_BENCH_ROUNDS ?? 30);
      const mainThread = inline(image, 600);
      const { one, all, scaling, steadiness } = await rounds(image, sets, count);
      const load = os.loadavg()[0];
      const wall = (rates: Rate[]) => median(rates.map((r) => r.wall));
      const cpu = (rates: Rate[]) => median(rates.map((r) => r.cpu));
      const perRound = { rounds: count, statistic: 'median over rounds', load };
      return [
        { name: 'augment/multicrop/main-thread', unit: 'sets/s', value: mainThread.wall, config: { ...config, workers: 0, sets: 600, load } },
        // 100 sets on the main thread before each round; the spread is the machine's, since the work is the same.
        { name: 'augment/multicrop/steadiness', unit: 'max / min sets/s', value: Math.max(...steadiness) / Math.min(...steadiness), config: { ...config, workers: 0, sets: 100, probes: steadiness.length, range: range(steadiness) } },
        { name: 'augment/multicrop/1-worker', unit: 'sets/s', value: wall(one), config: { ...config, workers: 1, sets, ...perRound, range: range(one.map((r) => r.wall)) } },
        { name: `augment/multicrop/${cores}-workers`, unit: 'sets/s', value: wall(all), config: { ...config, workers: cores, sets: sets * cores, ...perRound, range: range(all.map((r) => r.wall)) } },
        { name: 'augment/multicrop/per-core', unit: 'sets/s/core', value: wall(all) / cores, config: { ...config, workers: cores, ...perRound, range: range(all.map((r) => r.wall / cores)) } },
        // Each round's all-cores rate over its own 1-worker rate, seconds apart: the drift between rounds cancels.
        { name: 'augment/multicrop/scaling', unit: 'x (all cores / 1 worker)', value: median(scaling), config: { ...config, workers: cores, ...perRound, range: range(scaling) } },
        // Per CPU-second of the process (main thread + workers): independent of how busy the machine is.
        { name: 'augment/multicrop/main-thread-cpu', unit: 'sets/cpu-s', value: mainThread.cpu, config: { ...config, workers: 0 } },
        { name: 'augment/multicrop/1-worker-cpu', unit: 'sets/cpu-s', value: cpu(one), config: { ...config, workers: 1, ...perRound } },
        { name: `augment/multicrop/${cores}-workers-cpu`, unit: 'sets/cpu-s', value: cpu(all), config: { ...config, workers: cores, ...perRound } },
        ...ceiling(all),
      ];
    },
  },
];
