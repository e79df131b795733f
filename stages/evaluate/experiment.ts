// The experiment runner: arms x datasets x protocols x label fractions x seeds, plus convergence and robustness.
//
// Each arm gets its encoder from an injected ArmProvider (pipeline/compose/arms.ts binds it to the trainer), once per
// (arm, evaluation dataset): the provider memoises arms whose pre-training does not depend on the target. Everything
// random is seeded: label fractions, fresh initialisations, fine-tuning order and flips. Wall-clock time is measured
// and reported, never used to decide anything, so the same plan gives the same numbers.
import { MedsslError } from '../../pipeline/core/failures.js';
import type { Config } from '../../schemas/config.js';
import { combinePaired, combineSeeds, pairedAuc, type AucResult, type PairedAuc } from './auc.js';
import { forRecipeSelection, loadMedmnist, mapImages, resizeDataset, subset, withChannels, type LabelledDataset } from './datasets.js';
import { DEFAULT_GRID, describePerturbation, perturb, type Perturbation } from './perturb.js';
import type { Encoder } from '../../schemas/encoder.js';
import type { TrainingSummary } from '../../schemas/metrics.js';
import { cloneEncoder, extractFeatures, finetune, knnProbe, linearProbe, recalibrateBatchNorm, selectRows, type CurvePoint, type FeatureSet, type ProtocolResult } from './protocols.js';
import { labelFractions } from './splits.js';
import { aucWithCi } from './auc.js';

import { ARM_KINDS, type PresetName } from '../../schemas/config.js';
export { ARM_KINDS };
export type ArmKind = (typeof ARM_KINDS)[number];
export type Protocol = 'linear' | 'finetune' | 'knn';

export interface ArmSpec {
  name: string;
  kind: ArmKind;
  /** Overrides of the `train` config section for this arm's pre-training (objective, clustering, epochs, ...). */
  train?: Record<string, unknown>;
  /** kind 'encoder': a folder with an encoder exported elsewhere (e.g. by the PyTorch peer), evaluated as it is. */
  encoder?: string;
}

/** The paper's table, row by row (Ghesu et al. 2022, Table 2 layout), with SimCLR and a random encoder added. */
export const PAPER_ARMS: ArmSpec[] = [
  { name: 'no pre-training', kind: 'none' },
  { name: 'no pre-training, BN re-estimated', kind: 'none-bn' },
  { name: 'SimCLR', kind: 'simclr', train: { objective: 'simclr' } },
  { name: 'SwAV uni-modal', kind: 'swav-uni-modal', train: { objective: 'swav', clustering: 'uni-modal' } },
  { name: 'SwAV target modality only', kind: 'swav-target-modality', train: { objective: 'swav', clustering: 'multi-modal' } },
  { name: 'supervised (other dataset)', kind: 'supervised', train: { objective: 'supervised' } },
  { name: 'SwAV multi-modal', kind: 'swav-multi-modal', train: { objective: 'swav', clustering: 'multi-modal' } },
  { name: 'hybrid', kind: 'hybrid', train: { objective: 'hybrid', clustering: 'multi-modal' } },
];

export interface DatasetSpec {
  file: string;
  name?: string;
  modality: string;
  slice?: 'max-area' | 'central';
  /** Only "another labelled dataset" for the supervised and hybrid arms: pre-trained on, never evaluated. */
  pretrainOnly?: boolean;
}

export interface Preset {
  name: string;
  fractions: number[];
  seeds: number[];
  protocols: Protocol[];
  /** The protocol of the headline table (`arms` in results.json). */
  primary: Protocol;
  linear: { steps: number; lr: number; weightDecays: number[] };
  knn: { k: number; temperature: number };
  finetune: { steps: number; batchSize: number; lr: number; evalEvery: number; patience: number; flip: boolean; fractions: number[]; seeds: number[] };
  /** Label fraction whose fine-tuning curves give the convergence comparison. */
  convergenceFraction: number;
  robustness: { protocol: Protocol; fraction: number; grid: Perturbation[] };
  /** Wall-clock budget of the whole experiment (reported against, never acted on). */
  budgetSeconds: number;
  /**
   * Images every pre-training arm sees (optimizer steps x batch size): the same for every arm, and for an arm that
   * pre-trains once per evaluation dataset (supervised, hybrid, target modality only) the same for each of its runs.
   */
  pretrainImages: number;
}

