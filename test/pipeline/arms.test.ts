import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../schemas/config.js';
import { armConfig, armEpochs, armSteps, poolModalities, trainerArms } from '../../pipeline/compose/arms.js';
import { PAPER_ARMS, PRESETS, type ArmContext } from '../../stages/evaluate/experiment.js';
import { syntheticDataset, tinyEncoder } from '../stages/evaluate/tiny.js';

const config = parseConfig({ train: { epochs: 3 } });
const ctx = (target: string): ArmContext => ({
  config, target: syntheticDataset(target), otherLabelled: [], pool: [], inputShape: [8, 8, 1], pretrainImages: 6400, targets: 2,
  seed: 0, runDir: 'runs/x/arms/a', log: () => {},
});

describe('the pre-training budget', () => {
  it('is the same images for every arm, in whole batches, cut into the pool epochs with the last one short', () => {
    expect(armSteps(config, 6400)).toBe(6400 / config.train.batchSize);
    expect(armSteps(parseConfig({ train: { batchSize: 64 } }), 19_200)).toBe(300);
    expect(armSteps(parseConfig({ train: { batchSize: 64 } }), 100)).toBe(1); // rounds down, never to zero
    expect(armSteps(parseConfig({ train: { batchSize: 64 } }), 10)).toBe(1);
    // The main job: the quick preset's images over balanced epochs of 6,400 (100 batches of 64): six whole epochs.
    expect(armEpochs(armSteps(parseConfig({ train: { batchSize: 64 } }), PRESETS.quick.pretrainImages), 100)).toEqual({ epochs: 6, stepsPerEpoch: 100 });
    // A pool of 7 batches per epoch: 43 epochs, the last one 6 steps (42 x 7 + 6 = 300).
    const { epochs, stepsPerEpoch } = armEpochs(300, 7);
    expect(epochs).toBe(43);
    expect(300 - (epochs - 1) * stepsPerEpoch).toBe(6);
    expect(armEpochs(5, 0)).toEqual({ epochs: 5, stepsPerEpoch: 1 }); // a pool smaller than a batch still steps
  });
});

