// The data-parallel step at one rank (SelfCommunicator: every collective is the identity) against the plain step: the
// same losses and weights, for every objective. The two-rank run under mpirun is test/stages/train/mpi.test.ts.
import type { Tensor2D } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localBatchSize, rankPositions } from '../../../pipeline/compose/batches.js';
import { SelfCommunicator, mpiLaunch } from '../../../pipeline/core/mpi.js';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, projectRoot, sample } from '../../shared.js';
import { tf } from '../../../pipeline/core/tensorflow.js';
import { distributedCodes } from '../../../stages/train/distributed.js';
import { sinkhornKnopp } from '../../../stages/train/sinkhorn.js';
import { Trainer } from '../../../stages/train/trainer.js';
import { nativeKernels } from '../../../stages/train/batchnorm.js';
import { assembleBatch, epochOrder, imagesFor } from '../../support/medmnist-batches.js';
import { tinyConfig } from './helpers.js';

function firstBatches(config: ReturnType<typeof tinyConfig>, n: number, numLabels = 0) {
  const images = imagesFor(config);
  return epochOrder(images, config, config.seed, 0).slice(0, n).map((rows, s) => {
    const b = assembleBatch(images, rows, config.augment, config.seed, 0, s);
    return numLabels ? b : { ...b, numLabels: 0, labels: undefined, labelMask: undefined };
  });
}

