import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../schemas/config.js';
import { armConfig, defaultArms, trainerArms, ArmNotWired } from '../../pipeline/arms.js';
import type { ArmContext } from '../../stages/evaluate/experiment.js';
import { syntheticDataset, tinyEncoder } from '../stages/evaluate/tiny.js';

const config = parseConfig({ train: { epochs: 3 } });
const ctx = (target: string): ArmContext => ({
  config, target: syntheticDataset(target), otherLabelled: [], pool: [], inputShape: [8, 8, 1], budgetSeconds: 100, targets: 2,
  seed: 0, runDir: 'runs/x/arms/a', log: () => {},
});

describe('defaultArms', () => {
  it('provides none and random honestly and refuses the pre-training arms', async () => {
    expect(await defaultArms.pretrainArm({ name: 'none', kind: 'none' }, ctx('t'))).toBeNull();
    const random = await defaultArms.pretrainArm({ name: 'r', kind: 'random' }, ctx('t'));
    expect(random!.outputs[0].shape).toEqual([null, 64]);
    random!.dispose();
    await expect(defaultArms.pretrainArm({ name: 'SwAV', kind: 'swav-multi-modal' }, ctx('t'))).rejects.toThrow(ArmNotWired);
  });
});

describe('trainerArms', () => {
  it('applies arm overrides, sizes epochs to the budget, memoises target-free arms and re-trains supervised per target', async () => {
    const calls: Array<{ runDir: string; objective: string; epochs: number }> = [];
    const provider = trainerArms({
      async pretrain({ config, runDir }) { calls.push({ runDir, objective: config.train.objective, epochs: config.train.epochs }); },
      async loadEncoder() { return tinyEncoder(8, 1); },
      batchesFor: () => [],
      buildEncoder: (shape, seed) => tinyEncoder(shape[0], seed),
      imagesPerSecond: 10,
      poolImages: () => 100,
    });
    const swav = { name: 'SwAV', kind: 'swav-multi-modal' as const, train: { objective: 'swav' } };
    const sup = { name: 'sup', kind: 'supervised' as const, train: { objective: 'supervised' } };
    for (const target of ['a', 'b']) {
      (await provider.pretrainArm(swav, ctx(target)))!.dispose();
      (await provider.pretrainArm(sup, { ...ctx(target), runDir: 'runs/x/arms/sup' }))!.dispose();
    }
    expect(calls).toEqual([
      { runDir: 'runs/x/arms/a', objective: 'swav', epochs: 10 }, // 100 s x 10 img/s / 100 images
      { runDir: 'runs/x/arms/sup/a', objective: 'supervised', epochs: 5 }, // half the budget per target
      { runDir: 'runs/x/arms/sup/b', objective: 'supervised', epochs: 5 },
    ]);
    expect(await provider.pretrainArm({ name: 'none', kind: 'none' }, ctx('a'))).toBeNull();
  });

  it('rejects arm overrides that are not valid train settings', () => {
    expect(() => armConfig(config, { name: 'x', kind: 'simclr', train: { objective: 'nope' } }, 10)).toThrow(/train.objective/);
    expect(armConfig(config, { name: 'x', kind: 'simclr' }, 10).train.epochs).toBe(3);
  });
});
