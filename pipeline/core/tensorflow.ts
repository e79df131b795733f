// Loads TensorFlow on first use, once per process, and says which backend and device it got.
//
// Nothing here runs at import: a program that only decodes or caches never loads libtensorflow. The first property
// read of `tf` or `backendInfo` loads it.
//
// Order: tfjs-node-gpu where its binding was provisioned (scripts/setup-tensorflow.mjs does that only where a GPU
// driver is visible), tfjs-node (the native CPU backend), then the pure-JS `cpu` backend with one loud warning.
// MEDSSL_BACKEND=cpu|tensorflow|tensorflow-gpu forces a choice (an unavailable forced backend is an error).
// Where ops run is asked of the binding itself (the device its eager context places tensors on), never guessed from
// nvidia-smi.

import { createRequire } from 'node:module';
import os from 'node:os';
import type * as TF from '@tensorflow/tfjs';

export type Tf = typeof TF;
export type BackendName = 'tensorflow' | 'tensorflow-gpu' | 'cpu';

export interface BackendInfo {
  backend: BackendName;
  /** The device TensorFlow places this process's ops on, as its eager context reports it. */
  device: 'CPU' | 'GPU';
  /** libtensorflow's version for the native backends; tfjs-core's for `cpu`. */
  tensorflowVersion: string;
  tfjsVersion: string;
  threads: { intraOp: number; interOp: number };
  /** oneDNN kernels (TF_ENABLE_ONEDNN_OPTS): medssl turns them on unless the variable is set (stages/train/README.md, Speed). */
  onednn: boolean;
  /** Why a faster backend was not used, or what differs from the defaults (empty when nothing to say). */
  notes: string[];
}

const require = createRequire(import.meta.url);

/**
 * Environment libtensorflow reads when it starts, set before the binding loads (an explicit value always wins).
 * - TF_ENABLE_ONEDNN_OPTS: TensorFlow enables oneDNN by default only on some Intel CPUs; on the AMD EPYC it halves a
 *   training step (bench/train.bench.ts, `train/onednn-off`).
 * - TF_CPP_MIN_LOG_LEVEL: libtensorflow logs every kernel choice at INFO; keep warnings and errors.
 */
export function tensorflowEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  env.TF_ENABLE_ONEDNN_OPTS ??= '1';
}

function threads() {
  // libtensorflow reads these variables (process_util.cc); its default is one intra-op thread per core.
  const n = os.availableParallelism();
  return {
    intraOp: Number(process.env.TF_NUM_INTRAOP_THREADS) || n,
    interOp: Number(process.env.TF_NUM_INTEROP_THREADS) || n,
  };
}

interface NativeBinding { TF_Version?: string; isUsingGpuDevice?: () => boolean }

/**
 * libtensorflow writes start-up notices straight to file descriptor 2 while it loads ("All log messages before
 * absl::InitializeLog() ...", "oneDNN custom operations are on ...", CPU feature hints), whatever TF_CPP_MIN_LOG_LEVEL
 * says. On Linux, stderr is redirected to a temporary file while the binding loads (dup/dup2 through koffi, which
 * medssl already uses); known notices are dropped and anything else is passed on. Elsewhere the load is unchanged.
 */
const NOTICES = [/All log messages before absl::InitializeLog/, /oneDNN custom operations are on/, /cpu_feature_guard/, /To enable the following instructions/, /rebuild TensorFlow with the appropriate compiler flags/];

function withoutNotices<T>(load: () => T): T {
  if (process.platform !== 'linux') return load();
  let libc: { dup: (fd: number) => number; dup2: (a: number, b: number) => number; close: (fd: number) => number } | null = null;
  try {
    const koffi = require('koffi') as { load(name: string): { func(sig: string): (...a: number[]) => number } };
    const lib = koffi.load('libc.so.6');
    libc = { dup: lib.func('int dup(int)'), dup2: lib.func('int dup2(int, int)'), close: lib.func('int close(int)') };
  } catch {
    return load();
  }
  const fs = require('node:fs') as typeof import('node:fs');
  const file = require('node:path').join(os.tmpdir(), `medssl-tf-load-${process.pid}.log`);
  const saved = libc.dup(2);
  const tmp = fs.openSync(file, 'w+');
  libc.dup2(tmp, 2);
  try {
    return load();
  } finally {
    libc.dup2(saved, 2);
    libc.close(saved);
    fs.closeSync(tmp);
    const text = fs.readFileSync(file, 'utf8');
    fs.rmSync(file, { force: true });
    const kept = text.split('\n').filter((l) => l.trim() && !NOTICES.some((n) => n.test(l)));
    if (kept.length) process.stderr.write(`${kept.join('\n')}\n`);
  }
}

