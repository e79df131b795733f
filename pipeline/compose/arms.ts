// The arms of an experiment: how each one gets its encoder. This is the one place that binds the experiment runner
// to the trainer (stages/train): `pretrainArm` turns an arm of the config into a pre-trained encoder, and
// `initEncoder` builds the same architecture from scratch for "no pre-training".
//
// Two providers:
// - `trainerArms(deps)`: every arm kind, given a trainer's pretrain()/loadEncoder(), its encoder architecture and a
//   source of batches.
// - `experimentArms(config)`: trainerArms bound to stages/train and the cached pool; what `medssl experiment` and
//   `medssl run` use.
import { MedsslError } from '../core/failures.js';
import { parseConfig, type Config } from '../../schemas/config.js';
import type { Encoder } from '../../schemas/encoder.js';
import type { AlarmEvent, TrainingSummary } from '../../schemas/metrics.js';
import type { ArmContext, ArmProvider, ArmSpec } from '../../stages/evaluate/experiment.js';
import path from 'node:path';
import type { NormalizedImage } from '../../schemas/records.js';
import { FailureLog } from '../core/failures.js';
import { type TrainingPool, labelWidth, openTrainingPool, poolBatches, poolGate, poolStepsPerEpoch } from './batches.js';
import type { Gate } from '../core/flow.js';
import type { Observable } from 'rxjs';
import type { Batch } from '../../schemas/records.js';
import { sourceNames } from './prepare.js';
import { runPaths } from '../core/privacy.js';
import { loadEncoder } from '../../stages/train/checkpoint.js';
import { pretrain } from '../../stages/train/pretrain.js';
import { ParamStore } from '../../stages/train/params.js';
import { addEncoderParams, encoderModel, encoderSpec } from '../../stages/train/resnet.js';

/**
 * What the trainer (stages/train) and the data pipeline provide (experimentArms below passes the real ones). `Data`
 * is what an arm pre-trains on, as `batchesFor` describes it and `pretrain` receives it.
 */
export interface TrainerDeps<Data> {
  /** stages/train: pre-trains and writes the run (checkpoints, encoder) under runDir; its optimizer steps, alarms and summary. */
  pretrain(args: { config: Config; batches: Data; runDir: string; resume: boolean; steps: number }): Promise<{ steps: number; alarms?: readonly AlarmEvent[]; summary?: TrainingSummary | null }>;
  /** stages/train: the encoder of a finished run, [N, H, W, C] -> [N, D]. */
  loadEncoder(runDir: string): Promise<Encoder>;
  /**
   * The batches an arm pre-trains on: the unlabelled pool (ctx.pool) through decode -> normalize -> cache ->
   * augment -> toBatches for the self-supervised arms; the train split of ctx.otherLabelled (with labels) for
   * 'supervised', and both for 'hybrid'. `config` is the arm's config (its train overrides applied, epochs sized).
   */
  batchesFor(arm: ArmSpec, config: Config, ctx: ArmContext): Data;
  /** The trainer's encoder architecture, freshly initialised from `seed` (for 'none', 'none-bn' and 'random'). */
  buildEncoder(shape: [number, number, number], seed: number): Encoder;
  /** The cache stage's keys for the pre-training data (recorded in results.json provenance). */
  cacheKeys?(): Record<string, string>;
  /** Pool images for the 'none-bn' control (ArmProvider.calibrationImages). */
  calibrationImages?(ctx: ArmContext): Promise<Float32Array>;
}

/**
 * Arms whose pre-training depends on the evaluation target: supervised and hybrid learn from "another" labelled
 * dataset, and 'swav-target-modality' from the pool's images of the target's modality alone.
 */
export const PER_TARGET: ReadonlySet<string> = new Set(['supervised', 'hybrid', 'swav-target-modality']);

/**
 * The provider bound to the trainer: every kind of the paper's table. Arms that do not depend on the target are
 * pre-trained once and memoised (runDir per arm); the PER_TARGET ones once per target. Every run, of every arm, is
 * `ctx.pretrainImages / batchSize` optimizer steps: the same images seen by every encoder that is evaluated.
 */