/** Largest |a - b| over the tensor, relative to its largest |b| (at least 1e-3). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 1e-3;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

async function compare(config: ReturnType<typeof tinyConfig>, steps: number, labelled = false) {
  const batches = firstBatches(config, steps, labelled ? 1 : 0);
  const plain = new Trainer(config, 1, batches[0].numLabels);
  const world = new SelfCommunicator();
  const parallel = new Trainer(config, 1, batches[0].numLabels, { world });
  for (const batch of batches) {
    const a = await plain.trainStep(batch, 10);
    const b = await parallel.trainStep(batch, 10);
    for (const k of ['loss', 'sslLoss', 'supervisedLoss', 'codeEntropy', 'prototypeUsage'] as const) {
      if (a[k] === undefined) continue;
      expect(Math.abs((b[k] as number) - a[k]) / Math.max(Math.abs(a[k]), 1e-3), `${k} at step ${parallel.position.step}`).toBeLessThan(1e-4);
    }
  }
  for (const [name, v] of plain.store.vars) {
    expect(relDiff(parallel.store.get(name).dataSync(), v.dataSync()), name).toBeLessThan(1e-4);
  }
  expect(parallel.graphStats.notes[0]).toMatch(/data-parallel steps run eagerly/);
  expect(world.stats.byTag.step.calls).toBe(steps);
  plain.dispose();
  parallel.dispose();
  return world;
}

describe('the data-parallel step at one rank', () => {
  // The reference is the composed batch norm (tf.moments + tf.batchNorm differentiated by tfjs), as the synchronised
  // batch norm computes it: the fused native kernel's sums differ from both by up to 1.5% in this tiny network's first
  // layers on the uni-modal batches (float32 sums of nearly cancelling gradients), which would hide what is compared.
  let saved: boolean | undefined;
  beforeAll(() => { saved = nativeKernels.override; nativeKernels.enabled = false; });
  afterAll(() => { nativeKernels.override = saved; });

  it('SwAV with LARS, synchronised batch norm and a queue: the same losses and weights as one process', async () => {
    const world = await compare(tinyConfig({ queue: { length: 32, startEpoch: 0 }, optimizer: { name: 'lars', lr: 0.3, warmupSteps: 0, weightDecay: 1e-6 } }), 4);
    expect(world.stats.byTag.batchnorm.calls).toBeGreaterThan(0);
    expect(world.stats.byTag.sinkhorn.calls).toBeGreaterThan(0);
  });

  it('SwAV without synchronised batch norm (statistics averaged into the moving averages)', async () => {
    const world = await compare(tinyConfig({ syncBatchNorm: false }), 2);
    expect(world.stats.byTag.batchnorm).toBeUndefined();
  });

  it('uni-modal SwAV with per-modality prototypes, SimCLR, hybrid', async () => {
    await compare(tinyConfig({ clustering: 'uni-modal', prototypesPerModality: true }), 2);
    await compare(tinyConfig({ objective: 'simclr' }), 2);
    await compare(tinyConfig({ objective: 'hybrid', lambda: 0.5, optimizer: { name: 'adamw', lr: 1e-3 } }), 2, true);
  });
});

describe('data-parallel pieces', () => {
  it('rank r of N takes the positions r mod N of the epoch\'s full batches', () => {
    expect([...rankPositions(8, 0, 2)]).toEqual([0, 2, 4, 6]);
    expect([...rankPositions(8, 1, 2)]).toEqual([1, 3, 5, 7]);
    expect([...rankPositions(9, 2, 4)]).toEqual([2, 6]);
    const all = [0, 1, 2].flatMap((r) => [...rankPositions(12, r, 3)]).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(localBatchSize(64, 4)).toBe(16);
    expect(() => localBatchSize(64, 3)).toThrow(/not divisible by the 3 ranks/);
  });

  it('distributed Sinkhorn at one rank gives sinkhornKnopp\'s codes, also where exp(s / eps) overflows', () => {
    for (const epsilon of [0.05, 0.001]) {
      const s = tf.tidy(() => tf.sub(tf.mul(tf.randomUniform([24, 10], 0, 1, 'float32', 7), 2), 1)) as Tensor2D;
      const [codes] = distributedCodes([s, null], 10, { epsilon, iterations: 3 }, new SelfCommunicator());
      const ref = sinkhornKnopp(s, { epsilon, iterations: 3 });
      expect(relDiff((codes as Tensor2D).dataSync(), ref.dataSync())).toBeLessThan(1e-4);
      tf.dispose([s, codes as Tensor2D, ref]);
    }
  });


  it('knows the MPI launchers from their environment, and runs in one process without one', () => {
    expect(mpiLaunch({})).toBeNull();
    expect(mpiLaunch({ OMPI_COMM_WORLD_SIZE: '4' })).toEqual({ launcher: 'mpirun (Open MPI)', size: 4 });
    expect(mpiLaunch({ PMIX_RANK: '0', SLURM_JOB_ID: '7', SLURM_STEP_NUM_TASKS: '8' })).toEqual({ launcher: 'srun --mpi=pmix', size: 8 });
    expect(mpiLaunch({ PMI_RANK: '1', PMI_SIZE: '2' })).toEqual({ launcher: 'mpiexec (PMI)', size: 2 });
    // A Slurm batch step is not an MPI launch: only srun's PMI says so.
    expect(mpiLaunch({ SLURM_PROCID: '0', SLURM_NTASKS: '4', SLURM_JOB_ID: '7' })).toBeNull();
    expect(mpiLaunch({ OMPI_COMM_WORLD_SIZE: '4', MEDSSL_MPI: '0' })).toBeNull();
  });

  it('medssl pretrain started by a launcher without a usable MPI library says what is missing, in one line', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-dp-'));
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, `data: { inputs: [${JSON.stringify(sample('medmnist/pneumoniamnist.npz'))}] }\n`);
    const r = spawnSync(process.execPath, [cli, 'pretrain', '--config', file, '--out', path.join(dir, 'run')], {
      encoding: 'utf8', env: { ...process.env, OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_RANK: '0', MEDSSL_MPI_LIB: path.join(dir, 'libmpi.so.40') },
    });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('medssl:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^medssl: libmpi: started by mpirun \(Open MPI\) as one of 2 ranks, but no MPI library loads .*Install Open MPI/);
  });

  it('the cluster examples parse: the MPIJob manifest and the Slurm script', async () => {
    const { parse } = await import('yaml');
    const job = parse(fs.readFileSync(path.join(projectRoot, 'examples', 'cluster', 'kubernetes-mpijob.yaml'), 'utf8')) as { kind: string; spec: { mpiReplicaSpecs: { Launcher: { template: { spec: { containers: Array<{ args: string[] }> } } }; Worker: { replicas: number } } } };
    expect(job.kind).toBe('MPIJob');
    const launcher = job.spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].args.join('\n');
    // The rank count is written twice: the workers and mpirun's -np.
    expect(launcher).toContain(`mpirun -np ${job.spec.mpiReplicaSpecs.Worker.replicas} `);
    expect(launcher).toMatch(/medssl pretrain --config/);
    const script = path.join(projectRoot, 'examples', 'cluster', 'slurm-pretrain.sh');
    expect(spawnSync('bash', ['-n', script]).status).toBe(0);
    expect(fs.readFileSync(script, 'utf8')).toMatch(/srun --mpi=pmix .*medssl pretrain/);
  });
});
