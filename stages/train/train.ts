// The trainer stage: Batch in, MetricsEvent out.
//
// It pulls batches at its own pace (pipeline/core/flow.ts `pull`, with the run's Gate so a slow step stops the source),
// runs one optimizer step per batch, and emits a `step` event per batch, an `epoch` summary when the epoch
// changes and when the input completes, `checkpoint` events after each save, and `alarm` events for collapse or
// NaN. It completes when the input completes; it errors (after the `nan` alarm) when the loss is not finite, and
// when the input errors. Unsubscribing stops training after the current step.
import { Observable, type OperatorFunction } from 'rxjs';
import type { Config } from '../../schemas/config.js';
import type { AlarmEvent, EpochEvent, MetricsEvent, StepEvent } from '../../schemas/metrics.js';
import type { Batch } from '../../schemas/records.js';
import { type Gate, pull } from '../../pipeline/core/flow.js';
import type { Communicator } from '../../pipeline/core/mpi.js';
import { objectiveFor } from './objectives/index.js';
import { Trainer } from './trainer.js';

export interface TrainOptions {
  config: Config;
  /** Optimizer steps of the whole run: the length of the cosine schedule. */
  totalSteps: number;
  /** The run's gate: paused while `highWaterMark` batches wait. */
  gate?: Gate;
  highWaterMark?: number;
  /** A trainer to continue (restored from a checkpoint); otherwise one is built from the first batch. */
  trainer?: Trainer;
  /** Called with the trainer once it exists (the caller owns and disposes it). */
  onTrainer?: (trainer: Trainer) => void;
  /** Saves a checkpoint at each epoch end (and every train.checkpointEverySteps); resolves to where it went. */
  checkpoint?: (trainer: Trainer, epoch: number) => Promise<string>;
  /** Run name stamped on every event. */
  run?: string;
  /** Stop once the trainer has made this many optimizer steps in all (`medssl pretrain --steps`). */
  maxSteps?: number;
  /**
   * Data-parallel training: this process is one rank of `world` and its batches are its share of each global batch
   * (stages/train/README.md). Events then describe the whole job: the loss and metrics of the global batch, images
   * per second of all ranks.
   */
  world?: Communicator;
}

export function train(opts: TrainOptions): OperatorFunction<Batch, MetricsEvent> {
  return (source$) => new Observable<MetricsEvent>((subscriber) => {
    let stopped = false;
    const batches = pull(source$, { gate: opts.gate, highWaterMark: opts.highWaterMark ?? opts.config.train.highWaterMark });
    const emit = (e: MetricsEvent) => { if (!stopped) subscriber.next({ ...(opts.run ? { run: opts.run } : {}), time: Date.now(), ...e }); };
    (async () => {
      let trainer = opts.trainer;
      const t = opts.config.train;
      const alarms = new CollapseWatch(opts.config);
      let epoch: EpochTally | null = null;
      const closeEpoch = async () => {
        if (!epoch || !trainer) return;
        emit(epoch.summary());
        if (opts.checkpoint) emit({ type: 'checkpoint', step: trainer.position.step, epoch: epoch.epoch, path: await opts.checkpoint(trainer, epoch.epoch) });
      };
      let last = performance.now();
      for await (const batch of batches) {
        const waited = performance.now() - last;
        if (stopped) break;
        if (!trainer) {
          trainer = new Trainer(opts.config, batch.views[0].channels, batch.numLabels, opts.world ? { world: opts.world } : {});
          opts.onTrainer?.(trainer);
        }
        const done = trainer.position.last;
        if (done && (batch.epoch < done.epoch || (batch.epoch === done.epoch && batch.step <= done.step))) {
          // Already trained on before the checkpoint this run resumed from.
          last = performance.now();
          continue;
        }
        if (epoch && batch.epoch !== epoch.epoch) await closeEpoch();
        if (!epoch || batch.epoch !== epoch.epoch) epoch = new EpochTally(batch.epoch);
        const t0 = performance.now();
        const r = await trainer.trainStep(batch, opts.totalSteps);
        const stepMs = performance.now() - t0;
        last = performance.now();
        // Images of the global batch (every rank's share).
        const b = batch.ids.length * trainer.worldSize;
        const event: StepEvent = {
          type: 'step', epoch: batch.epoch, step: trainer.position.step - 1, ...r,
          stepTimeMs: stepMs, imagesPerSec: (b * 1000) / (stepMs + waited), waitFraction: waited / (stepMs + waited), worldSize: trainer.worldSize,
        };
        emit(event);
        epoch.add(event, b, stepMs, waited);
        if (!Number.isFinite(r.loss)) {
          emit({ type: 'alarm', step: event.step, kind: 'nan', message: `loss is ${r.loss} at step ${event.step}: training stopped` });
          throw new Error(`loss is ${r.loss} at step ${event.step}`);
        }
        const alarm = alarms.observe(event);
        if (alarm) emit(alarm);
        if (opts.checkpoint && t.checkpointEverySteps > 0 && trainer.position.step % t.checkpointEverySteps === 0) {
          emit({ type: 'checkpoint', step: trainer.position.step, epoch: batch.epoch, path: await opts.checkpoint(trainer, batch.epoch) });
        }
        if (opts.maxSteps !== undefined && trainer.position.step >= opts.maxSteps) break;
      }
      // Data-parallel: the ranks' inputs must end together (a rank still holding a batch would wait for the others).
      if (!stopped && opts.world) {
        if (!trainer) throw new Error(`rank ${opts.world.rank} of ${opts.world.size} received no batch at all`);
        trainer.endOfData();
      }
      if (!stopped) {
        await closeEpoch();
        subscriber.complete();
      }
    })().catch((e) => { if (!stopped) subscriber.error(e); });
    return () => {
      stopped = true;
      void batches.return(undefined);
    };
  });
}

