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
import { FailureLog } from '../pipeline/failures.js';
import { Gate, settle } from '../pipeline/flow.js';
import { random } from '../pipeline/random.js';
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
 * and stays meaningful when other processes share the cores. */
interface Rate { wall: number; cpu: number }

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

function inline(image: NormalizedImage, sets: number): Rate {
  const source = random(0);
  for (let i = 0; i < 300; i++) multiCrop({ ...image, id: `warm-${i}` }, BENCH_AUGMENT, source, 0);
  const c0 = process.cpuUsage(), t0 = performance.now();
  for (let i = 0; i < sets; i++) multiCrop({ ...image, id: `ct-${i}` }, BENCH_AUGMENT, source, 0);
  return { wall: sets / ((performance.now() - t0) / 1000), cpu: sets / cpuSeconds(c0) };
}

async function pool(image: NormalizedImage, sets: number, workers: number): Promise<Rate> {
  const failures = new FailureLog();
  const warm = 150 * workers;
  const window = 4 * workers;
  const gate = new Gate({ window });
  // Each image is in shared memory, read by the worker in place: the main thread copies and allocates nothing per
  // set, as with an owned buffer (a cache read), which moves to the worker. A view on a private buffer would cost
  // one copy into a reused shared slot on the main thread (MEDSSL_BENCH_INPUT=view measures that).
  const view = process.env.MEDSSL_BENCH_INPUT === 'view';
  const backing = new Float32Array(view ? new ArrayBuffer((image.data.length + 16) * 4) : new SharedArrayBuffer(image.data.length * 4));
  backing.set(image.data, view ? 16 : 0);
  function* images() {
    for (let i = 0; i < warm + sets; i++) yield { ...image, id: `ct-${i}`, data: view ? backing.subarray(16) : backing };
  }
  // One subscription: the clock starts when the warm-up sets are out, so thread start and JIT warm-up of the
  // workers are not in the figure (they are paid once per run, not per set).
  // The consumer hands each set's buffer back, as toBatches does in the training pipeline (CropBuffers).
  const buffers = new CropBuffers();
  let count = 0, c0 = process.cpuUsage(), t0 = 0;
  await lastValueFrom(gate.source(images()).pipe(
    augment({ failures, config: BENCH_AUGMENT, seed: 0, epoch: 0, workers, buffers }),
    settle(gate),
    tap((set) => {
      buffers.release(set);
      if (++count === warm) { c0 = process.cpuUsage(); t0 = performance.now(); }
    }),
  ));
  const seconds = (performance.now() - t0) / 1000;
  if (count !== warm + sets || failures.records.length) throw new Error(`pool made ${count} of ${warm + sets} sets: ${JSON.stringify(failures.records[0])}`);
  return { wall: sets / seconds, cpu: sets / cpuSeconds(c0) };
}

const cores = Math.max(1, os.availableParallelism());
const config = { crops: '2x224 + 6x96', source: '512x512 CT slice, brain window', input: process.env.MEDSSL_BENCH_INPUT === 'view' ? 'view on a private buffer (copied)' : 'shared memory (read in place)', augmentations: 'gamma, linear, noise (p = 1), flip 0.5', cores, nodeFlags: process.execArgv.join(' '), peer: 'torchvision RandomResizedCrop ~310 sets/s on one core' };

export const benchmarks: Benchmark[] = [
  {
    name: 'augment/multicrop',
    run: async (): Promise<BenchResult[]> => {
      const image = ctSlice();
      const sets = Number(process.env.MEDSSL_BENCH_SETS ?? 600);
      const mainThread = inline(image, sets);
      const one = await pool(image, sets, 1);
      const all = await pool(image, sets * Math.min(cores, 4), cores);
      const load = os.loadavg()[0];
      return [
        { name: 'augment/multicrop/main-thread', unit: 'sets/s', value: mainThread.wall, config: { ...config, workers: 0, sets, load } },
        { name: 'augment/multicrop/1-worker', unit: 'sets/s', value: one.wall, config: { ...config, workers: 1, sets, load } },
        { name: `augment/multicrop/${cores}-workers`, unit: 'sets/s', value: all.wall, config: { ...config, workers: cores, sets: sets * Math.min(cores, 4), load } },
        { name: 'augment/multicrop/per-core', unit: 'sets/s/core', value: all.wall / cores, config: { ...config, workers: cores, load } },
        { name: 'augment/multicrop/scaling', unit: 'x (all cores / 1 worker)', value: all.wall / one.wall, config: { ...config, workers: cores, load } },
        // Per CPU-second of the process (main thread + workers): independent of how busy the machine is.
        { name: 'augment/multicrop/main-thread-cpu', unit: 'sets/cpu-s', value: mainThread.cpu, config: { ...config, workers: 0 } },
        { name: 'augment/multicrop/1-worker-cpu', unit: 'sets/cpu-s', value: one.cpu, config: { ...config, workers: 1 } },
        { name: `augment/multicrop/${cores}-workers-cpu`, unit: 'sets/cpu-s', value: all.cpu, config: { ...config, workers: cores } },
      ];
    },
  },
];