export function trainerArms<Data>(deps: TrainerDeps<Data>): ArmProvider {
  const runs = new Map<string, Promise<string>>();
  const summaries = new Map<string, TrainingSummary>();
  const build = deps.buildEncoder;
  return {
    initEncoder: (ctx, seed) => build(ctx.inputShape, seed),
    trainingSummary: (arm, ctx) => summaries.get(armRunDir(arm, ctx)),
    cacheKeys: deps.cacheKeys,
    ...(deps.calibrationImages ? { calibrationImages: deps.calibrationImages } : {}),
    async pretrainArm(arm, ctx) {
      if (arm.kind === 'none' || arm.kind === 'none-bn') return null;
      if (arm.kind === 'random') return build(ctx.inputShape, ctx.seed + 1_000_003);
      if (arm.kind === 'encoder') {
        if (!arm.encoder) throw new MedsslError('invalid-value', arm.name, "an arm of kind 'encoder' needs `encoder`: the folder of an exported encoder");
        // Replicated pre-training: one exported encoder per evaluation seed, in <encoder>/seed-<s>.
        return deps.loadEncoder(ctx.replicate === undefined ? arm.encoder : path.join(arm.encoder, `seed-${ctx.replicate}`));
      }
      const runDir = armRunDir(arm, ctx);
      let run = runs.get(runDir);
      if (!run) {
        const config = armConfig(ctx.config, arm);
        const steps = armSteps(config, ctx.pretrainImages);
        ctx.log(`arm "${arm.name}": pre-training, objective ${config.train.objective}, ${steps} steps of ${config.train.batchSize}`);
        run = deps.pretrain({ config, batches: deps.batchesFor(arm, config, ctx), runDir, resume: false, steps }).then((r) => {
          // Equal compute is the table's premise: an arm whose data ran out before its steps is not compared.
          if (r.steps < steps) throw new MedsslError('invalid-value', runDir, `pre-trained ${r.steps} of its ${steps} steps: its batches ran out (the arms would not have seen the same images)`);
          for (const line of alarmSummary(r.alarms ?? [])) ctx.log(`arm "${arm.name}": ${line}`);
          if (r.summary) summaries.set(runDir, r.summary);
          return runDir;
        });
        runs.set(runDir, run);
      }
      return deps.loadEncoder(await run);
    },
  };
}

/** One line per alarm kind of a run: how often it fired, and its first message (the run's metrics.jsonl has them all). */
export function alarmSummary(alarms: readonly AlarmEvent[]): string[] {
  const byKind = new Map<string, AlarmEvent[]>();
  for (const a of alarms) byKind.set(a.kind, [...(byKind.get(a.kind) ?? []), a]);
  return [...byKind].map(([kind, [first, ...rest]]) => `alarm (${kind}) ${rest.length + 1} time(s), first at step ${first.step}: ${first.message}`);
}

/** Where an arm's run lives: one folder per arm, and per target for the PER_TARGET kinds. */
export function armRunDir(arm: ArmSpec, ctx: Pick<ArmContext, 'runDir' | 'target'>): string {
  return PER_TARGET.has(arm.kind) ? `${ctx.runDir}/${ctx.target.name.replace(/[^A-Za-z0-9_.-]+/g, '-')}` : ctx.runDir;
}

/** Optimizer steps of every pre-training run: the images every arm sees, in whole batches (at least one). */
export function armSteps(config: Config, pretrainImages: number): number {
  return Math.max(1, Math.floor(pretrainImages / config.train.batchSize));
}

/**
 * How a run of exactly `steps` optimizer steps is cut into epochs of the pool's `stepsPerEpoch` batches: whole
 * epochs, the last one cut short by the step count.
 */
export function armEpochs(steps: number, stepsPerEpoch: number): { epochs: number; stepsPerEpoch: number } {
  const perEpoch = Math.max(1, stepsPerEpoch);
  return { epochs: Math.ceil(steps / perEpoch), stepsPerEpoch: perEpoch };
}

/** The arm's config: its `train` overrides over the experiment's. */
export function armConfig(config: Config, arm: ArmSpec): Config {
  const train = { ...config.train, ...(arm.train ?? {}) } as Config['train'];
  return parseConfig({ ...config, train }, `arm "${arm.name}"`);
}

/** The modality codes of the pool (DICOM's) that an evaluation dataset's modality name stands for. */
export function poolModalities(datasetModality: string): (modality: string) => boolean {
  const m = datasetModality.toLowerCase();
  if (m === 'radiography' || m === 'cr' || m === 'dx') return (x) => RADIOGRAPHY_CODES.has(x.toUpperCase());
  if (m === 'fundus' || m === 'op') return (x) => x.toUpperCase() === 'OP';
  return (x) => x.toUpperCase() === m.toUpperCase();
}
const RADIOGRAPHY_CODES: ReadonlySet<string> = new Set(['CR', 'DX', 'RG', 'DR']);

