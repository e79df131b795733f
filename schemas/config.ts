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
  /** Salt for the patient/study/series hashes. Set your own per site; the default is public. */
  privacySalt: z.string().default('medssl'),
}).prefault({});

export const Window = z.strictObject({ center: z.number(), width: z.number().positive() });

export const NormalizeConfig = z.strictObject({
  ct: z.strictObject({
    /** Hounsfield windows; each becomes a channel ('channels') or one is drawn per sample ('random'). */
    windows: z.array(Window).min(1).default([{ center: 40, width: 80 }, { center: 80, width: 200 }, { center: 600, width: 2800 }]),
    mode: z.enum(['channels', 'random']).default('channels'),
  }).prefault({}),
  mr: z.strictObject({
    percentiles: range(0, 100).default([0.5, 99.5]),
  }).prefault({}),
  radiography: z.strictObject({
    percentiles: range(0, 100).default([0.5, 99.5]),
  }).prefault({}),
  /** Resample to this pixel spacing (mm) when the source gives one; null keeps the native grid. */
  spacing: z.tuple([z.number().positive(), z.number().positive()]).nullable().default(null),
  /** Output channels: 1 (grey; CT windows averaged... see stages/normalize) or 3. */
  channels: z.union([z.literal(1), z.literal(3)]).default(1),
}).prefault({});

export const CropConfig = z.strictObject({
  count: z.number().int().nonnegative(),
  size: z.number().int().positive(),
  /** Fraction of the source area covered by the crop, drawn uniformly in this range. */
  scale: range(0, 1),
});

export const AugmentConfig = z.strictObject({
  global: CropConfig.default({ count: 2, size: 224, scale: [0.14, 1] }),
  local: CropConfig.default({ count: 6, size: 96, scale: [0.05, 0.14] }),
  /** Aspect ratio range (width / height), drawn log-uniformly. */
  ratio: range(0.01, 100).default([3 / 4, 4 / 3]),
  flip: z.number().min(0).max(1).default(0.5),
  energy: z.strictObject({ p: z.number().min(0).max(1).default(0.5), range: range(0, 10).default([0.7, 1.3]), regional: z.boolean().default(false) }).prefault({}),
  gamma: z.strictObject({ p: z.number().min(0).max(1).default(0.5), range: range(0.01, 10).default([0.7, 1.5]) }).prefault({}),
  linear: z.strictObject({ p: z.number().min(0).max(1).default(0.5), scale: range(0, 10).default([0.8, 1.2]), shift: range(-10, 10).default([-0.1, 0.1]) }).prefault({}),
  noise: z.strictObject({ p: z.number().min(0).max(1).default(0.5), sigma: range(0, 10).default([0, 0.05]) }).prefault({}),
  blur: z.strictObject({ p: z.number().min(0).max(1).default(0), sigma: range(0, 10).default([0.1, 1.5]) }).prefault({}),
  /** Worker threads for the per-image work; 0 means one per core. */
  workers: z.number().int().nonnegative().default(0),
}).prefault({});

export const CacheConfig = z.strictObject({
  path: z.string().nullable().default(null),
  compression: z.boolean().default(false),
}).prefault({});

export const ModelConfig = z.strictObject({
  arch: z.enum(['resnet18', 'resnet50', 'resnet']).default('resnet'),
  /** Channels of the first stage (64 in ResNet-18/50). */
  width: z.number().int().positive().default(16),
  /** Residual blocks per stage. */
  depth: z.array(z.number().int().positive()).min(1).default([1, 1, 1, 1]),
  /** 'imagenet': 7x7/2 conv + max pool; 'small': one 3x3/1 conv (small images). Default: small for `resnet`, imagenet otherwise. */
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
  alarm: AlarmConfig,
}).prefault({});

export const EvaluateConfig = z.strictObject({
  fractions: z.array(z.number().gt(0).max(1)).min(1).default([1, 0.5, 0.25, 0.1]),
  seeds: z.array(z.number().int()).min(1).default([0, 1, 2]),
  protocols: z.array(z.enum(['linear', 'finetune', 'knn'])).min(1).default(['linear', 'finetune']),
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
export type AugmentConfig = z.infer<typeof AugmentConfig>;
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