/** The quick grid: the strongest setting on each side of identity per family. */
export const QUICK_GRID: Perturbation[] = [
  { kind: 'scale', value: 0.6 }, { kind: 'scale', value: 1.5 }, { kind: 'shift', value: -0.2 }, { kind: 'shift', value: 0.2 },
  { kind: 'gamma', value: 0.5 }, { kind: 'gamma', value: 2 }, { kind: 'rotate', value: 10 }, { kind: 'rotate', value: 30 },
  { kind: 'zoom', value: 0.8 }, { kind: 'zoom', value: 1.25 },
];

/** The main job's preset: see PRESETS. */
const QUICK: Preset = {
  name: 'quick',
  fractions: [1, 0.5, 0.25, 0.1],
  seeds: [0, 1, 2],
  protocols: ['linear', 'finetune', 'knn'],
  primary: 'linear',
  linear: { steps: 150, lr: 0.05, weightDecays: [1e-3, 1e-2] },
  knn: { k: 20, temperature: 0.07 },
  // Fine-tuning is most of the evaluation time: three seeds at 10% and 100% labels, validation every 8 steps
  // (convergence interpolates between evaluations, so its steps are not confined to that grid).
  finetune: { steps: 40, batchSize: 32, lr: 1e-3, evalEvery: 8, patience: 0, flip: false, fractions: [1, 0.1], seeds: [0, 1, 2] },
  convergenceFraction: 0.1,
  robustness: { protocol: 'linear', fraction: 1, grid: QUICK_GRID },
  budgetSeconds: 900,
  // 600 steps of 64: six of the bundled pool's balanced epochs of 6,400 images (pipeline/compose/batches.ts), so the
  // radiographs (28% of an epoch) are seen 2.8 times over and the smaller modalities more; within 15 minutes.
  pretrainImages: 38_400,
};

/**
 * Presets. quick: the main job's eight arms on 28x28 images within 15 minutes on 2 cores with the native backend
 * (12.6 on a quiet machine, about half of it pre-training: stages/evaluate/README.md, Figures; fine-tuning's graph
 * updates run at about 430 images/s, a linear probe on 3882 x 64 features takes about 0.3 s). full: every protocol
 * at every fraction and seed, about 4 hours.
 */
export const PRESETS: Record<PresetName, Preset> = {
  quick: QUICK,
  // The quick protocols around the standard recipe (fixtures/experiment-standard.yaml: ResNet-18 at 64 px, K 300, a
  // queue, prototypes frozen for the first epoch, warm-up and cosine), evaluated at 64 px; 68 minutes on 2 cores
  // (README, "The standard preset").
  standard: {
    ...QUICK,
    name: 'standard',
    budgetSeconds: 4500,
    pretrainImages: 25_600,
  },
  full: {
    name: 'full',
    fractions: [1, 0.5, 0.25, 0.1],
    seeds: [0, 1, 2],
    protocols: ['linear', 'finetune', 'knn'],
    primary: 'finetune',
    linear: { steps: 300, lr: 0.05, weightDecays: [1e-4, 1e-3, 1e-2, 1e-1] },
    knn: { k: 20, temperature: 0.07 },
    finetune: { steps: 600, batchSize: 64, lr: 1e-3, evalEvery: 25, patience: 6, flip: false, fractions: [1, 0.5, 0.25, 0.1], seeds: [0, 1, 2] },
    convergenceFraction: 0.1,
    robustness: { protocol: 'finetune', fraction: 1, grid: DEFAULT_GRID },
    budgetSeconds: 4 * 3600,
    pretrainImages: 640_000,
  },
};