/** What an arm pre-trains on (passed from `batchesFor` to `pretrain` through trainerArms). */
export interface ArmData {
  inputs: string[];
  cachePath: string;
  /** Keep labels of these images only (hybrid: the other labelled datasets'); absent: no labels. */
  labelled?: (image: NormalizedImage) => boolean;
  /** Keep only the pool's images of these modalities (the target modality's data alone). */
  modality?: (modality: string) => boolean;
}

/**
 * The provider `medssl experiment` uses: every arm kind of the paper's table on the trainer (stages/train), each
 * pre-trained on a cached pool (pipeline/compose/batches.ts) for a number of steps sized to its budget.
 * - simclr, swav-uni-modal, swav-multi-modal: the unlabelled pool (data.inputs; labels dropped, val/test never used);
 * - supervised: the train split of the other labelled datasets (the stand-in for ImageNet pre-training);
 * - hybrid: the pool, with the labels of the other labelled datasets only (never the target's).
 */
export function experimentArms(config: Config, opts: { cacheRoot: string; progress?: NodeJS.WriteStream }): ArmProvider {
  // The pool reuses the configured cache (e.g. one made by `medssl ingest`); other caches live under the run.
  const poolCache = config.cache.path ?? path.join(opts.cacheRoot, 'pool');
  const pools = new Map<string, Promise<TrainingPool>>();
  const openPool = (data: ArmData, cfg: Config) => {
    let pool = pools.get(data.cachePath);
    if (!pool) {
      pool = openTrainingPool(cfg, { cachePath: data.cachePath, inputs: data.inputs, progress: opts.progress });
      pools.set(data.cachePath, pool);
    }
    return pool;
  };
  let calibration: Promise<Float32Array> | undefined;
  return trainerArms<ArmData>({
    loadEncoder,
    buildEncoder: (shape, seed) => freshEncoder(config, shape[2], seed),
    // The 'none-bn' control's images: crop 0 (a global view at the evaluation size) of the first images of the
    // pool's epoch 0 as multi-modal pre-training would see them; 512 of them, drawn once.
    calibrationImages(ctx) {
      const [h, w, c] = ctx.inputShape;
      if (ctx.config.augment.global.size !== h || h !== w || ctx.config.normalize.channels !== c) return Promise.resolve(ctx.target.train.images);
      calibration ??= (async () => {
        const cfg = ctx.config;
        const pool = await openPool({ inputs: ctx.pool, cachePath: poolCache }, cfg);
        const b = cfg.train.batchSize, steps = Math.max(1, Math.min(Math.floor(512 / b), Math.floor(pool.size / b)));
        const gate = poolGate(cfg);
        const out: Float32Array[] = [];
        await new Promise<void>((resolve, reject) => {
          poolBatches(pool, cfg, { seed: cfg.seed, epoch: 0, gate, steps }).subscribe({
            next: (batch) => { out.push(batch.views[0].data.slice()); },
            error: reject, complete: () => resolve(),
          });
        });
        const all = new Float32Array(out.reduce((a, x) => a + x.length, 0));
        let o = 0;
        for (const x of out) { all.set(x, o); o += x.length; }
        // A pool smaller than one batch gives no crops: calibrate on the target's training images instead.
        return all.length ? all : ctx.target.train.images;
      })();
      return calibration;
    },
    batchesFor(arm, _armConfig, ctx): ArmData {
      const others = ctx.otherLabelled.map((d) => d.file).filter((f): f is string => !!f);
      return armData(arm, config, { inputs: ctx.pool, cachePath: poolCache, cacheRoot: opts.cacheRoot, targetModality: ctx.target.modality, others });
    },
    async pretrain({ config: armConfig, batches: data, runDir, steps }) {
      const pool = await openPool(data, armConfig);
      const size = data.modality ? pool.modalities.filter(data.modality).length : pool.size;
      if (size < armConfig.train.batchSize) {
        throw new MedsslError('invalid-value', runDir, size === 0
          ? `the pre-training pool is empty: none of ${data.inputs.length ? data.inputs.join(', ') : 'data.inputs (none given)'} gave a usable training image${data.modality ? ' of the target modality' : ''} (see the ingest failures above)`
          : `the pre-training pool has ${size} images${data.modality ? ' of the target modality' : ''}, fewer than one batch (train.batchSize ${armConfig.train.batchSize}): add data to data.inputs or lower train.batchSize`);
      }
      const sized = armSized(pool, armConfig, steps);
      const gate = poolGate(sized);
      const failures = new FailureLog(gate);
      return pretrain({
        // The run folder's config.json names input files as the experiment's outputs do (privacy.ts runPaths).
        config: runPaths(sized, runDir).config(sized), runDir, gate, stepsPerEpoch: sized.train.stepsPerEpoch!, steps,
        batches: (epoch) => armBatches(pool, sized, data, { epoch, gate, failures }),
      });
    },
  });
}