/** Running totals of one epoch. */
class EpochTally {
  private steps = 0;
  private loss = 0;
  private images = 0;
  private busy = 0;
  private waited = 0;
  private usage = 0;
  private usageSteps = 0;
  constructor(readonly epoch: number) {}

  add(e: StepEvent, images: number, stepMs: number, waitedMs: number): void {
    this.steps++;
    this.loss += e.loss;
    this.images += images;
    this.busy += stepMs;
    this.waited += waitedMs;
    if (e.prototypeUsage !== undefined) {
      this.usage += e.prototypeUsage;
      this.usageSteps++;
    }
  }

  summary(): EpochEvent {
    const total = this.busy + this.waited;
    return {
      type: 'epoch', epoch: this.epoch, steps: this.steps, meanLoss: this.loss / Math.max(this.steps, 1), images: this.images,
      seconds: total / 1000, waitFraction: total > 0 ? this.waited / total : 0,
      ...(this.usageSteps ? { prototypeUsage: this.usage / this.usageSteps } : {}),
    };
  }
}

/**
 * The collapse alarm. SwAV collapses when every sample gets the same embedding: the codes are then uniform and the
 * swapped-prediction loss sits at ln K, and few prototypes ever win a sample. Both are judged on a moving window
 * after `alarm.afterSteps`, and an alarm is raised at most once per window. Short of collapse, the codes can stay
 * close to uniform (Sinkhorn's epsilon too soft for the batch's scores, as for a batch of one modality): then a
 * 'uniform-codes' alarm, at most once per epoch.
 */
export class CollapseWatch {
  private losses: number[] = [];
  private usages: number[] = [];
  private entropies: number[] = [];
  private quietUntil = 0;
  private uniformEpoch = -1;
  /** Only an objective with prototypes can collapse this way. */
  private readonly clusters: boolean;
  constructor(private readonly config: Config) {
    this.clusters = objectiveFor(config).heads.prototypes;
  }

  observe(e: StepEvent): AlarmEvent | null {
    const t = this.config.train;
    if (!this.clusters) return null;
    const a = t.alarm;
    this.losses.push(e.sslLoss ?? e.loss);
    if (e.prototypeUsage !== undefined) this.usages.push(e.prototypeUsage);
    if (e.codeEntropy !== undefined) this.entropies.push(e.codeEntropy);
    for (const xs of [this.losses, this.usages, this.entropies]) if (xs.length > a.window) xs.shift();
    if (e.step < a.afterSteps || this.losses.length < a.window || e.step < this.quietUntil) return null;
    const lnK = Math.log(this.config.model.prototypes);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const meanLoss = mean(this.losses);
    const meanUsage = this.usages.length ? mean(this.usages) : 1;
    const stuck = Math.abs(meanLoss - lnK) <= a.lossTolerance * lnK;
    const unused = meanUsage < a.minPrototypeUsage;
    if (!stuck && !unused) {
      const entropy = this.entropies.length === a.window ? mean(this.entropies) : 0;
      if (entropy <= a.maxCodeEntropy * lnK || e.epoch === this.uniformEpoch) return null;
      this.uniformEpoch = e.epoch;
      return {
        type: 'alarm', step: e.step, kind: 'uniform-codes',
        message: `codes close to uniform: mean code entropy ${entropy.toFixed(3)} nats over ${a.window} steps is ${(entropy / lnK).toFixed(2)} of ln K = ${lnK.toFixed(4)} (above ${a.maxCodeEntropy}), so swapped prediction has little to learn; a smaller train.epsilon sharpens the codes`,
      };
    }
    this.quietUntil = e.step + a.window;
    const why = [
      ...(stuck ? [`mean loss ${meanLoss.toFixed(4)} over ${a.window} steps is within ${a.lossTolerance * 100}% of ln K = ${lnK.toFixed(4)}`] : []),
      ...(unused ? [`mean prototype usage ${meanUsage.toFixed(3)} is below ${a.minPrototypeUsage}`] : []),
    ];
    return { type: 'alarm', step: e.step, kind: 'collapse', message: `possible collapse: ${why.join('; ')}` };
  }
}
