// A whole pre-training run in a folder: resolved config, metrics.jsonl, checkpoints, exported encoder.
// `resume: true` continues the same run from its checkpoint (same config; batches already trained on are skipped,
// metrics are appended, after the events the checkpoint does not cover are cut: see trimToCheckpoint).
//
// Data-parallel (`world`, several ranks under MPI): every rank runs this with its own share of the batches; rank 0
// alone writes the config, metrics.jsonl, checkpoints and the encoder, and every rank reads the checkpoint to resume.
import fs from 'node:fs';
import path from 'node:path';
import { type Observable, concatMap, defer, from, isObservable, lastValueFrom, range, share, tap } from 'rxjs';
import { writeJsonl } from '../../pipeline/core/bridge.js';
import { MedsslError } from '../../pipeline/core/failures.js';
import { Gate } from '../../pipeline/core/flow.js';
import type { Communicator } from '../../pipeline/core/mpi.js';
import type { Config } from '../../schemas/config.js';
import type { AlarmEvent, MetricsEvent, StepEvent, TrainingSummary } from '../../schemas/metrics.js';
import type { Batch } from '../../schemas/records.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { objectiveFor } from './objectives/index.js';
import { readRunSummary } from './summary.js';
import { train } from './train.js';
import type { Trainer } from './trainer.js';

type BatchSource = Observable<Batch> | AsyncIterable<Batch>;

export interface PretrainOptions {
  config: Config;
  /** All batches of the run, or one epoch's batches per call (preferred: resume then regenerates only what is left). */
  batches: BatchSource | ((epoch: number) => BatchSource);
  runDir: string;
  resume?: boolean;
  gate?: Gate;
  /** Steps per epoch for the schedules when config.train.stepsPerEpoch is null. */
  stepsPerEpoch?: number;
  /** Live events (e.g. a progress bar); metrics.jsonl gets them all anyway. */
  onEvent?: (e: MetricsEvent) => void;
  /**
   * Exactly this many optimizer steps in all (smoke runs, benchmarks): the schedules span them, and as many epochs are
   * replayed as they need, instead of train.epochs.
   */
  steps?: number;
  /** Data-parallel training: this process is one rank of `world`; `batches` must give this rank's share. */
  world?: Communicator;
}

export interface PretrainResult {
  runDir: string;
  /** Optimizer steps done in total (including those before a resume). */
  steps: number;
  /** Steps run by this call. */
  stepsThisRun: number;
  firstLoss: number | null;
  lastLoss: number | null;
  alarms: AlarmEvent[];
  /** The whole run (resumed parts included) in a few numbers, from metrics.jsonl; null on ranks other than 0. */
  summary: TrainingSummary | null;
  checkpoint: string | null;
  encoder: string;
}

