// Events the trainer and the evaluation stages emit downstream (and that metrics.jsonl holds, one per line).
import { z } from 'zod';

const base = { run: z.string().optional(), time: z.number().optional() };

export const StepEvent = z.object({
  ...base,
  type: z.literal('step'),
  epoch: z.number().int().nonnegative(),
  step: z.number().int().nonnegative(),
  loss: z.number(),
  /** Parts of a hybrid objective; absent for a pure objective. */
  sslLoss: z.number().optional(),
  supervisedLoss: z.number().optional(),
  lambda: z.number().optional(),
  lr: z.number(),
  /** Mean entropy of the Sinkhorn codes (nats); log K means uniform codes. */
  codeEntropy: z.number().optional(),
  /** Fraction of prototypes that won at least one sample of the batch. */
  prototypeUsage: z.number().optional(),
  stepTimeMs: z.number(),
  imagesPerSec: z.number(),
  /** Fraction of wall time since the previous step spent waiting for the batch. */
  waitFraction: z.number(),
  /** Ranks that trained this step together (data-parallel under MPI); 1 for one process. Absent in older runs. */
  worldSize: z.number().int().positive().optional(),
});
export type StepEvent = z.infer<typeof StepEvent>;

export const EpochEvent = z.object({
  ...base,
  type: z.literal('epoch'),
  epoch: z.number().int().nonnegative(),
  steps: z.number().int().nonnegative(),
  meanLoss: z.number(),
  images: z.number().int().nonnegative(),
  seconds: z.number(),
  waitFraction: z.number(),
  prototypeUsage: z.number().optional(),
});
export type EpochEvent = z.infer<typeof EpochEvent>;

export const AlarmEvent = z.object({
  ...base,
  type: z.literal('alarm'),
  step: z.number().int().nonnegative(),
  kind: z.enum(['collapse', 'uniform-codes', 'nan', 'stall']),
  message: z.string(),
});
export type AlarmEvent = z.infer<typeof AlarmEvent>;

export const CheckpointEvent = z.object({
  ...base,
  type: z.literal('checkpoint'),
  step: z.number().int().nonnegative(),
  epoch: z.number().int().nonnegative(),
  path: z.string(),
});
export type CheckpointEvent = z.infer<typeof CheckpointEvent>;

export const EvalEvent = z.object({
  ...base,
  type: z.literal('eval'),
  task: z.string(),
  arm: z.string().optional(),
  protocol: z.string().optional(),
  fraction: z.number().optional(),
  seed: z.number().int().optional(),
  step: z.number().int().nonnegative().optional(),
  metric: z.string(),
  value: z.number(),
  ci: z.tuple([z.number(), z.number()]).optional(),
  /** A deterministic perturbation applied at evaluation time, e.g. { rotate: 15 }. */
  perturbation: z.record(z.string(), z.number()).optional(),
});
export type EvalEvent = z.infer<typeof EvalEvent>;

/**
 * A pre-training run in a few numbers (stages/train/summary.ts), for the reports: the loss at its start and end and,
 * for the objectives with prototypes, how close the codes stayed to uniform and how many prototypes won a sample.
 */
export const TrainingSummary = z.object({
  steps: z.number().int().nonnegative(),
  /** Mean loss over the first and over the last `window` steps. */
  loss: z.tuple([z.number(), z.number()]),
  window: z.number().int().positive(),
  /** Mean code entropy over the last `window` steps, as a fraction of ln K (1: uniform codes). */
  codeEntropy: z.number().optional(),
  /** Mean prototype usage over the last `window` steps. */
  prototypeUsage: z.number().optional(),
  /** Alarms raised, by kind. */
  alarms: z.record(z.string(), z.number().int().positive()),
});
export type TrainingSummary = z.infer<typeof TrainingSummary>;

export const MetricsEvent = z.discriminatedUnion('type', [StepEvent, EpochEvent, AlarmEvent, CheckpointEvent, EvalEvent]);
export type MetricsEvent = z.infer<typeof MetricsEvent>;
