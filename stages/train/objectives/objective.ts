// What a training objective is to the trainer: the heads it trains, the crops it looks at, its loss on the step's
// features, and the named metrics it reports. One file per objective (swav.ts, simclr.ts, supervised.ts,
// hybrid.ts), each a plain object built from the config; index.ts picks one from `train.objective`.
//
// The trainer owns everything shared: the encoder's forward pass, gradients, the optimizer, queues, graph steps and
// the data-parallel collectives around the step. An objective only sees the features and what it asked for.
import type { Scalar, Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs';
import type { Communicator } from '../../../pipeline/core/mpi.js';
import { tf } from '../../../pipeline/core/tensorflow.js';
import type { Batch } from '../../../schemas/records.js';
import type { ParamStore } from '../params.js';
import type { EmbeddingQueue } from '../queue.js';
import type { ForwardMode } from '../resnet.js';

/** The values a step reports besides the learning rate and lambda (StepResult's fields of the same names). */
export type MetricName = 'loss' | 'sslLoss' | 'supervisedLoss' | 'codeEntropy' | 'prototypeUsage';

/** Samples clustered together: the whole batch (multi-modal) or one modality's rows (uni-modal). */
export interface Group {
  /** null: all modalities together. */
  modality: string | null;
  /** Row indices into the batch; null means every row. */
  rows: Int32Array | null;
  size: number;
}

/** What the ranks agreed on before a data-parallel step. */
export interface StepAgreement {
  /** The step's groups, the same on every rank; a group this rank has no rows of has size 0. */
  groups: Group[];
  /** Rows of each group over all ranks. */
  groupRows: number[];
  /** Rows of the global batch. */
  rows: number;
  /** Labelled rows over all ranks. */
  labelled: number;
}

/** SwAV: one group's assigned crops, kept past the gradient's scope for the code metrics and the queue. */
export interface Assignment {
  group: Group;
  /** Scores [B, K] of each assigned crop. */
  assigned: Tensor2D[];
  /** The queue's scores, one block per assigned crop, when the queue was used (one process). */
  queue?: Tensor2D[];
  /** Embeddings [B, D] of each assigned crop: what the queue receives after the update. */
  z: Tensor2D[];
  /** The codes from the distributed Sinkhorn-Knopp (data-parallel). */
  codes?: Tensor2D[];
}

/** Tensors an objective keeps past the gradient's scope; the trainer disposes them after the step. */
export interface Kept {
  /** The loss parts, by metric name (one scalar may stand under two names). */
  parts: Partial<Record<MetricName, Tensor>>;
  assignments: Assignment[];
}

/** What an objective's loss sees of a step. */
export interface ObjectiveStep {
  store: ParamStore;
  batch: Batch;
  /** The crops looked at (indices into batch.views, from `views`). */
  views: number[];
  /** Pooled features [B, featureDim] of each of `views`, in order. */
  features: Tensor2D[];
  /** Batch norm's mode for the heads (training, with the statistics observed, synchronised over ranks or not). */
  mode: ForwardMode;
  /** Targets [B, L] and the labelled rows [B]; null for an unlabelled batch. */
  labels: Tensor2D | null;
  mask: Tensor1D | null;
  groups: Group[];
  /** Each group's embedding queue (null: none, or not started). */
  queues: Map<Group, EmbeddingQueue | null>;
  /** The step's named inputs (`rows:<modality>`, `lambda`, ...). */
  input: (name: string) => Tensor;
  /** Data-parallel: this rank's job and what the ranks agreed on. */
  dp?: { world: Communicator; agreed: StepAgreement };
}

export interface Objective {
  readonly name: 'swav' | 'simclr' | 'supervised' | 'hybrid';
  /** What it trains on the encoder's features. */
  readonly heads: { projection: boolean; prototypes: boolean; classifier: boolean };
  /** Embedding queues (SwAV section 4) per group, when `train.queue` asks for them. */
  readonly queues: boolean;
  /** Needs labelled batches. */
  readonly labelled: boolean;
  /** The metrics vector's names, in order: the only value read back from a step. */
  readonly metrics: readonly MetricName[];
  /** The crops it looks at (indices into batch.views); throws when the batch lacks them. */
  views(batch: Batch): number[];
  /** Hybrid: the weight of the self-supervised term at `step` (a step input, so that graphs do not hold it). */
  lambda?(step: number): number;
  /** The loss, inside the gradient's scope; fills `kept` (the loss parts under their metric names, SwAV's assignments). */
  loss(s: ObjectiveStep, kept: Kept): Scalar;
  /** One process: the metrics vector's entries ([1] each, in `metrics` order), after the update. */
  metricTensors(kept: Kept): Tensor[];
  /** Data-parallel: this rank's share of the metrics, as sums for the step's fused allreduce. */
  rankShare(kept: Kept, groups: Group[]): Float32Array;
  /** Data-parallel: the metrics vector (in `metrics` order) from the sums of every rank's share. */
  fromRankSums(sums: Float32Array, agreed: StepAgreement, ranks: number): Float32Array;
}

/** The loss parts' entries of the metrics vector, one [1] tensor per name. */
export function partTensors(names: readonly MetricName[], kept: Kept): Tensor[] {
  return names.map((n) => tf.reshape(part(kept, n), [1]));
}

/** Data-parallel: the loss parts' values on this rank (each a mean over its rows; the ranks' mean is one process's). */
export function partValues(names: readonly MetricName[], kept: Kept): number[] {
  return names.map((n) => (part(kept, n).dataSync() as Float32Array)[0]);
}

function part(kept: Kept, name: MetricName): Tensor {
  const t = kept.parts[name];
  if (!t) throw new Error(`the objective kept no loss part named ${name}`);
  return t;
}

/** An objective whose metrics are its loss parts only (SimCLR, supervised). */
export function lossPartMetrics(names: readonly MetricName[]): Pick<Objective, 'metrics' | 'metricTensors' | 'rankShare' | 'fromRankSums'> {
  return {
    metrics: names,
    metricTensors: (kept) => partTensors(names, kept),
    rankShare: (kept) => Float32Array.from(partValues(names, kept)),
    fromRankSums: (sums, _agreed, ranks) => Float32Array.from(sums.subarray(0, names.length), (v) => v / ranks),
  };
}

/** The metrics vector read back by name (a vector of another length than the names is a bug, not a metric). */
export function namedMetrics(names: readonly MetricName[], values: ArrayLike<number>): Partial<Record<MetricName, number>> {
  if (values.length !== names.length) throw new Error(`the step returned ${values.length} metrics for ${names.length} names (${names.join(', ')})`);
  return Object.fromEntries(names.map((n, i) => [n, values[i]]));
}
