import type { Scalar, Tensor, Tensor4D } from '@tensorflow/tfjs';
import { nativeKernels } from '../../../stages/train/batchnorm.js';
import { describe, expect, it } from 'vitest';
import { assembleBatch, epochOrder, imagesFor } from '../../support/medmnist-batches.js';
import { SelfCommunicator } from '../../../pipeline/core/mpi.js';
import { tf } from '../../../pipeline/core/tensorflow.js';
import { encode, encoderModel, encoderSpec } from '../../../stages/train/resnet.js';
import { Trainer, modalityGroups } from '../../../stages/train/trainer.js';
import { tinyConfig } from './helpers.js';

const snapshot = (t: Trainer) => new Map([...t.store.vars].map(([n, v]) => [n, v.dataSync().slice()]));
const changed = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).some((x, i) => x !== b[i]);

function firstBatches(config: ReturnType<typeof tinyConfig>, n: number) {
  const images = imagesFor(config);
  return epochOrder(images, config, config.seed, 0).slice(0, n).map((rows, s) => assembleBatch(images, rows, config.augment, config.seed, 0, s));
}

describe('trainer step', () => {
  it('updates every encoder, head and prototype parameter (gradients reach them all)', async () => {
    const config = tinyConfig({ optimizer: { name: 'sgd', lr: 0.1, momentum: 0, weightDecay: 0, warmupSteps: 0 } });
    const [batch] = firstBatches(config, 1);
    const trainer = new Trainer(config, 1, batch.numLabels);
    const before = snapshot(trainer);
    const r = await trainer.trainStep(batch, 10);
    expect(Number.isFinite(r.loss)).toBe(true);
    const after = snapshot(trainer);
    for (const name of trainer.store.trainable) expect(changed(before.get(name)!, after.get(name)!), name).toBe(true);
    expect([...trainer.store.trainable].some((n) => n.startsWith('prototypes'))).toBe(true);
    // Moving statistics follow the batch statistics.
    expect(changed(before.get('stem_bn/moving_mean')!, after.get('stem_bn/moving_mean')!)).toBe(true);
    trainer.dispose();
  });

  it('keeps prototypes frozen for the first freezePrototypesSteps steps', async () => {
    const config = tinyConfig({ freezePrototypesSteps: 1, optimizer: { name: 'sgd', lr: 0.1, momentum: 0, weightDecay: 0, warmupSteps: 0 } });
    const batches = firstBatches(config, 2);
    const trainer = new Trainer(config, 1, batches[0].numLabels);
    const p0 = trainer.store.get('prototypes/kernel').dataSync().slice();
    const k0 = trainer.store.get('stem_conv/kernel').dataSync().slice();
    await trainer.trainStep(batches[0], 10);
    expect(changed(p0, trainer.store.get('prototypes/kernel').dataSync())).toBe(false);
    expect(changed(k0, trainer.store.get('stem_conv/kernel').dataSync())).toBe(true);
    await trainer.trainStep(batches[1], 10);
    const p2 = trainer.store.get('prototypes/kernel');
    expect(changed(p0, p2.dataSync())).toBe(true);
    // Prototypes stay unit vectors after an update.
    const norms = tf.norm(p2, 'euclidean', 0).dataSync();
    for (const n of norms) expect(n).toBeCloseTo(1, 5);
    trainer.dispose();
  });

  // The data-parallel step (a one-rank communicator) has its own collectives, queue and batch-norm paths.
  it.each([['one process', false], ['the data-parallel step', true]])('leaks no tensors across steps: %s', async (_, parallel) => {
    const config = tinyConfig({ queue: { length: 32, startEpoch: 0 } });
    const batches = firstBatches(config, 4);
    const trainer = new Trainer(config, 1, batches[0].numLabels, parallel ? { world: new SelfCommunicator() } : {});
    await trainer.trainStep(batches[0], 10);
    await trainer.trainStep(batches[1], 10);
    const n = tf.memory().numTensors;
    await trainer.trainStep(batches[2], 10);
    await trainer.trainStep(batches[3], 10);
    expect(tf.memory().numTensors).toBe(n);
    trainer.dispose();
  });

  it('uni-modal clustering with per-modality prototypes creates one prototype set per modality', async () => {
    const config = tinyConfig({ clustering: 'uni-modal', prototypesPerModality: true });
    const images = imagesFor(config);
    const order = epochOrder(images, config, config.seed, 0);
    // Modality-stratified: every batch holds one modality.
    for (const rows of order) expect(new Set(rows.map((r) => images[r].modality)).size).toBe(1);
    const modalities = new Set<string>();
    const trainer = new Trainer(config, 1, 1);
    for (let s = 0; s < order.length && modalities.size < 2; s++) {
      const b = assembleBatch(images, order[s], config.augment, config.seed, 0, s);
      modalities.add(b.modalities[0]);
      expect(Number.isFinite((await trainer.trainStep(b, 10)).loss)).toBe(true);
    }
    expect(trainer.store.has('prototypes_CR/kernel') && trainer.store.has('prototypes_CT/kernel')).toBe(true);
    expect(trainer.store.has('prototypes/kernel')).toBe(false);
    trainer.dispose();
  });

  it('groups rows by modality only in uni-modal mode', () => {
    const batch = { epoch: 0, step: 0, ids: ['a', 'b', 'c'], modalities: ['CT', 'MR', 'CT'], views: [], numLabels: 0 };
    expect(modalityGroups(batch, 'multi-modal')).toEqual([{ modality: null, rows: null, size: 3 }]);
    const g = modalityGroups(batch, 'uni-modal');
    expect(g.map((x) => [x.modality, Array.from(x.rows ?? []), x.size])).toEqual([['CT', [0, 2], 2], ['MR', [1], 1]]);
  });

  for (const objective of ['simclr', 'supervised', 'hybrid'] as const) {
    it(`${objective} objective trains and reports its parts`, async () => {
      const config = tinyConfig({ objective, lambda: 0.5 });
      const batches = firstBatches(config, 2);
      const trainer = new Trainer(config, 1, batches[0].numLabels);
      const r = await trainer.trainStep(batches[0], 10);
      expect(Number.isFinite(r.loss)).toBe(true);
      if (objective === 'hybrid') {
        expect(r.loss).toBeCloseTo((r.supervisedLoss as number) + 0.5 * (r.sslLoss as number), 4);
        expect(r.prototypeUsage).toBeGreaterThan(0);
      }
      if (objective === 'supervised') expect(r.supervisedLoss).toBe(r.loss);
      if (objective === 'simclr') expect(trainer.store.has('prototypes/kernel')).toBe(false);
      trainer.dispose();
    });
  }
});

