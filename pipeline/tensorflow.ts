// Loads TensorFlow once per process and says which backend it got.
//
// Order: tfjs-node-gpu where a GPU is visible, tfjs-node (the native CPU backend, built by
// scripts/setup-tensorflow.mjs during `npm install`), then the pure-JS `cpu` backend with one loud warning.
// MEDSSL_BACKEND=cpu|tensorflow|tensorflow-gpu forces a choice (an unavailable forced backend is an error).

import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import type * as TF from '@tensorflow/tfjs';

export type Tf = typeof TF;
export type BackendName = 'tensorflow' | 'tensorflow-gpu' | 'cpu';

export interface BackendInfo {
  backend: BackendName;
  /** libtensorflow's version for the native backends; tfjs-core's for `cpu`. */
  tensorflowVersion: string;
  tfjsVersion: string;
  threads: { intraOp: number; interOp: number };
  gpus: string[];
  /** Why a faster backend was not used (empty when the best available was loaded). */
  notes: string[];
}

const require = createRequire(import.meta.url);

function visibleGpus(): string[] {
  try {
    return execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 })
      .split('\n').map((l) => l.trim()).filter((l) => l.startsWith('GPU'));
  } catch {
    return [];
  }
}

function threads() {
  // libtensorflow reads these variables (process_util.cc); its default is one intra-op thread per core.
  const n = os.availableParallelism();
  return {
    intraOp: Number(process.env.TF_NUM_INTRAOP_THREADS) || n,
    interOp: Number(process.env.TF_NUM_INTEROP_THREADS) || n,
  };
}

function load(): { tf: Tf; info: BackendInfo } {
  // libtensorflow logs every kernel choice at INFO; keep warnings and errors.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  const forced = process.env.MEDSSL_BACKEND as BackendName | undefined;
  if (forced && !['cpu', 'tensorflow', 'tensorflow-gpu'].includes(forced)) {
    throw new Error(`MEDSSL_BACKEND must be cpu, tensorflow or tensorflow-gpu, got "${forced}"`);
  }
  const notes: string[] = [];
  const gpus = forced === 'cpu' || forced === 'tensorflow' ? [] : visibleGpus();

  const tryNative = (pkg: string, backend: BackendName) => {
    try {
      const tf = require(pkg) as Tf;
      if (tf.getBackend() !== 'tensorflow') throw new Error(`backend is ${tf.getBackend()}`);
      const version = (tf.backend() as unknown as { binding?: { TF_Version?: string } }).binding?.TF_Version ?? 'unknown';
      return { tf, info: { backend, tensorflowVersion: version, tfjsVersion: tf.version_core, threads: threads(), gpus, notes } };
    } catch (e) {
      const msg = (e as Error).message.split('\n')[0];
      notes.push(`${pkg}: ${msg}`);
      if (forced === backend) throw new Error(`MEDSSL_BACKEND=${forced} but ${pkg} does not load: ${msg}`);
      return null;
    }
  };

  if (forced !== 'cpu') {
    if (forced === 'tensorflow-gpu' || (!forced && gpus.length > 0)) {
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
  return { tf, info: { backend: 'cpu', tensorflowVersion: tf.version_core, tfjsVersion: tf.version_core, threads: { intraOp: 1, interOp: 1 }, gpus, notes } };
}

const loaded = load();

/** The TensorFlow.js namespace on the best available backend. */
export const tf: Tf = loaded.tf;
export const backendInfo: BackendInfo = loaded.info;
