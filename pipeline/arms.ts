// The arms of an experiment: how each one gets its encoder. This is the one place that binds the experiment runner
// to the trainer (stages/train): `pretrainArm` turns an arm of the config into a pre-trained encoder, and
// `initEncoder` builds the same architecture from scratch for "no pre-training".
//
// Until the trainer lands in this tree, only the arms that need no pre-training are provided: 'none' (fresh
// initialisation per evaluation seed) and 'random' (one fixed random encoder, frozen: the floor of the linear probe).
// Every other arm reports itself as not wired, and the runner records it as skipped instead of inventing numbers.
// `trainerArms(deps)` is the full provider once the trainer's pretrain()/loadEncoder() exist; `experimentArms` is the
// one function `medssl experiment` calls, and the one line to change when wiring.
import type * as TF from '@tensorflow/tfjs';
import { tf } from './tensorflow.js';
import { MedsslError } from './failures.js';
import { parseConfig, type Config } from '../schemas/config.js';
import { initialiseWeights, type Encoder } from '../stages/evaluate/protocols.js';
import type { ArmContext, ArmProvider, ArmSpec } from '../stages/evaluate/experiment.js';

/** The encoder architecture for arms without pre-training (and the stand-in trunk until the trainer's ResNet is wired). */
export function standInEncoder(shape: [number, number, number], seed: number, width = 16): Encoder {
  const input = tf.input({ shape });
  let x = input as TF.SymbolicTensor;
  const block = (filters: number, strides: number) => {
    x = tf.layers.conv2d({ filters, kernelSize: 3, strides, padding: 'same', useBias: false }).apply(x) as TF.SymbolicTensor;
    x = tf.layers.batchNormalization({ momentum: 0.9 }).apply(x) as TF.SymbolicTensor;
    x = tf.layers.reLU().apply(x) as TF.SymbolicTensor;
  };
  block(width, 1);
  block(width * 2, 2);
  block(width * 4, 2);
  block(width * 4, 1);
  x = tf.layers.globalAveragePooling2d({}).apply(x) as TF.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: x, name: 'encoder' });
  initialiseWeights(model, seed);
  return model;
}

export class ArmNotWired extends MedsslError {
  constructor(arm: ArmSpec) {
    super('unsupported', arm.name, `arm kind "${arm.kind}" needs the trainer's pretrain(), which is not wired in this build`);
  }
}

/** The default provider: 'none' and 'random' honestly; the pre-training arms throw ArmNotWired. */
export const defaultArms: ArmProvider = {
  initEncoder: (ctx: ArmContext, seed: number) => standInEncoder(ctx.inputShape, seed),
  async pretrainArm(arm: ArmSpec, ctx: ArmContext): Promise<Encoder | null> {
    switch (arm.kind) {
      case 'none':
        return null;
      case 'random':
        return standInEncoder(ctx.inputShape, ctx.seed + 1_000_003);
      default:
        throw new ArmNotWired(arm);
    }
  },
};

/** What the trainer (stages/train) and the data pipeline provide; the lead passes these in at merge time. */
export interface TrainerDeps {
  /** stages/train: pre-trains and writes the run (checkpoints, encoder) under runDir. */
  pretrain(args: { config: Config; batches: unknown; runDir: string; resume: boolean }): Promise<unknown>;
  /** stages/train: the encoder of a finished run, [N, H, W, C] -> [N, D]. */
  loadEncoder(runDir: string): Promise<Encoder>;
  /**
   * The batches an arm pre-trains on: the unlabelled pool (ctx.pool) through decode -> normalize -> cache ->
   * augment -> toBatches for the self-supervised arms; the train split of ctx.otherLabelled (with labels) for
   * 'supervised', and both for 'hybrid'. `config` is the arm's config (its train overrides applied, epochs sized).
   */
  batchesFor(arm: ArmSpec, config: Config, ctx: ArmContext): unknown;
  /** The trainer's encoder architecture, freshly initialised from `seed` (for 'none'). Default: the stand-in. */
  buildEncoder?(shape: [number, number, number], seed: number): Encoder;
  /**
   * Deterministic budget -> epochs: epochs = max(1, floor(budget * imagesPerSecond / poolImages)). Give the measured
   * pre-training throughput of this machine (source images per second) and the pool size; omitted = config epochs.
   */
  imagesPerSecond?: number;
  poolImages?(ctx: ArmContext): number;
  /** The cache stage's keys for the pre-training data (recorded in results.json provenance). */
  cacheKeys?(): Record<string, string>;
}

/** Arms whose pre-training depends on the evaluation target (they learn from "another" labelled dataset). */
const PER_TARGET: ReadonlySet<string> = new Set(['supervised', 'hybrid']);

/**
 * The provider bound to the trainer: every kind of the paper's table. Arms that do not depend on the target are
 * pre-trained once and memoised (runDir per arm); 'supervised' and 'hybrid' are pre-trained per target on the other
 * labelled datasets, each call with budgetSeconds / targets.
 */
export function trainerArms(deps: TrainerDeps): ArmProvider {
  const runs = new Map<string, Promise<string>>();
  const build = deps.buildEncoder ?? ((shape: [number, number, number], seed: number) => standInEncoder(shape, seed));
  return {
    initEncoder: (ctx, seed) => build(ctx.inputShape, seed),
    cacheKeys: deps.cacheKeys,
    async pretrainArm(arm, ctx) {
      if (arm.kind === 'none') return null;
      if (arm.kind === 'random') return build(ctx.inputShape, ctx.seed + 1_000_003);
      const perTarget = PER_TARGET.has(arm.kind);
      const runDir = perTarget ? `${ctx.runDir}/${ctx.target.name.replace(/[^A-Za-z0-9_.-]+/g, '-')}` : ctx.runDir;
      let run = runs.get(runDir);
      if (!run) {
        const budget = perTarget ? ctx.budgetSeconds / ctx.targets : ctx.budgetSeconds;
        const config = armConfig(ctx.config, arm, budget, deps.imagesPerSecond, deps.poolImages?.(ctx));
        ctx.log(`arm "${arm.name}": pre-training ${config.train.epochs} epoch(s), objective ${config.train.objective}, budget ${budget.toFixed(0)} s`);
        run = deps.pretrain({ config, batches: deps.batchesFor(arm, config, ctx), runDir, resume: false }).then(() => runDir);
        runs.set(runDir, run);
      }
      return deps.loadEncoder(await run);
    },
  };
}

/** The arm's config: its `train` overrides over the experiment's, and epochs sized to the budget when measurable. */
export function armConfig(config: Config, arm: ArmSpec, budgetSeconds: number, imagesPerSecond?: number, poolImages?: number): Config {
  const train = { ...config.train, ...(arm.train ?? {}) } as Config['train'];
  const merged = parseConfig({ ...config, train }, `arm "${arm.name}"`);
  if (imagesPerSecond && poolImages) merged.train.epochs = Math.max(1, Math.floor((budgetSeconds * imagesPerSecond) / poolImages));
  return merged;
}

/**
 * The provider `medssl experiment` uses. MERGE POINT: once stages/train lands, return
 * `trainerArms({ pretrain, loadEncoder, batchesFor, buildEncoder, imagesPerSecond, poolImages, cacheKeys })` here.
 */
export function experimentArms(_config: Config): ArmProvider {
  return defaultArms;
}