/**
 * What an arm pre-trains on: the pool; for 'swav-target-modality' only the target modality's images; for 'hybrid' the
 * pool with the labels of the other labelled datasets' images; for 'supervised' the other labelled datasets' train
 * splits alone, with their labels, cached apart under `cacheRoot`. The trainer (experimentArms) and the PyTorch peer's
 * export (bench/peer-arms.ts) both take it from here.
 */
export function armData(arm: Pick<ArmSpec, 'kind' | 'name'>, config: Config, opts: { inputs: string[]; cachePath: string; cacheRoot: string; targetModality: string; others: string[] }): ArmData {
  const pool = { inputs: opts.inputs, cachePath: opts.cachePath };
  if (arm.kind === 'supervised') {
    if (opts.others.length === 0) throw new MedsslError('invalid-value', arm.name, 'needs a second labelled dataset to pre-train on: add another entry to evaluate.datasets (it pre-trains on one and is evaluated on the other)');
    const names = sourceNames(config, []);
    return { inputs: opts.others, cachePath: path.join(opts.cacheRoot, `labelled-${opts.others.map((f) => names.component(path.basename(f))).join('+')}`), labelled: () => true };
  }
  if (arm.kind === 'swav-target-modality') return { ...pool, modality: poolModalities(opts.targetModality) };
  return arm.kind === 'hybrid' ? { ...pool, labelled: labelledFrom(config, opts.others) } : pool;
}

/**
 * The hybrid arm's labelled rows: the pool's images that come from one of `files` (the other labelled datasets),
 * never the target's. Source ids name files by their hashed components under data.hashPaths: matched the same way.
 */
function labelledFrom(config: Config, files: string[]): (image: NormalizedImage) => boolean {
  const names = sourceNames(config, []);
  const wanted = new Set(files.map((f) => names.component(path.basename(f))));
  return (image) => wanted.has(image.sourceId.split('#')[0].split('/').pop() ?? '');
}

/** An arm's config for a run of exactly `steps` optimizer steps on `pool`, whatever its size: sized into epochs. */
export function armSized(pool: TrainingPool, config: Config, steps: number): Config {
  const { epochs, stepsPerEpoch } = armEpochs(steps, poolStepsPerEpoch(pool, config));
  return { ...config, train: { ...config.train, epochs, stepsPerEpoch } };
}

/**
 * One epoch of an arm's batches (`sized` from armSized): what its trainer receives, and what the PyTorch peer
 * (bench/peer-arms.ts) exports, so that both train on the same crops in the same order.
 */
export function armBatches(pool: TrainingPool, sized: Config, data: ArmData, opts: { epoch: number; gate: Gate; failures?: FailureLog; steps?: number }): Observable<Batch> {
  return poolBatches(pool, sized, {
    seed: sized.seed, epoch: opts.epoch, gate: opts.gate, steps: opts.steps ?? sized.train.stepsPerEpoch!,
    numLabels: data.labelled ? labelWidth(pool) : 0,
    ...(opts.failures ? { failures: opts.failures } : {}),
    ...(data.labelled ? { labelled: data.labelled } : {}), ...(data.modality ? { modality: data.modality } : {}),
  });
}

/** The trainer's encoder architecture, freshly initialised from `seed` (for the arm without pre-training). */
export function freshEncoder(config: Config, channels: number, seed: number): Encoder {
  const store = new ParamStore(seed);
  try {
    const spec = encoderSpec(config.model, channels, config.augment.global.size);
    addEncoderParams(store, spec);
    return encoderModel(store, spec);
  } finally {
    store.dispose();
  }
}