/** What an arm provider is told. */
export interface ArmContext {
  config: Config;
  /** The evaluation dataset this encoder will be scored on (the supervised arm must pre-train on another one). */
  target: LabelledDataset;
  /** The other labelled datasets (train splits only may be used): "another labelled dataset" for supervised/hybrid. */
  otherLabelled: LabelledDataset[];
  /** The unlabelled pool (config data.inputs). */
  pool: string[];
  inputShape: [number, number, number];
  /**
   * Images this arm's pre-training sees (steps = pretrainImages / batch size), equal for every arm. The runner calls
   * pretrainArm once per evaluation dataset: a provider that pre-trains once and memoises spends it once; one whose
   * pre-training depends on the target spends it on each target, so every encoder evaluated has seen as many images.
   */
  pretrainImages: number;
  /** How many evaluation datasets the runner will ask this arm for. */
  targets: number;
  seed: number;
  /**
   * With evaluate.replicatePretraining: the evaluation seed this pre-training is for (its config seed is the
   * experiment's + replicate, its runDir `<arm>/seed-<replicate>`). Absent: one pre-training serves every seed.
   */
  replicate?: number;
  /** Where the arm may write its run (checkpoints, metrics.jsonl). */
  runDir: string;
  log: (line: string) => void;
}

export interface ArmProvider {
  /**
   * A pre-trained encoder, or null for "no pre-training" (the runner then calls initEncoder per seed). The runner owns
   * and disposes what it gets: return a fresh model per call (e.g. loadEncoder(runDir) again), never a shared one.
   */
  pretrainArm(arm: ArmSpec, ctx: ArmContext): Promise<Encoder | null>;
  /** The same architecture, freshly initialised from `seed`. */
  initEncoder(ctx: ArmContext, seed: number): Encoder;
  /** Cache keys of the data the arms pre-trained on (LMDB cache), recorded in the provenance for replays. */
  cacheKeys?(): Record<string, string>;
  /**
   * Unlabelled images [n, H, W, C] of the pre-training pool at the evaluation size, on which the 'none-bn' control
   * re-estimates a fresh encoder's batch-norm statistics. Absent: the target's training images (labels unused).
   */
  calibrationImages?(ctx: ArmContext): Promise<Float32Array>;
  /** How the arm's pre-training run for `ctx` went (after pretrainArm), for the reports; absent: not known. */
  trainingSummary?(arm: ArmSpec, ctx: ArmContext): TrainingSummary | undefined;
}

/** Arms that do not pre-train: fresh encoders per evaluation seed. */
export const UNTRAINED_KINDS: ReadonlySet<ArmKind> = new Set(['none', 'none-bn', 'random']);

export interface ExperimentPlan {
  config: Config;
  preset: Preset;
  /** Files to load, or datasets already in memory. */
  datasets: Array<DatasetSpec | LabelledDataset>;
  arms: ArmSpec[];
  outDir: string;
  /** Called with progress lines and eval events (metrics.jsonl). */
  log?: (line: string) => void;
  onEval?: (event: EvalRecord) => void;
}

export interface EvalRecord {
  type: 'eval';
  task: string;
  arm: string;
  protocol: string;
  fraction: number;
  seed: number;
  metric: 'auc';
  value: number;
  ci: [number, number];
  step?: number;
  perturbation?: Record<string, number>;
}

export interface SeedResult { seed: number; auc: number; ci: [number, number]; variance: number; val: number; bestStep?: number; trainSize: number }
/** An arm against no pre-training on the same test set, seeds and label subsets (auc.ts combinePaired). */
export interface VersusNone { delta: number; ci: [number, number]; z: number; p: number }
export interface FractionResult {
  auc: number; ci: [number, number]; sd: number; seeds: number[]; perSeed: SeedResult[];
  /** Two-sided p of the paired DeLong test against the no-pre-training arm (absent for that arm itself). */
  pVsNone?: number;
  vsNone?: VersusNone;
  /** The same test against the BN-re-estimated control ('none-bn'), for the pre-trained arms. */
  vsNoneBn?: VersusNone;
}
export interface CurveResult { fraction: number; seed: number; points: CurvePoint[]; bestStep: number }
export interface ConvergenceResult {
  fraction: number;
  /** Per seed: the no-pre-training run's best validation AUC and the step it was reached. */
  perSeed: Array<{ seed: number; target: number; baselineSteps: number; steps: number | null; savedPercent: number | null }>;
  /** Seeds whose run reached the target. */
  reached: number;
  /** Mean over seeds when every seed reached the target; null otherwise (an arm is not averaged over its successes only). */
  savedPercent: number | null;
}
export interface RobustnessResult { protocol: Protocol; fraction: number; seed: number; clean: number; points: Array<{ kind: string; value: number; label: string; auc: number; drop: number }> }

