// Configuration files (YAML or JSON). Every section has defaults, so `{}` is a valid config; each stage reads only
// its own section. Unknown keys are errors: a typo must not silently fall back to a default.
import { z } from 'zod';

const range = (lo: number, hi: number) =>
  z.tuple([z.number().min(lo).max(hi), z.number().min(lo).max(hi)]).refine(([a, b]) => a <= b, 'expected [low, high] with low <= high');

export const DataConfig = z.strictObject({
  /** Folders, files, manifests (.csv/.jsonl) and .npz archives; relative paths are relative to the config file. */
  inputs: z.array(z.string()).default([]),
  /** Files larger than this are rejected before reading (bytes). */
  maxFileBytes: z.number().int().positive().default(2 * 1024 ** 3),
  /** Frames larger than this many pixels are rejected from the header, before any allocation. */
  maxPixels: z.number().int().positive().default(64 * 1024 * 1024),
  /** Volumes are cut into 2-D slices along this voxel axis (0 = i, 1 = j, 2 = k). */
  sliceAxis: z.number().int().min(0).max(2).default(2),
  /**
   * Symbolic links met inside input folders: 'within' follows those whose target stays inside the folder, 'all'
   * follows every one, 'none' none. A link not followed is reported as a failure, never skipped silently.
   */
  followLinks: z.enum(['within', 'all', 'none']).default('within'),
  /** Frames of a single value (padding, empty mask slices) are not cached or trained on. */
  skipConstantFrames: z.boolean().default(true),
  /**
   * A file holding the secret of the patient/study/series keys (HMAC-SHA-256; at least 16 bytes; relative paths are
   * relative to the config file). Without it, MEDSSL_PRIVACY_KEY; without that, a public built-in key and a warning.
   */
  privacyKeyFile: z.string().min(1).nullable().default(null),
  /** Replace input paths by keyed hashes of their components everywhere medssl writes them (cache, logs, reports). */
  hashPaths: z.boolean().default(false),
  /**
   * How pre-training epochs draw from the pool (pipeline/compose/batches.ts). The default replays the pool in a seeded
   * permutation. Otherwise modality m gets a share of each epoch proportional to count_m^power, capped at maxShare;
   * epochImages sets the epoch's length (null: the pool's size); pureBatches makes every uni-modal batch one
   * modality, so each equipartition spans a whole batch instead of a handful of rows.
   */
  sampling: z.strictObject({
    power: z.number().min(0).max(1).default(1),
    maxShare: z.number().gt(0).max(1).default(1),
    epochImages: z.number().int().positive().nullable().default(null),
    pureBatches: z.boolean().default(false),
  }).prefault({}),
  /** Removed: a salt in the config was public. An error that names what replaces it. */
  privacySalt: z.unknown().optional().superRefine((v, ctx) => {
    if (v !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'removed: keys are now HMAC-SHA-256 under a secret that never appears in a config; put the secret in a file and name it in data.privacyKeyFile, or set MEDSSL_PRIVACY_KEY (keys change: re-ingest)',
      });
    }
  }),
}).prefault({});

export const Window = z.strictObject({ center: z.number(), width: z.number().positive() });

export const NormalizeConfig = z.strictObject({
  ct: z.strictObject({
    /** Hounsfield windows (centre/width in HU), e.g. brain 40/80, subdural 80/200, bone 600/2800. */
    windows: z.array(Window).min(1).default([{ center: 40, width: 80 }, { center: 80, width: 200 }, { center: 600, width: 2800 }]),
    /**
     * 'channels': window c becomes channel c (needs as many output channels as windows; with one window it is
     * repeated). 'random': every window is rendered and cached, and augment draws one per sample and epoch.
     */
    mode: z.enum(['channels', 'random']).default('random'),
  }).prefault({}),
  mr: z.strictObject({
    /** Clip to these percentiles before z-scoring inside the foreground. */
    percentiles: range(0, 100).default([0.5, 99.5]),
  }).prefault({}),
  radiography: z.strictObject({
    percentiles: range(0, 100).default([0.5, 99.5]),
  }).prefault({}),
  /** Modalities not covered by a rule (NM, PT, XA, ...): percentile normalization to [0, 1]. */
  other: z.strictObject({
    percentiles: range(0, 100).default([0.5, 99.5]),
  }).prefault({}),
  /** Resample to this pixel spacing (mm, [row, column]) when the source gives one; null keeps the native grid. */
  spacing: z.tuple([z.number().positive(), z.number().positive()]).nullable().default(null),
  /** Output channels: 1 (colour converted to luma) or 3 (colour kept, grey repeated). */
  channels: z.union([z.literal(1), z.literal(3)]).default(1),
}).prefault({}).superRefine((n, ctx) => {
  if (n.ct.mode === 'channels' && n.ct.windows.length > 1 && n.ct.windows.length !== n.channels) {
    ctx.addIssue({
      code: 'custom', path: ['ct', 'windows'],
      message: `expected ${n.channels} window${n.channels > 1 ? 's' : ''} (one per output channel) in 'channels' mode, got ${n.ct.windows.length}`,
    });
  }
});
export type NormalizeConfig = z.infer<typeof NormalizeConfig>;

