// Hybrid (Ghesu et al. 2022, eq. 4): L = L_sup + lambda L_SwAV, the supervised term (supervised.ts) on the labelled
// rows and SwAV (swav.ts) on every row; lambda follows `train.lambdaSchedule` and enters each step as an input.
import type { Scalar } from '@tensorflow/tfjs';
import { tf } from '../../../pipeline/core/tensorflow.js';
import type { Config } from '../../../schemas/config.js';
import { lambdaAt } from '../schedule.js';
import { type MetricName, type Objective, partTensors, partValues } from './objective.js';
import { codeMetrics, codeMetricsFromSums, codeShare, everyCrop, swavTerm } from './swav.js';
import { supervisedTerm } from './supervised.js';

const PARTS: readonly MetricName[] = ['loss', 'sslLoss', 'supervisedLoss'];

export function hybrid(config: Config): Objective {
  return {
    name: 'hybrid',
    heads: { projection: true, prototypes: true, classifier: true },
    queues: true,
    labelled: true,
    metrics: [...PARTS, 'codeEntropy', 'prototypeUsage'],
    views: (batch) => everyCrop(batch, 'hybrid'),
    lambda: (step) => lambdaAt(config.train, step),
    loss(s, kept) {
      // An unlabelled batch adds no supervised term (supervisedTerm gives 0).
      const sup = supervisedTerm(s);
      const ssl = swavTerm(config, s, kept);
      const total = tf.add(sup, tf.mul(ssl, s.input('lambda')));
      kept.parts = { loss: tf.keep(tf.clone(total)), sslLoss: tf.keep(tf.clone(ssl)), supervisedLoss: tf.keep(tf.clone(sup)) };
      return total as Scalar;
    },
    metricTensors: (kept) => [...partTensors(PARTS, kept), ...codeMetrics(config, kept.assignments)],
    rankShare: (kept, groups) => codeShare(config, partValues(PARTS, kept), kept.assignments, groups),
    fromRankSums: (sums, agreed, ranks) => codeMetricsFromSums(config, sums, PARTS.length, agreed, ranks),
  };
}