export interface ArmResult {
  name: string;
  kind: ArmKind;
  pretrained: boolean;
  status: 'ok' | 'skipped';
  reason?: string;
  /** Wall-clock seconds: pre-training, evaluation, and evaluation split by protocol (plus the robustness probes). */
  seconds: { pretrain: number; evaluate: number; byProtocol?: Record<string, number> };
  protocols: Partial<Record<Protocol, Record<string, FractionResult>>>;
  curves: CurveResult[];
  convergence?: ConvergenceResult;
  robustness?: RobustnessResult;
  /** Each pre-training run of the arm in a few numbers (with replicatePretraining, one per evaluation seed). */
  training?: Array<TrainingSummary & { seed?: number }>;
}

/** One arm against another (evaluate.contrasts): per protocol and fraction, as `vsNone`. */
export interface ContrastResult { arm: string; against: string; protocols: Partial<Record<Protocol, Record<string, VersusNone>>> }

export interface DatasetResult {
  name: string;
  modality: string;
  file: string;
  tasks: string[];
  /** The split scored: 'test', or 'validation' when choosing a recipe (then `sizes` are the splits as used: the validation split counted as test, the held-out part of train as val). */
  scored: 'test' | 'validation';
  sizes: { train: number; val: number; test: number };
  arms: ArmResult[];
  contrasts?: ContrastResult[];
}

export interface ExperimentResult {
  datasets: DatasetResult[];
  seconds: number;
  /** The preset's budget and whether the wall time exceeded it (reported, never acted on: results stay deterministic). */
  budgetSeconds: number;
  overBudget: boolean;
}

const key = (f: number) => String(f);