export const CropConfig = z.strictObject({
  count: z.number().int().nonnegative(),
  size: z.number().int().positive().max(4096),
  /** Fraction of the source area covered by the crop, drawn uniformly in this range. */
  scale: range(0, 1).refine(([a]) => a > 0, 'expected a scale range above 0'),
});
export type CropConfig = z.infer<typeof CropConfig>;

export const AugmentConfig = z.strictObject({
  global: CropConfig.default({ count: 2, size: 224, scale: [0.14, 1] }),
  local: CropConfig.default({ count: 6, size: 96, scale: [0.05, 0.14] }),
  /** Aspect ratio range (width / height), drawn log-uniformly. */
  ratio: range(0.01, 100).default([3 / 4, 4 / 3]),
  /** Probability of a horizontal flip. */
  flip: z.number().min(0).max(1).default(0.5),
  /** Energy factor e (signal energy about the mean is multiplied by e); regional: inside a Gaussian bump of
   * standard deviation regionSigma x crop size. See stages/augment/README.md. */
  energy: z.strictObject({
    p: z.number().min(0).max(1).default(0.5),
    range: range(0, 10).default([0.7, 1.3]),
    regional: z.boolean().default(false),
    regionSigma: range(0.01, 10).default([0.1, 0.3]),
  }).prefault({}),
  gamma: z.strictObject({ p: z.number().min(0).max(1).default(0.5), range: range(0.01, 10).default([0.7, 1.5]) }).prefault({}),
  linear: z.strictObject({ p: z.number().min(0).max(1).default(0.5), scale: range(0, 10).default([0.8, 1.2]), shift: range(-10, 10).default([-0.1, 0.1]) }).prefault({}),
  noise: z.strictObject({ p: z.number().min(0).max(1).default(0.5), sigma: range(0, 10).default([0, 0.05]) }).prefault({}),
  blur: z.strictObject({ p: z.number().min(0).max(1).default(0), sigma: range(0.01, 10).default([0.1, 1.5]) }).prefault({}),
  /** Worker threads for the per-image work; 0 means one per core. */
  workers: z.number().int().nonnegative().default(0),
}).prefault({});
export type AugmentConfig = z.infer<typeof AugmentConfig>;

export const CacheConfig = z.strictObject({
  /** Cache folder for `medssl ingest` when --cache is not given. */
  path: z.string().nullable().default(null),
  /** Byte-shuffle + deflate arrays where it saves >= 10% (smaller, but replay decodes ~10x slower; see stages/cache). */
  compression: z.boolean().default(false),
  /** Threads reading the cache during replay; 1 reads on the main thread. Output is identical for any value. */
  readers: z.number().int().positive().default(1),
  /** Check every record's CRC-32 while replaying. */
  verify: z.boolean().default(true),
}).prefault({});

export const ModelConfig = z.strictObject({
  arch: z.enum(['resnet18', 'resnet50', 'resnet']).default('resnet'),
  /** Channels of the first stage (64 in ResNet-18/50). */
  width: z.number().int().positive().default(16),
  /** Residual blocks per stage. */
  depth: z.array(z.number().int().positive()).min(1).default([1, 1, 1, 1]),
  /** 'imagenet': 7x7/2 conv + max pool; 'small': one 3x3/1 conv. Default: `resnet` follows the global crop size (small up to 96 px), resnet18/50 imagenet. */
  stem: z.enum(['imagenet', 'small']).nullable().default(null),
  projection: z.strictObject({ hidden: z.number().int().positive().default(256), out: z.number().int().positive().default(64) }).prefault({}),
  prototypes: z.number().int().positive().default(64),
}).prefault({});

export const OptimizerConfig = z.strictObject({
  name: z.enum(['sgd', 'lars', 'adamw']).default('lars'),
  lr: z.number().positive().default(0.3),
  minLr: z.number().nonnegative().default(0.0003),
  momentum: z.number().min(0).max(1).default(0.9),
  weightDecay: z.number().nonnegative().default(1e-6),
  warmupSteps: z.number().int().nonnegative().default(0),
  /** Learning rate at the first warm-up step (SwAV's start_warmup). */
  warmupStartLr: z.number().nonnegative().default(0),
  /** LARS trust coefficient (SwAV uses 0.001). */
  larsEta: z.number().positive().default(0.001),
  /** Adam(W) moment decays and epsilon. */
  betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
  adamEpsilon: z.number().positive().default(1e-8),
}).prefault({});