export async function pretrain(opts: PretrainOptions): Promise<PretrainResult> {
  const { config, runDir } = opts;
  const t = config.train;
  const stepsPerEpoch = t.stepsPerEpoch ?? opts.stepsPerEpoch;
  if (!stepsPerEpoch) throw new MedsslError('invalid-value', 'config', 'train.stepsPerEpoch is not set and the data source did not say');
  const totalSteps = opts.steps ?? t.epochs * stepsPerEpoch;
  const epochs = Math.ceil(totalSteps / stepsPerEpoch);
  const world = opts.world && opts.world.size > 1 ? opts.world : undefined;
  const writer = !world || world.rank === 0;
  if (writer) fs.mkdirSync(runDir, { recursive: true });
  const metricsFile = path.join(runDir, 'metrics.jsonl');
  let trainer: Trainer | undefined;
  let startEpoch = 0;
  if (opts.resume) {
    if (world && !fs.existsSync(path.join(runDir, 'checkpoint', 'state.json'))) {
      throw new MedsslError('not-found', runDir, `rank ${world.rank} sees no checkpoint here: to resume a data-parallel run, every rank must see the run folder (shared storage)`);
    }
    const restored = loadCheckpoint(runDir, config, world ? { world } : {});
    trainer = restored.trainer;
    if (writer) for (const note of restored.notes) process.stderr.write(`medssl: ${note}\n`);
    const last = restored.state.position.last;
    // A finished epoch is not regenerated; an interrupted one is, and its trained batches are skipped.
    startEpoch = last ? (last.step + 1 >= stepsPerEpoch ? last.epoch + 1 : last.epoch) : 0;
    if (writer) trimToCheckpoint(metricsFile, restored.state.position.step, startEpoch);
  } else if (fs.existsSync(path.join(runDir, 'checkpoint')) || fs.existsSync(metricsFile)) {
    throw new MedsslError('invalid-value', runDir, 'already holds a run: pass --resume to continue it, or choose another --out');
  }
  // Every rank has looked at the folder before rank 0 writes to it.
  world?.barrier();
  if (writer) fs.writeFileSync(path.join(runDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);

  const gate = opts.gate ?? new Gate({ window: t.highWaterMark + 1 });
  const source$ = typeof opts.batches === 'function'
    ? range(startEpoch, Math.max(epochs - startEpoch, 0)).pipe(concatMap((e) => defer(() => asObservable((opts.batches as (e: number) => BatchSource)(e)))))
    : asObservable(opts.batches);
  let first: number | null = null, lastLoss: number | null = null, stepsThisRun = 0, checkpoint: string | null = null;
  const alarms: AlarmEvent[] = [];
  const events$ = source$.pipe(
    train({
      config, totalSteps, gate, trainer, run: path.basename(path.resolve(runDir)), maxSteps: totalSteps, ...(world ? { world } : {}),
      onTrainer: (tr) => { trainer = tr; },
      checkpoint: (tr, epoch) => saveCheckpoint(tr, runDir, epoch),
    }),
    tap((e) => {
      if (e.type === 'step') {
        first ??= (e as StepEvent).loss;
        lastLoss = (e as StepEvent).loss;
        stepsThisRun++;
      } else if (e.type === 'alarm') alarms.push(e);
      else if (e.type === 'checkpoint') checkpoint = e.path;
      opts.onEvent?.(e);
    }),
    share(),
  );
  try {
    // The writer holds the run's gate while its lines wait for the disk, so a slow disk slows the batches, not memory.
    if (writer) await writeJsonl(events$, metricsFile, { gate });
    else await lastValueFrom(events$, { defaultValue: null });
    const steps = (trainer as Trainer | undefined)?.position.step ?? 0;
    // A run with steps to go that trained none had every sample fail before the trainer (each one recorded): that is
    // not a finished run, and an encoder at its initial weights must not pass for one.
    if (stepsThisRun === 0 && steps < totalSteps) {
      throw new MedsslError('invalid-value', runDir, `no batch reached the trainer (${totalSteps - steps} steps to go): every sample failed before training, as the recorded failures say`);
    }
    const summary = writer ? readRunSummary(metricsFile, objectiveFor(config).heads.prototypes ? config.model.prototypes : null) : null;
    return { runDir, steps, stepsThisRun, firstLoss: first, lastLoss, alarms, summary, checkpoint, encoder: path.join(runDir, 'encoder') };
  } finally {
    (trainer as Trainer | undefined)?.dispose();
  }
}

/**
 * Cuts metrics.jsonl back to what the checkpoint covers (`steps` done, epochs before `startEpoch` closed): the run
 * continues from there and emits the later events again, so without the cut a resumed run would list the steps
 * after the checkpoint twice. A line cut short by a killed process, which the next line would be glued to, goes too.
 */
export function trimToCheckpoint(file: string, steps: number, startEpoch: number): void {
  if (!fs.existsSync(file)) return;
  const text = fs.readFileSync(file, 'utf8');
  const kept = text.split('\n').filter((line) => {
    let e: Partial<MetricsEvent> & { step?: number; epoch?: number };
    try {
      e = JSON.parse(line) as typeof e;
    } catch {
      return false; // blank, or cut short
    }
    if ((e.type === 'step' || e.type === 'alarm') && (e.step ?? 0) >= steps) return false;
    if (e.type === 'checkpoint' && (e.step ?? 0) > steps) return false;
    if (e.type === 'epoch' && (e.epoch ?? 0) >= startEpoch) return false;
    return true;
  });
  const trimmed = kept.map((l) => `${l}\n`).join('');
  if (trimmed === text) return;
  fs.writeFileSync(`${file}.tmp`, trimmed);
  fs.renameSync(`${file}.tmp`, file);
}

function asObservable(s: BatchSource): Observable<Batch> {
  return isObservable(s) ? s : from(s);
}