/** Runs the plan. Arms whose provider throws are recorded as skipped with the reason; the others go on. */
export async function runExperiment(plan: ExperimentPlan, provider: ArmProvider): Promise<ExperimentResult> {
  const log = plan.log ?? (() => {});
  // A contrast naming no arm is a config error, found before any arm spends its time.
  const names = new Set(plan.arms.map((a) => a.name));
  for (const c of plan.config.evaluate.contrasts) {
    for (const n of [c.arm, c.against]) if (!names.has(n)) throw new MedsslError('invalid-value', 'evaluate.contrasts', `no arm is named "${n}" (arms: ${[...names].join(', ')})`);
  }
  const start = Date.now();
  // With the pool's channels (normalize.channels), and evaluated at evaluate.size when set (the size the recipe
  // pre-trains on); pretrainOnly sets are only read as files.
  const size = plan.config.evaluate.size, scored = plan.config.evaluate.scoreOn;
  const datasets = plan.datasets
    .map((d) => ('train' in d ? d : { ...loadMedmnist(d.file, { name: d.name, modality: d.modality, slice: d.slice }), ...(d.pretrainOnly ? { pretrainOnly: true } : {}) }))
    .map((d) => withChannels(d, plan.config.normalize.channels))
    .map((d) => (size && !d.pretrainOnly ? resizeDataset(d, size) : d))
    .map((d) => (scored === 'validation' && !d.pretrainOnly ? forRecipeSelection(d, plan.config.seed) : d));
  const evaluated = datasets.filter((d) => !d.pretrainOnly);
  const out: DatasetResult[] = [];
  for (const ds of evaluated) {
    const arms: ArmResult[] = [];
    const scores = new Map<ArmResult, TestScores>();
    for (const arm of plan.arms) {
      const ctx: ArmContext = {
        config: plan.config,
        target: ds,
        otherLabelled: datasets.filter((d) => d !== ds),
        pool: plan.config.data.inputs,
        inputShape: [ds.train.height, ds.train.width, ds.train.channels],
        pretrainImages: plan.preset.pretrainImages,
        targets: evaluated.length,
        seed: plan.config.seed,
        runDir: `${plan.outDir}/arms/${slug(arm.name)}`,
        log,
      };
      if (!UNTRAINED_KINDS.has(arm.kind)) log(`[${ds.name}] arm "${arm.name}": pre-training (${plan.preset.pretrainImages} images)`);
      const t0 = Date.now();
      let encoders: Map<number, Encoder> | null;
      let training: ArmResult['training'];
      try {
        ({ encoders, training } = await pretrainReplicates(arm, ctx, plan, provider));
      } catch (e) {
        const reason = (e as Error).message;
        log(`[${ds.name}] arm "${arm.name}": skipped (${reason})`);
        arms.push({ name: arm.name, kind: arm.kind, pretrained: !UNTRAINED_KINDS.has(arm.kind), status: 'skipped', reason, seconds: { pretrain: (Date.now() - t0) / 1000, evaluate: 0 }, protocols: {}, curves: [] });
        continue;
      }
      const t1 = Date.now();
      const { result, testScores } = await evaluateArm(arm, encoders, ds, ctx, plan, provider);
      scores.set(result, testScores);
      result.seconds = { ...result.seconds, pretrain: (t1 - t0) / 1000, evaluate: (Date.now() - t1) / 1000 };
      if (training?.length) result.training = training;
      for (const e of new Set(encoders?.values())) e.dispose();
      arms.push(result);
      log(`[${ds.name}] arm "${arm.name}": evaluated in ${result.seconds.evaluate.toFixed(1)} s (${Object.entries(result.seconds.byProtocol ?? {}).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})`);
    }
    addConvergence(arms, plan.preset.convergenceFraction);
    addVersusNone(arms, scores, ds);
    const contrasts = plan.config.evaluate.contrasts.map((c) => contrast(arms, scores, ds, c.arm, c.against));
    out.push({
      name: ds.name, modality: ds.modality, file: ds.file ?? '(in memory)', tasks: ds.tasks,
      scored, sizes: { train: ds.train.n, val: ds.val.n, test: ds.test.n }, arms,
      ...(contrasts.length ? { contrasts } : {}),
    });
  }
  const seconds = (Date.now() - start) / 1000;
  const overBudget = seconds > plan.preset.budgetSeconds;
  if (overBudget) log(`warning: the experiment took ${seconds.toFixed(0)} s, over the preset's budget of ${plan.preset.budgetSeconds} s (a loaded machine, or arms slower than the preset assumes)`);
  return { datasets: out, seconds, budgetSeconds: plan.preset.budgetSeconds, overBudget };
}

/**
 * The arm's encoder for each evaluation seed: null for no pre-training; one encoder for every seed; or, with
 * evaluate.replicatePretraining, one pre-training per seed (config seed + evaluation seed, its own run folder).
 * A replicate that fails disposes the others and fails the arm.
 */
async function pretrainReplicates(arm: ArmSpec, ctx: ArmContext, plan: ExperimentPlan, provider: ArmProvider): Promise<{ encoders: Map<number, Encoder> | null; training: NonNullable<ArmResult['training']> }> {
  const seeds = plan.preset.seeds;
  const summary = (c: ArmContext) => (UNTRAINED_KINDS.has(arm.kind) ? undefined : provider.trainingSummary?.(arm, c));
  if (!plan.config.evaluate.replicatePretraining || UNTRAINED_KINDS.has(arm.kind)) {
    const encoder = await provider.pretrainArm(arm, ctx);
    const t = summary(ctx);
    return { encoders: encoder && new Map(seeds.map((s) => [s, encoder])), training: t ? [t] : [] };
  }
  const out = new Map<number, Encoder>();
  const training: NonNullable<ArmResult['training']> = [];
  try {
    for (const s of seeds) {
      const seed = ctx.seed + s;
      const replicate = { ...ctx, config: { ...ctx.config, seed }, seed, replicate: s, runDir: `${ctx.runDir}/seed-${s}` };
      const encoder = await provider.pretrainArm(arm, replicate);
      if (!encoder) throw new MedsslError('invalid-value', arm.name, 'a replicate of a pre-training arm returned no encoder');
      out.set(s, encoder);
      const t = summary(replicate);
      if (t) training.push({ ...t, seed: s });
    }
  } catch (e) {
    for (const encoder of out.values()) encoder.dispose();
    throw e;
  }
  return { encoders: out, training };
}

