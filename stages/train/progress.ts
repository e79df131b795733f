// Pre-training progress on stderr: one line at the first step and then at least every `everyMs` (10 s), even while a
// single long step runs, with step, epoch, images/s, loss, prototype usage and ETA. Lines, not a redrawn bar, so
// logs and CI output read the same as a terminal.
import type { MetricsEvent, StepEvent } from '../../schemas/metrics.js';

export interface TrainingProgress {
  /** Feed every metrics event of the run. */
  observe: (e: MetricsEvent) => void;
  /** Prints the last line and stops the timer. Safe to call twice. */
  stop: () => void;
}

export function trainingProgress(out: { write(s: string): unknown }, opts: { totalSteps: number; batchSize: number; everyMs?: number; now?: () => number }): TrainingProgress {
  const now = opts.now ?? (() => performance.now());
  const everyMs = opts.everyMs ?? 10_000;
  const t0 = now();
  let last: StepEvent | null = null;
  let steps = 0;
  // Steady-state rate: time from the end of the first step (TensorFlow's warm-up) to the latest one.
  let firstDone = 0;
  let lastDone = 0;
  let stepStart = t0;
  let printed = -Infinity;
  let stopped = false;

  const line = () => {
    const elapsed = (now() - t0) / 1000;
    if (!last) return `pretrain: waiting for the first step (${elapsed.toFixed(0)} s; TensorFlow's first step also compiles kernels)\n`;
    const done = last.step + 1;
    const steady = steps > 1 ? (opts.batchSize * (steps - 1)) / ((lastDone - firstDone) / 1000) : opts.batchSize / ((lastDone - t0) / 1000);
    const perStep = steps > 1 ? (lastDone - firstDone) / (steps - 1) : lastDone - t0;
    const left = Math.max(opts.totalSteps - done, 0);
    const running = (now() - stepStart) / 1000;
    return `pretrain: step ${done}/${opts.totalSteps} (${((100 * done) / Math.max(opts.totalSteps, 1)).toFixed(0)}%), epoch ${last.epoch}, ` +
      `${steady.toFixed(1)} images/s, loss ${last.loss.toFixed(4)}` +
      (last.prototypeUsage !== undefined ? `, prototypes used ${(100 * last.prototypeUsage).toFixed(0)}%` : '') +
      `, ETA ${duration((left * perStep) / 1000)}` +
      (running >= everyMs / 1000 && left > 0 ? ` (step ${done + 1} running for ${running.toFixed(0)} s)` : '') + '\n';
  };
  const print = () => {
    printed = now();
    out.write(line());
  };
  const timer = setInterval(() => { if (now() - printed >= everyMs - 5) print(); }, Math.min(everyMs, 1000));
  timer.unref();

  return {
    observe(e) {
      if (stopped || e.type !== 'step') return;
      const t = now();
      last = e;
      steps++;
      if (steps === 1) firstDone = t;
      lastDone = t;
      stepStart = t;
      if (steps === 1 || t - printed >= everyMs) print();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (last) print();
    },
  };
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