export const LambdaSchedule = z.strictObject({
  /** How lambda moves from `start` to train.lambda over `steps` optimizer steps (then stays there). */
  kind: z.enum(['constant', 'linear', 'cosine']).default('constant'),
  start: z.number().nonnegative().default(0),
  steps: z.number().int().nonnegative().default(0),
}).prefault({});

export const AlarmConfig = z.strictObject({
  /** No collapse alarm before this step (the loss starts near ln K by construction). */
  afterSteps: z.number().int().nonnegative().default(50),
  /** Steps averaged before judging. */
  window: z.number().int().positive().default(20),
  /** Alarm when the mean loss is within this fraction of ln K... */
  lossTolerance: z.number().nonnegative().default(0.01),
  /** ...or when the mean prototype usage is below this fraction. */
  minPrototypeUsage: z.number().min(0).max(1).default(0.05),
  /**
   * 'uniform-codes' (at most once per epoch) when the mean code entropy is above this fraction of ln K while the loss
   * is not at ln K: the Sinkhorn codes are close to uniform, so swapped prediction has little to learn. On the bundled
   * pool, the SwAV runs that gained nothing ended at 0.89-0.93 of ln K (means over their last 100 steps), and those
   * that gained at 0.55-0.67 (README, Replicated pre-training).
   */
  maxCodeEntropy: z.number().min(0).max(1).default(0.85),
}).prefault({});

export const TrainConfig = z.strictObject({
  objective: z.enum(['swav', 'simclr', 'supervised', 'hybrid']).default('swav'),
  clustering: z.enum(['multi-modal', 'uni-modal']).default('multi-modal'),
  /** uni-modal only: one prototype set per modality instead of a shared one. */
  prototypesPerModality: z.boolean().default(false),
  epochs: z.number().int().positive().default(10),
  batchSize: z.number().int().positive().default(64),
  /** Optimizer steps per epoch for the schedules; null: taken from the data source. */
  stepsPerEpoch: z.number().int().positive().nullable().default(null),
  temperature: z.number().positive().default(0.1),
  epsilon: z.number().positive().default(0.05),
  sinkhornIterations: z.number().int().positive().default(3),
  cropsForAssign: z.array(z.number().int().nonnegative()).min(1).default([0, 1]),
  freezePrototypesSteps: z.number().int().nonnegative().default(0),
  queue: z.strictObject({ length: z.number().int().nonnegative().default(0), startEpoch: z.number().int().nonnegative().default(0) }).prefault({}),
  /** Hybrid objective: supervised + lambda * self-supervised. */
  lambda: z.number().nonnegative().default(1),
  lambdaSchedule: LambdaSchedule,
  optimizer: OptimizerConfig,
  /** Also checkpoint every N steps (0: only at the end of each epoch). */
  checkpointEverySteps: z.number().int().nonnegative().default(0),
  /** Batches the trainer may have waiting (its pull queue). */
  highWaterMark: z.number().int().positive().default(2),
  /**
   * Data-parallel training (several ranks under MPI): batch-norm statistics over every rank's rows, as one process
   * would compute them on the global batch. false: each rank normalises with its own rows' statistics (the moving
   * averages then take their mean over ranks). No effect in one process.
   */
  syncBatchNorm: z.boolean().default(true),
  alarm: AlarmConfig,
}).prefault({});