/** Test-set scores of one arm, keyed `protocol|fraction|seed` (kept in memory for the paired tests, not written). */
type TestScores = Map<string, Float32Array>;
const scoreKey = (protocol: Protocol, fraction: number, seed: number) => `${protocol}|${fraction}|${seed}`;

async function evaluateArm(arm: ArmSpec, encoders: Map<number, Encoder> | null, ds: LabelledDataset, ctx: ArmContext, plan: ExperimentPlan, provider: ArmProvider): Promise<{ result: ArmResult; testScores: TestScores }> {
  const p = plan.preset;
  const log = plan.log ?? (() => {});
  const result: ArmResult = { name: arm.name, kind: arm.kind, pretrained: encoders !== null && arm.kind !== 'random', status: 'ok', seconds: { pretrain: 0, evaluate: 0 }, protocols: {}, curves: [] };
  const perSeed: Partial<Record<Protocol, Map<number, SeedResult[]>>> = {};
  const testScores: TestScores = new Map();
  const splits = new Map(p.seeds.map((s) => [s, labelFractions(ds.train.labels, { fractions: p.fractions, seed: s, tasks: ds.tasks.length, patients: ds.train.patients })]));
  const record = (protocol: Protocol, fraction: number, seed: number, r: ProtocolResult, trainSize: number, bestStep?: number) => {
    const bucket = ((perSeed[protocol] ??= new Map()).get(fraction) ?? []);
    bucket.push({ seed, auc: r.test.auc, ci: r.test.ci, variance: r.test.variance, val: r.val, trainSize, ...(bestStep !== undefined ? { bestStep } : {}) });
    perSeed[protocol]!.set(fraction, bucket);
    testScores.set(scoreKey(protocol, fraction, seed), r.testScores);
    plan.onEval?.({ type: 'eval', task: ds.name, arm: arm.name, protocol, fraction, seed, metric: 'auc', value: r.test.auc, ci: r.test.ci, ...(bestStep !== undefined ? { step: bestStep } : {}) });
    log(`[${ds.name}] ${arm.name} ${protocol} ${fraction * 100}% seed ${seed}: AUC ${r.test.auc.toFixed(3)}`);
  };
  const byProtocol: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => T | Promise<T>): Promise<T> => {
    const t = Date.now();
    try { return await f(); } finally { byProtocol[name] = (byProtocol[name] ?? 0) + (Date.now() - t) / 1000; }
  };
  const robust = async (protocol: Protocol, fraction: number, seed: number, r: ProtocolResult) => {
    if (protocol !== p.robustness.protocol || fraction !== p.robustness.fraction || seed !== p.seeds[0] || result.robustness) return;
    result.robustness = await timed('robustness', () => robustness(r, ds, protocol, fraction, seed, p.robustness.grid));
    for (const pt of result.robustness.points) {
      plan.onEval?.({ type: 'eval', task: ds.name, arm: arm.name, protocol, fraction, seed, metric: 'auc', value: pt.auc, ci: [pt.auc, pt.auc], perturbation: { [pt.kind]: pt.value } });
    }
  };

  let features = null as { encoder: Encoder; set: FeatureSet } | null;
  const calibration = arm.kind === 'none-bn' ? await (provider.calibrationImages?.(ctx) ?? Promise.resolve(ds.train.images)) : null;
  for (const seed of p.seeds) {
    const pretrained = encoders?.get(seed) ?? null;
    const fresh = pretrained ?? provider.initEncoder(ctx, seed);
    if (calibration && !pretrained) await timed('bn', () => recalibrateBatchNorm(fresh, calibration, ctx.inputShape));
    // Frozen protocols share one encoding of every split per encoder (one pre-trained encoder may serve every seed).
    const needFeatures = p.protocols.some((q) => q !== 'finetune');
    if (needFeatures && features?.encoder !== fresh) {
      features = { encoder: fresh, set: await timed('features', () => ({ train: extractFeatures(fresh, ds.train), val: extractFeatures(fresh, ds.val), test: extractFeatures(fresh, ds.test) })) };
    }
    const all = needFeatures ? features!.set : null;
    for (const fraction of p.fractions) {
      const idx = splits.get(seed)!.get(fraction)!;
      const train = subset(ds.train, idx);
      const fset = all ? { ...all, train: selectRows(all.train, idx) } : undefined;
      for (const protocol of p.protocols) {
        if (protocol === 'finetune') continue;
        const r = await timed(protocol, () => protocol === 'linear'
          ? linearProbe(fresh, train, ds.val, ds.test, p.linear, fset)
          : knnProbe(fresh, train, ds.val, ds.test, p.knn, fset));
        record(protocol, fraction, seed, r, train.n);
        await robust(protocol, fraction, seed, r);
        r.dispose();
      }
      if (p.protocols.includes('finetune') && p.finetune.fractions.includes(fraction) && p.finetune.seeds.includes(seed)) {
        const model = await cloneEncoder(fresh);
        const r = await timed('finetune', () => finetune(model, train, ds.val, ds.test, { ...p.finetune, seed }));
        record('finetune', fraction, seed, r, train.n, r.bestStep);
        result.curves.push({ fraction, seed, points: r.curve, bestStep: r.bestStep });
        await robust('finetune', fraction, seed, r);
        r.dispose();
      }
    }
    if (!pretrained) fresh.dispose();
  }
  for (const [protocol, byFraction] of Object.entries(perSeed) as Array<[Protocol, Map<number, SeedResult[]>]>) {
    const table: Record<string, FractionResult> = {};
    for (const f of p.fractions) {
      const runs = byFraction.get(f);
      if (!runs) continue;
      const c = combineSeeds(runs);
      table[key(f)] = { auc: c.auc, ci: c.ci, sd: c.sd, seeds: runs.map((r) => r.seed), perSeed: runs };
    }
    result.protocols[protocol] = table;
  }
  result.seconds.byProtocol = byProtocol;
  return { result, testScores };
}

