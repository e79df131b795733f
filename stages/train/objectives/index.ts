// The objective `train.objective` names: the one place the trainer's code reads that string.
import type { Config } from '../../../schemas/config.js';
import { hybrid } from './hybrid.js';
import type { Objective } from './objective.js';
import { simclr } from './simclr.js';
import { supervised } from './supervised.js';
import { swav } from './swav.js';

export type { Assignment, Group, Kept, MetricName, Objective, ObjectiveStep, StepAgreement } from './objective.js';
export { namedMetrics } from './objective.js';

export function objectiveFor(config: Config): Objective {
  const o = config.train.objective;
  switch (o) {
    case 'swav': return swav(config);
    case 'simclr': return simclr(config);
    case 'supervised': return supervised();
    case 'hybrid': return hybrid(config);
  }
}