describe('encoder export', () => {
  it('the tf.LayersModel gives the same features as the training forward pass in inference mode', async () => {
    for (const arch of [{ arch: 'resnet' as const }, { arch: 'resnet' as const, block: 'imagenet' }]) {
      const config = tinyConfig({}, { model: { ...tinyConfig().model, ...(arch.block ? { stem: 'imagenet' as const } : {}) } });
      const [batch] = firstBatches(config, 1);
      const trainer = new Trainer(config, 1, 0);
      await trainer.trainStep(batch, 10); // non-trivial moving statistics
      const spec = encoderSpec(config.model, 1);
      const model = encoderModel(trainer.store, spec);
      const x = tf.tensor4d(batch.views[0].data, [batch.ids.length, 16, 16, 1]) as Tensor4D;
      const a = encode(trainer.store, spec, x, { training: false });
      const b = model.predict(x) as Tensor;
      expect(b.shape).toEqual([batch.ids.length, spec.featureDim]);
      expect(tf.abs(tf.sub(a, b)).max().dataSync()[0]).toBeLessThan(1e-4);
      model.dispose();
      trainer.dispose();
    }
  });

  it('ResNet-18 and ResNet-50 have their published sizes', () => {
    const base = tinyConfig().model;
    const r18 = encoderSpec({ ...base, arch: 'resnet18' }, 3);
    const r50 = encoderSpec({ ...base, arch: 'resnet50' }, 3);
    expect(r18.featureDim).toBe(512);
    expect(r50.featureDim).toBe(2048);
    expect(r50.depth).toEqual([3, 4, 6, 3]);
    expect(r18.stem).toBe('imagenet');
  });

  it('gives the small ResNet the stem its crops need', () => {
    const base = { ...tinyConfig().model, arch: 'resnet' as const, stem: null };
    expect(encoderSpec(base, 1, 28).stem).toBe('small');
    expect(encoderSpec(base, 1, 96).stem).toBe('small');
    expect(encoderSpec(base, 1, 224).stem).toBe('imagenet');
    expect(encoderSpec({ ...base, stem: 'small' }, 1, 224).stem).toBe('small');
    expect(encoderSpec({ ...base, arch: 'resnet18' }, 1, 28).stem).toBe('imagenet');
  });
});

describe('native kernels', () => {
  it('fused batch norm and ReluGrad give the gradients of the composed ops (native backends only)', () => {
    if (!nativeKernels.available) {
      // The pure-JS backend has no native kernels to call: it must use the composed ops.
      expect(nativeKernels.enabled).toBe(false);
      return;
    }
    const before = nativeKernels.enabled;
    const config = tinyConfig();
    const [batch] = firstBatches(config, 1);
    const trainer = new Trainer(config, 1, 0);
    const spec = encoderSpec(config.model, 1);
    const x = tf.tensor4d(batch.views[0].data, [batch.ids.length, 16, 16, 1]) as Tensor4D;
    const names = [...trainer.store.trainable].filter((n) => !n.startsWith('head') && !n.startsWith('proto'));
    const vars = names.map((n) => trainer.store.get(n));
    // A loss that weighs features unevenly, so every parameter gets a distinct gradient.
    const weights = tf.linspace(-1, 1, spec.featureDim);
    const gradsWith = (native: boolean) => {
      nativeKernels.enabled = native;
      try {
        const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(encode(trainer.store, spec, x, { training: true }), weights)) as Scalar, vars);
        return { value: value.dataSync()[0], grads: vars.map((v) => grads[v.name].dataSync()) };
      } finally {
        nativeKernels.enabled = before;
      }
    };
    const composed = gradsWith(false);
    const native = gradsWith(true);
    expect(native.value).toBeCloseTo(composed.value, 3);
    names.forEach((n, i) => {
      const a = native.grads[i], b = composed.grads[i];
      const scale = Math.max(...Array.from(b, Math.abs), 1e-6);
      const diff = Math.max(...Array.from(a, (v, j) => Math.abs(v - b[j])));
      expect(diff / scale, n).toBeLessThan(1e-3);
    });
    trainer.dispose();
  });
});