/**
 * Every arm against no pre-training: per protocol and fraction, the paired DeLong test per seed (same test set, same
 * label subset, same seed of the fine-tuning order), combined over seeds (auc.ts combinePaired). Sets `pVsNone` and
 * `vsNone` on each FractionResult of every arm but the 'none' one; against the BN-re-estimated control ('none-bn',
 * when the plan has it) the same test gives `vsNoneBn` to every pre-trained arm.
 */
export function addVersusNone(arms: ArmResult[], scores: Map<ArmResult, TestScores>, ds: LabelledDataset): void {
  addVersus(arms, scores, ds, 'none', (r, v) => { r.vsNone = v; r.pVsNone = v.p; });
  addVersus(arms, scores, ds, 'none-bn', (r, v) => { r.vsNoneBn = v; });
}

function addVersus(arms: ArmResult[], scores: Map<ArmResult, TestScores>, ds: LabelledDataset, kind: ArmKind, set: (r: FractionResult, v: VersusNone) => void): void {
  const baseline = arms.find((a) => a.kind === kind && a.status === 'ok');
  const base = baseline && scores.get(baseline);
  if (!baseline || !base) return;
  for (const arm of arms) {
    const own = scores.get(arm);
    if (arm === baseline || arm.status !== 'ok' || !own || (kind !== 'none' && UNTRAINED_KINDS.has(arm.kind))) continue;
    for (const [protocol, table] of Object.entries(arm.protocols) as Array<[Protocol, Record<string, FractionResult>]>) {
      for (const [f, r] of Object.entries(table)) {
        const v = versus(own, base, protocol, Number(f), r.seeds, ds);
        if (v) set(r, v);
      }
    }
  }
}

/** The paired test of two arms' test scores at one protocol and fraction, over the seeds both have (null: none). */
function versus(own: TestScores, base: TestScores, protocol: Protocol, fraction: number, seeds: number[], ds: LabelledDataset): VersusNone | null {
  const pairs: PairedAuc[] = [];
  for (const seed of seeds) {
    const a = own.get(scoreKey(protocol, fraction, seed)), b = base.get(scoreKey(protocol, fraction, seed));
    if (a && b) pairs.push(pairedAuc(a, b, ds.test.labels, ds.tasks.length, { tasks: ds.tasks, seed }));
  }
  if (!pairs.length) return null;
  const c = combinePaired(pairs);
  const half = 1.959963984540054 * Math.sqrt(c.variance);
  return { delta: c.delta, ci: [c.delta - half, c.delta + half], z: c.z, p: c.p };
}