function load(): { tf: Tf; info: BackendInfo } {
  tensorflowEnvironment();
  const forced = process.env.MEDSSL_BACKEND as BackendName | undefined;
  if (forced && !['cpu', 'tensorflow', 'tensorflow-gpu'].includes(forced)) {
    throw new Error(`MEDSSL_BACKEND must be cpu, tensorflow or tensorflow-gpu, got "${forced}"`);
  }
  const notes: string[] = [];
  const onednn = process.env.TF_ENABLE_ONEDNN_OPTS !== '0';

  const tryNative = (pkg: string, backend: BackendName) => {
    try {
      const tf = withoutNotices(() => require(pkg) as Tf);
      if (tf.getBackend() !== 'tensorflow') throw new Error(`backend is ${tf.getBackend()}`);
      const binding = (tf.backend() as unknown as { binding?: NativeBinding }).binding;
      const device = binding?.isUsingGpuDevice?.() ? 'GPU' : 'CPU';
      if (backend === 'tensorflow-gpu' && device === 'CPU') {
        notes.push(`${pkg} loaded, but TensorFlow sees no GPU (driver, CUDA or cuDNN libraries missing): ops run on the CPU`);
      }
      const info: BackendInfo = { backend, device, tensorflowVersion: binding?.TF_Version ?? 'unknown', tfjsVersion: tf.version_core, threads: threads(), onednn, notes };
      return { tf, info };
    } catch (e) {
      const msg = (e as Error).message.split('\n')[0];
      notes.push(`${pkg}: ${msg}`);
      if (forced === backend) throw new Error(`MEDSSL_BACKEND=${forced} but ${pkg} does not load: ${msg}`);
      return null;
    }
  };

  if (forced !== 'cpu') {
    // The GPU binding is tried only where set-up provisioned it (an optional dependency with a built binding).
    if (forced === 'tensorflow-gpu' || (!forced && gpuBindingProvisioned())) {
      notes.push(...preloadCuda());
      const gpu = tryNative('@tensorflow/tfjs-node-gpu', 'tensorflow-gpu');
      if (gpu) return gpu;
    }
    const cpu = tryNative('@tensorflow/tfjs-node', 'tensorflow');
    if (cpu) return cpu;
  }

  const tf = require('@tensorflow/tfjs') as Tf;
  void tf.setBackend('cpu');
  if (forced !== 'cpu') {
    const bar = '!'.repeat(78);
    process.stderr.write(
      `${bar}\nmedssl: WARNING: running on the pure-JS "cpu" TensorFlow backend, about 700x slower than native.\n` +
      `  ${notes.join('\n  ')}\n` +
      `  Fix: npm run setup:tensorflow (see README, "Native TensorFlow").\n${bar}\n`,
    );
  }
  return { tf, info: { backend: 'cpu', device: 'CPU', tensorflowVersion: tf.version_core, tfjsVersion: tf.version_core, threads: { intraOp: 1, interOp: 1 }, onednn: false, notes } };
}

/** Whether @tensorflow/tfjs-node-gpu is installed with a built binding (so loading it is worth trying). */
function gpuBindingProvisioned(): boolean {
  try {
    const dir = require.resolve('@tensorflow/tfjs-node-gpu/package.json').replace(/package\.json$/, '');
    return require('node:fs').readdirSync(`${dir}lib`, { recursive: true }).some((f: string) => String(f).endsWith('tfjs_binding.node'));
  } catch {
    return false;
  }
}

/**
 * Loads the CUDA libraries that scripts/setup-cuda.mjs unpacked beside the GPU libtensorflow (deps/nvidia/<name>/lib),
 * by absolute path and in dependency order, so that TensorFlow's later dlopen of each soname finds it loaded. Returns
 * notes on what could not be loaded. Written from documentation; not run on a GPU.
 */
function preloadCuda(): string[] {
  const ORDER = ['cuda_runtime', 'cuda_nvrtc', 'nvjitlink', 'cublas', 'cufft', 'curand', 'cusparse', 'cusolver', 'cudnn', 'nccl', 'cuda_cupti'];
  const fs = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  let root: string;
  try {
    root = path.join(path.dirname(require.resolve('@tensorflow/tfjs-node-gpu/package.json')), 'deps', 'nvidia');
  } catch {
    return [];
  }
  if (!fs.existsSync(root)) return ['no CUDA libraries beside the GPU library (npm run setup:tensorflow provisions them)'];
  const notes: string[] = [];
  let koffi: { load(p: string): unknown };
  try {
    koffi = require('koffi') as typeof koffi;
  } catch (e) {
    return [`koffi does not load, CUDA libraries not preloaded: ${(e as Error).message}`];
  }
  const rank = (name: string) => { const i = ORDER.indexOf(name); return i < 0 ? ORDER.length : i; };
  for (const name of fs.readdirSync(root).sort((a, b) => rank(a) - rank(b))) {
    const lib = path.join(root, name, 'lib');
    if (!fs.existsSync(lib)) continue;
    // Within a package, Lt before the rest (libcublas needs libcublasLt), the main library before its plug-ins.
    const files = fs.readdirSync(lib).filter((f) => /\.so(\.\d+)*$/.test(f)).sort((a, b) => Number(/Lt/.test(b)) - Number(/Lt/.test(a)) || a.length - b.length);
    for (const f of files) {
      try {
        koffi.load(path.join(lib, f));
      } catch (e) {
        notes.push(`CUDA library ${name}/${f} does not load: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  return notes;
}

let loaded: { tf: Tf; info: BackendInfo } | undefined;

/** Loads TensorFlow now (it loads on first use otherwise) and returns the namespace and what was loaded. */
export function loadTensorflow(): { tf: Tf; info: BackendInfo } {
  return (loaded ??= load());
}

/** Whether TensorFlow has been loaded in this process (importing medssl does not load it). */
export const tensorflowLoaded = (): boolean => loaded !== undefined;

// `tf` and `backendInfo` are stand-ins that load TensorFlow on their first property read, so that importing a module
// that trains costs nothing until it trains.
const lazy = <T extends object>(get: () => T): T => new Proxy({} as T, {
  get: (_t, p) => Reflect.get(get(), p),
  has: (_t, p) => Reflect.has(get(), p),
  ownKeys: () => Reflect.ownKeys(get()),
  getOwnPropertyDescriptor: (_t, p) => {
    const d = Reflect.getOwnPropertyDescriptor(get(), p);
    return d ? { ...d, configurable: true } : undefined;
  },
});

/** The TensorFlow.js namespace on the best available backend. */
export const tf: Tf = lazy(() => loadTensorflow().tf);
export const backendInfo: BackendInfo = lazy(() => loadTensorflow().info);
