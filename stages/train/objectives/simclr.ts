// SimCLR (Chen et al. 2020): NT-Xent (../ntxent-loss.ts) over the projections of the two global crops; data-parallel,
// the candidates are every rank's rows (../distributed.ts gatherRows).
import type { Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../../pipeline/core/tensorflow.js';
import type { Config } from '../../../schemas/config.js';
import type { Batch } from '../../../schemas/records.js';
import { gatherRows } from '../distributed.js';
import { project } from '../heads.js';
import { ntXentLoss, ntXentLossSharded } from '../ntxent-loss.js';
import { lossPartMetrics, type Objective } from './objective.js';

export function simclr(config: Config): Objective {
  const t = config.train;
  return {
    name: 'simclr',
    heads: { projection: true, prototypes: false, classifier: false },
    queues: false,
    labelled: false,
    ...lossPartMetrics(['loss']),
    views: twoGlobalCrops,
    loss(s, kept) {
      const b = s.batch.ids.length;
      const z = project(s.store, tf.concat(s.features, 0) as Tensor2D, s.mode);
      const zByView = s.views.map((_, i) => tf.slice(z, [i * b, 0], [b, z.shape[1]]) as Tensor2D);
      const dp = s.dp;
      const loss = dp
        ? ntXentLossSharded(zByView[0], zByView[1], t.temperature, (zv) => gatherRows(zv, dp.world), dp.world.rank)
        : ntXentLoss(zByView[0], zByView[1], t.temperature);
      kept.parts = { loss: tf.keep(tf.clone(loss)) };
      return loss;
    },
  };
}

/** The first two global crops (local crops are not forwarded). */
function twoGlobalCrops(batch: Batch): number[] {
  const globals = batch.views.map((_, i) => i).filter((i) => batch.views[i].kind === 'global');
  if (globals.length < 2) throw new RangeError('objective simclr needs two global crops per sample');
  return globals.slice(0, 2);
}