/** `arm` against `against` (evaluate.contrasts), every protocol and fraction both were evaluated at. */
function contrast(arms: ArmResult[], scores: Map<ArmResult, TestScores>, ds: LabelledDataset, arm: string, against: string): ContrastResult {
  const out: ContrastResult = { arm, against, protocols: {} };
  const a = arms.find((x) => x.name === arm && x.status === 'ok'), b = arms.find((x) => x.name === against && x.status === 'ok');
  const own = a && scores.get(a), base = b && scores.get(b);
  if (!a || !own || !base) return out;
  for (const [protocol, table] of Object.entries(a.protocols) as Array<[Protocol, Record<string, FractionResult>]>) {
    for (const [f, r] of Object.entries(table)) {
      const v = versus(own, base, protocol, Number(f), r.seeds, ds);
      if (v) (out.protocols[protocol] ??= {})[f] = v;
    }
  }
  return out;
}

/** AUC of one trained protocol under each perturbation of the test images, and its drop from the clean AUC. */
export function robustness(r: ProtocolResult, ds: LabelledDataset, protocol: Protocol, fraction: number, seed: number, grid: Perturbation[]): RobustnessResult {
  const tasks = ds.tasks.length;
  const points = grid.map((pert) => {
    const scores = r.scorer(mapImages(ds.test, (img) => perturb(img, pert)));
    const auc = aucWithCi(scores, ds.test.labels, tasks, { resamples: 0, tasks: ds.tasks }).auc;
    return { kind: pert.kind, value: pert.value, label: describePerturbation(pert), auc, drop: r.test.auc - auc };
  });
  return { protocol, fraction, seed, clean: r.test.auc, points };
}

/**
 * Convergence (the paper's "up to 85% fewer steps"): for each seed, the target is the no-pre-training arm's best
 * validation AUC at the convergence fraction, reached at step S0; an arm's saving is 1 - S/S0 where S is the first
 * evaluated step at which its validation AUC reaches the target (null when it never does).
 */
export function addConvergence(arms: ArmResult[], fraction: number): void {
  const baseline = arms.find((a) => a.kind === 'none' && a.status === 'ok');
  if (!baseline) return;
  for (const arm of arms) {
    if (arm.status !== 'ok' || arm.curves.length === 0) continue;
    const perSeed: ConvergenceResult['perSeed'] = [];
    for (const c of arm.curves.filter((c) => c.fraction === fraction)) {
      const base = baseline.curves.find((b) => b.fraction === fraction && b.seed === c.seed);
      if (!base) continue;
      const target = Math.max(...base.points.map((pt) => pt.valAuc));
      const baselineSteps = crossing(base.points, target) ?? base.bestStep;
      const steps = crossing(c.points, target);
      perSeed.push({ seed: c.seed, target, baselineSteps, steps, savedPercent: steps === null ? null : 100 * (1 - steps / baselineSteps) });
    }
    const reached = perSeed.filter((s) => s.savedPercent !== null);
    arm.convergence = {
      fraction,
      perSeed,
      reached: reached.length,
      savedPercent: reached.length && reached.length === perSeed.length ? reached.reduce((a, s) => a + s.savedPercent!, 0) / reached.length : null,
    };
  }
}

/**
 * The step at which a validation curve first reaches `target`, interpolated linearly between the evaluations around
 * the crossing. The curve starts at (0, 0.5): the head is zero-initialised, so every score is equal and the AUC is
 * exactly 1/2. null when the curve never reaches the target.
 */
export function crossing(points: CurvePoint[], target: number): number | null {
  let prev = { step: 0, valAuc: 0.5 };
  for (const pt of points) {
    if (pt.valAuc >= target) {
      if (prev.valAuc >= target || pt.valAuc === prev.valAuc) return pt.step;
      return prev.step + ((target - prev.valAuc) / (pt.valAuc - prev.valAuc)) * (pt.step - prev.step);
    }
    prev = pt;
  }
  return null;
}

export function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'arm';
}

export type { AucResult };
