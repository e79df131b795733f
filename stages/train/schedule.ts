// Per-iteration schedules. Learning rate: linear warm-up from warmupStartLr to lr, then a cosine from lr down to
// minLr over the remaining steps (Loshchilov & Hutter 2017; SwAV's schedule, evaluated every iteration).
import type { OptimizerConfig, TrainConfig } from '../../schemas/config.js';

export function learningRate(o: OptimizerConfig, step: number, totalSteps: number): number {
  if (step < o.warmupSteps) return o.warmupStartLr + ((o.lr - o.warmupStartLr) * step) / o.warmupSteps;
  const span = Math.max(totalSteps - o.warmupSteps, 1);
  const t = Math.min((step - o.warmupSteps) / span, 1);
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * t));
}

/** Weight of the self-supervised term of the hybrid objective at `step` (Ghesu et al. 2022, eq. 4: L_sup + lambda L_ssl). */
export function lambdaAt(t: TrainConfig, step: number): number {
  const { kind, start, steps } = t.lambdaSchedule;
  if (kind === 'constant' || steps === 0 || step >= steps) return t.lambda;
  const f = step / steps;
  const w = kind === 'linear' ? f : 0.5 * (1 - Math.cos(Math.PI * f));
  return start + (t.lambda - start) * w;
}