describe('trainerArms', () => {
  it('gives every pre-training run of every arm the same images, memoises target-free arms and re-trains per-target arms', async () => {
    const calls: Array<{ runDir: string; objective: string; images: number }> = [];
    const provider = trainerArms({
      async pretrain({ config, runDir, steps }) {
        calls.push({ runDir, objective: config.train.objective, images: steps * config.train.batchSize });
        return { steps };
      },
      async loadEncoder() { return tinyEncoder(8, 1); },
      batchesFor: () => [],
      buildEncoder: (shape, seed) => tinyEncoder(shape[0], seed),
    });
    // The paper's rows as the main job plans them, on two evaluation datasets.
    const arms = PAPER_ARMS.map((a) => (a.kind === 'simclr' ? { ...a, train: { ...a.train, batchSize: 32 } } : a));
    for (const target of ['a', 'b']) {
      for (const arm of arms) {
        const encoder = await provider.pretrainArm(arm, { ...ctx(target), runDir: `runs/x/arms/${arm.kind}` });
        encoder?.dispose();
      }
    }
    const pretraining = arms.filter((a) => !['none', 'none-bn', 'random'].includes(a.kind));
    const perTarget = pretraining.filter((a) => ['supervised', 'hybrid', 'swav-target-modality'].includes(a.kind)).length;
    expect(calls).toHaveLength(pretraining.length + perTarget); // target-free arms once, per-target arms twice
    // Equal compute: every run sees 6400 images, whatever its batch size, objective or target.
    expect(new Set(calls.map((c) => c.images))).toEqual(new Set([6400]));
    expect(calls.filter((c) => c.runDir.startsWith('runs/x/arms/supervised/')).map((c) => c.runDir)).toEqual(['runs/x/arms/supervised/a', 'runs/x/arms/supervised/b']);
    expect(calls.find((c) => c.runDir === 'runs/x/arms/simclr')!.objective).toBe('simclr');
    expect(await provider.pretrainArm({ name: 'none', kind: 'none' }, ctx('a'))).toBeNull();
    expect(await provider.pretrainArm({ name: 'bn', kind: 'none-bn' }, ctx('a'))).toBeNull();
  });

  it('refuses an arm whose batches ran out before its steps (it would not have seen the same images)', async () => {
    const provider = trainerArms({
      async pretrain({ steps }) { return { steps: steps - 24 }; },
      async loadEncoder() { return tinyEncoder(8, 1); },
      batchesFor: () => [],
      buildEncoder: (shape, seed) => tinyEncoder(shape[0], seed),
    });
    const arm = PAPER_ARMS.find((a) => a.kind === 'swav-uni-modal')!;
    await expect(provider.pretrainArm(arm, { ...ctx('a'), runDir: 'runs/x/arms/uni' })).rejects.toThrow(/pre-trained 76 of its 100 steps: its batches ran out/);
  });

  it("says which alarms a run raised, once per kind, on the experiment's log, and keeps the run's summary", async () => {
    const alarm = (step: number, kind: 'uniform-codes' | 'collapse') => ({ type: 'alarm' as const, step, kind, message: `${kind} at ${step}` });
    const provider = trainerArms({
      async pretrain({ steps, runDir }) { return { steps, alarms: [alarm(50, 'uniform-codes'), alarm(60, 'collapse'), alarm(120, 'uniform-codes')], summary: { steps, window: 1, loss: [runDir.length, 0], alarms: {} } }; },
      async loadEncoder() { return tinyEncoder(8, 1); },
      batchesFor: () => [],
      buildEncoder: (shape, seed) => tinyEncoder(shape[0], seed),
    });
    const lines: string[] = [];
    const arm = PAPER_ARMS.find((a) => a.kind === 'swav-uni-modal')!;
    expect(provider.trainingSummary!(arm, { ...ctx('a'), runDir: 'runs/x/arms/uni' })).toBeUndefined(); // not run yet
    (await provider.pretrainArm(arm, { ...ctx('a'), runDir: 'runs/x/arms/uni', log: (l) => lines.push(l) }))!.dispose();
    expect(provider.trainingSummary!(arm, { ...ctx('a'), runDir: 'runs/x/arms/uni' })).toEqual({ steps: 100, window: 1, loss: ['runs/x/arms/uni'.length, 0], alarms: {} });
    expect(lines.filter((l) => l.includes('alarm'))).toEqual([
      `arm "${arm.name}": alarm (uniform-codes) 2 time(s), first at step 50: uniform-codes at 50`,
      `arm "${arm.name}": alarm (collapse) 1 time(s), first at step 60: collapse at 60`,
    ]);
  });

  it("evaluates an exported encoder as it is for kind 'encoder' (the PyTorch peer's), and says when its folder is missing", async () => {
    const loaded: string[] = [];
    const provider = trainerArms({
      async pretrain() { throw new Error('an encoder arm does not pre-train'); },
      async loadEncoder(dir) { loaded.push(dir); return tinyEncoder(8, 1); },
      batchesFor: () => [],
      buildEncoder: (shape, seed) => tinyEncoder(shape[0], seed),
    });
    (await provider.pretrainArm({ name: 'peer', kind: 'encoder', encoder: '/x/peer-encoder' }, ctx('a')))!.dispose();
    expect(loaded).toEqual(['/x/peer-encoder']);
    // Replicated pre-training: the folder holds one encoder per evaluation seed.
    (await provider.pretrainArm({ name: 'peer', kind: 'encoder', encoder: '/x/peer-encoder' }, { ...ctx('a'), replicate: 2 }))!.dispose();
    expect(loaded).toEqual(['/x/peer-encoder', '/x/peer-encoder/seed-2']);
    await expect(provider.pretrainArm({ name: 'peer', kind: 'encoder' }, ctx('a'))).rejects.toThrow(/needs `encoder`/);
  });

  it('rejects arm overrides that are not valid train settings', () => {
    expect(() => armConfig(config, { name: 'x', kind: 'simclr', train: { objective: 'nope' } })).toThrow(/train.objective/);
    expect(armConfig(config, { name: 'x', kind: 'simclr' }).train.epochs).toBe(3);
  });
});

describe('poolModalities', () => {
  it("maps an evaluation dataset's modality to the pool's DICOM codes (the target-modality-only arm's data)", () => {
    const cr = poolModalities('radiography');
    expect(['CR', 'DX', 'cr'].map(cr)).toEqual([true, true, true]);
    expect(['CT', 'MR', 'OP', 'US'].map(cr)).toEqual([false, false, false, false]);
    expect(['CT', 'MR'].map(poolModalities('ct'))).toEqual([true, false]);
  });
});