/** Evaluation presets (stages/evaluate/experiment.ts PRESETS); `standard` goes with fixtures/experiment-standard.yaml. */
export const PRESET_NAMES = ['quick', 'standard', 'full'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export const ARM_KINDS = ['none', 'none-bn', 'random', 'simclr', 'swav-uni-modal', 'swav-target-modality', 'supervised', 'swav-multi-modal', 'hybrid', 'encoder'] as const;

export const EvaluateConfig = z.strictObject({
  fractions: z.array(z.number().gt(0).max(1)).min(1).default([1, 0.5, 0.25, 0.1]),
  seeds: z.array(z.number().int().nonnegative()).min(1).default([0, 1, 2]),
  protocols: z.array(z.enum(['linear', 'finetune', 'knn'])).min(1).default(['linear', 'finetune', 'knn']),
  /** Sizes of every protocol (steps, fine-tuned fractions and seeds, perturbation grid, time budget): see stages/evaluate. */
  preset: z.enum(PRESET_NAMES).default('quick'),
  /** Labelled MedMNIST-layout .npz files to evaluate on; relative paths are relative to the config file. */
  datasets: z.array(z.strictObject({
    file: z.string().min(1),
    name: z.string().min(1).optional(),
    modality: z.string().min(1),
    /** 3-D volumes only: the slice each volume is evaluated on. */
    slice: z.enum(['max-area', 'central']).optional(),
    /** true: only "another labelled dataset" for the supervised and hybrid arms (its train split), not evaluated. */
    pretrainOnly: z.boolean().optional(),
  })).default([]),
  /** The arms (rows of the table); absent = the paper's rows (stages/evaluate/experiment.ts PAPER_ARMS). */
  arms: z.array(z.strictObject({
    name: z.string().min(1),
    kind: z.enum(ARM_KINDS),
    /** Overrides of the train section for this arm's pre-training. */
    train: z.record(z.string(), z.unknown()).optional(),
    /**
     * kind 'encoder': a folder holding an exported encoder (model.json + weights.bin), evaluated as it is; with
     * replicatePretraining, a folder holding one per evaluation seed (seed-0/, seed-1/, ...).
     */
    encoder: z.string().min(1).optional(),
  })).min(1).optional(),
  /**
   * Evaluate at size x size pixels: the labelled images are resampled (bilinear when enlarged). Set it to the
   * recipe's global crop size when that differs from the datasets' own; null keeps the datasets' size.
   */
  size: z.number().int().positive().max(1024).nullable().default(null),
  /** Overrides the preset's wall-clock budget (seconds): reported against, never acted on. */
  budgetSeconds: z.number().positive().optional(),
  /** Overrides the preset's images seen by every pre-training arm (steps x batch size; the same for every arm). */
  pretrainImages: z.number().int().positive().optional(),
  /**
   * true: every evaluation seed pre-trains its own encoder (with config seed + evaluation seed), as the arm without
   * pre-training draws its own initialisation per seed; an arm's spread and p-values then cover the pre-training's
   * run-to-run variation. Costs one pre-training per seed. false: one pre-training, evaluated with every seed.
   */
  replicatePretraining: z.boolean().default(false),
  /**
   * Pairs of arms (by name) to compare directly: per protocol and fraction, the paired test of `arm` against
   * `against` on the same test set, label subsets and seeds, as every arm is against no pre-training.
   */
  contrasts: z.array(z.strictObject({ arm: z.string().min(1), against: z.string().min(1) })).default([]),
  /**
   * The split every arm is scored on. 'validation': for choosing a recipe without touching the test set; the
   * validation split is scored, and a held-out part of the training split takes its place in the probes' selection
   * (stages/evaluate/datasets.ts forRecipeSelection). Reports and results.json name the split scored.
   */
  scoreOn: z.enum(['test', 'validation']).default('test'),
}).prefault({});

export const Config = z.strictObject({
  seed: z.number().int().nonnegative().default(0),
  data: DataConfig,
  normalize: NormalizeConfig,
  augment: AugmentConfig,
  cache: CacheConfig,
  model: ModelConfig,
  train: TrainConfig,
  evaluate: EvaluateConfig,
});
export type Config = z.infer<typeof Config>;
export type ModelConfig = z.infer<typeof ModelConfig>;
export type TrainConfig = z.infer<typeof TrainConfig>;
export type OptimizerConfig = z.infer<typeof OptimizerConfig>;
export type ConfigInput = z.input<typeof Config>;

/** A config that failed validation; `message` lists one `path: expected X, got Y` line per problem. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(readonly source: string, problems: string[]) {
    super(`${source}: invalid config\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Validates a parsed config object; `source` names the file in error messages. */
export function parseConfig(input: unknown, source = 'config'): Config {
  const result = Config.safeParse(input ?? {}, { reportInput: true });
  if (result.success) return result.data;
  throw new ConfigError(source, result.error.issues.map(describeIssue));
}

export function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length ? issue.path.join('.') : '(top level)';
  const got = 'input' in issue ? describeValue(issue.input) : undefined;
  switch (issue.code) {
    case 'invalid_type':
      return `${where}: expected ${issue.expected}, got ${got ?? 'nothing'}`;
    case 'unrecognized_keys':
      return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    case 'invalid_value':
      return `${where}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${got}`;
    case 'too_small':
    case 'too_big': {
      const op = issue.code === 'too_small' ? (issue.inclusive ? '>=' : '>') : (issue.inclusive ? '<=' : '<');
      const what = issue.origin === 'array' ? 'length ' : issue.origin === 'string' ? 'length ' : '';
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      return `${where}: expected ${what}${op} ${String(bound)}, got ${got}`;
    }
    default:
      return `${where}: ${issue.message}${got !== undefined ? `, got ${got}` : ''}`;
  }
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `array ${truncate(JSON.stringify(v))}`;
  if (typeof v === 'object') return 'object';
  return `${typeof v} ${truncate(JSON.stringify(v))}`;
}

const truncate = (s: string) => (s.length > 60 ? `${s.slice(0, 57)}...` : s);
