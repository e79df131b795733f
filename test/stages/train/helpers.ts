// Small real-data batches for trainer tests: PneumoniaMNIST radiographs and AdrenalMNIST3D central slices with
// seeded random resized crops and flips (pipeline/compose/batches.ts), and a tiny network so the pure-JS backend copes.
import { type ConfigInput, parseConfig, type Config } from '../../../schemas/config.js';
import { sample } from '../../shared.js';

export function tinyConfig(train: NonNullable<ConfigInput['train']> = {}, extra: Partial<ConfigInput> = {}): Config {
  return parseConfig({
    seed: 3,
    data: { inputs: [sample('medmnist/pneumoniamnist.npz'), sample('medmnist/adrenalmnist3d.npz')] },
    model: { arch: 'resnet', width: 4, depth: [1, 1], projection: { hidden: 16, out: 8 }, prototypes: 8 },
    augment: { global: { count: 2, size: 16, scale: [0.4, 1] }, local: { count: 2, size: 8, scale: [0.1, 0.4] } },
    ...extra,
    train: { batchSize: 16, epochs: 1, optimizer: { name: 'sgd', lr: 0.05, warmupSteps: 2, weightDecay: 1e-5 }, ...train },
  });
}
