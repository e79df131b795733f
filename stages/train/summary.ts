// A pre-training run in a few numbers, from its events (metrics.jsonl): what the experiment's reports show per arm,
// so that a run whose codes stayed close to uniform (the uniform-codes alarm) is visible beside its AUC.
import fs from 'node:fs';
import { MetricsEvent, type StepEvent, type TrainingSummary } from '../../schemas/metrics.js';

/** Steps averaged at each end of a run (all of them in a shorter run). */
export const SUMMARY_WINDOW = 100;

/** `prototypes`: K, for the code entropy as a fraction of ln K (null for objectives without prototypes). */
export function summarizeRun(events: readonly MetricsEvent[], prototypes: number | null): TrainingSummary | null {
  const steps = events.filter((e): e is StepEvent => e.type === 'step');
  if (steps.length === 0) return null;
  const window = Math.min(SUMMARY_WINDOW, steps.length);
  const head = steps.slice(0, window), tail = steps.slice(-window);
  const mean = (xs: Array<number | undefined>) => {
    const v = xs.filter((x): x is number => x !== undefined);
    return v.length === xs.length ? v.reduce((s, x) => s + x, 0) / v.length : undefined;
  };
  const alarms: Record<string, number> = {};
  for (const e of events) if (e.type === 'alarm') alarms[e.kind] = (alarms[e.kind] ?? 0) + 1;
  const entropy = prototypes ? mean(tail.map((e) => e.codeEntropy)) : undefined;
  const usage = mean(tail.map((e) => e.prototypeUsage));
  return {
    steps: steps.length, window,
    loss: [mean(head.map((e) => e.loss))!, mean(tail.map((e) => e.loss))!],
    ...(entropy !== undefined ? { codeEntropy: entropy / Math.log(prototypes!) } : {}),
    ...(usage !== undefined ? { prototypeUsage: usage } : {}),
    alarms,
  };
}

/** The summary of a run folder's metrics.jsonl (lines that do not parse are skipped: a run may have been cut short). */
export function readRunSummary(metricsFile: string, prototypes: number | null): TrainingSummary | null {
  const events = fs.readFileSync(metricsFile, 'utf8').split('\n').flatMap((line) => {
    if (!line) return [];
    try {
      const e = MetricsEvent.safeParse(JSON.parse(line));
      return e.success ? [e.data] : [];
    } catch {
      return [];
    }
  });
  return summarizeRun(events, prototypes);
}
