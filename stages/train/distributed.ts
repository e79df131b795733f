// The collectives inside a data-parallel step (stages/train/README.md, "Data-parallel training"). Each rank holds
// B/N samples of the global batch of B; these pieces make the step compute what one process would on all B:
//
// - syncBatchNorm: batch statistics over all ranks' rows ([sum, sum of squares, count] all-reduced forward, the two
//   gradient sums backward), as PyTorch's SyncBatchNorm.
// - distributedCodes: Sinkhorn-Knopp over all ranks' rows, as SwAV's `distributed_sinkhorn` (the total of Q and the
//   prototype sums all-reduced). Here in the log domain: each is a log-sum-exp, combined across ranks from each rank's
//   local log-sum-exp with an all-reduced maximum as the shift, so nothing overflows.
// - gatherRows: every rank's rows (SimCLR's negatives come from the global batch); the gradient of the gathered
//   tensor is all-reduced and each rank keeps its own rows' part.
//
// Every function makes its collectives in a fixed order that depends only on shapes all ranks share, so the ranks
// never wait on different calls. All are host calls between TensorFlow ops: the step that uses them runs eagerly.
import type { Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs';
import type { Communicator } from '../../pipeline/core/mpi.js';
import { tf } from '../../pipeline/core/tensorflow.js';
import { BN_EPSILON } from './batchnorm.js';
import { stopGradient } from './sinkhorn.js';

/**
 * Training-mode batch norm of x ([..., C], statistics over every axis but the last) with statistics over all ranks.
 * Returns y and the global batch mean and biased variance.
 */
export function syncBatchNorm(x: Tensor, gamma: Tensor1D, beta: Tensor1D, comm: Communicator): { y: Tensor; mean: Tensor1D; variance: Tensor1D; count: number } {
  const c = x.shape[x.rank - 1];
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  const n = x.size / c;
  // Local mean and centred variance (accurate in float32), turned into sums in float64 and added up over ranks.
  const stats = tf.tidy(() => {
    const { mean, variance } = tf.moments(x, axes);
    return tf.concat([mean, variance]);
  });
  const local = stats.dataSync();
  stats.dispose();
  const sums = new Float64Array(2 * c + 1);
  for (let i = 0; i < c; i++) {
    const m = local[i];
    sums[i] = n * m;
    sums[c + i] = n * (local[c + i] + m * m);
  }
  sums[2 * c] = n;
  comm.allreduce(sums, 'sum', 'batchnorm');
  const count = sums[2 * c];
  const mean = new Float32Array(c);
  const variance = new Float32Array(c);
  const invStd = new Float32Array(c);
  for (let i = 0; i < c; i++) {
    const m = sums[i] / count;
    const v = Math.max(sums[c + i] / count - m * m, 0);
    mean[i] = m;
    variance[i] = v;
    invStd[i] = 1 / Math.sqrt(v + BN_EPSILON);
  }
  const meanT = tf.tensor1d(mean);
  const invStdT = tf.tensor1d(invStd);
  const op = tf.customGrad(((xIn: Tensor, g: Tensor1D, b: Tensor1D, save: (ts: Tensor[]) => void) => {
    const xhat = tf.mul(tf.sub(xIn, meanT), invStdT);
    // Saved (kept) for the backward pass: the forward's own tensors are gone by then.
    save([xhat, g, invStdT]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      gradFunc: (dy: Tensor, [xh, gs, inv]: Tensor[]) => {
        // dL/dx = gamma / sigma (dy - mean(dy) - xhat mean(dy xhat)), the means over every rank's rows: the gradient of
        // the sum of all ranks' losses with respect to this rank's x.
        const sumDy = tf.sum(dy, axes) as Tensor1D;
        const sumDyXhat = tf.sum(tf.mul(dy, xh), axes) as Tensor1D;
        const both = tf.concat([sumDy, sumDyXhat]);
        const host = Float64Array.from(both.dataSync());
        both.dispose();
        comm.allreduce(host, 'sum', 'batchnorm');
        const meanDy = tf.tensor1d(Float32Array.from(host.subarray(0, c), (v) => v / count));
        const meanDyXhat = tf.tensor1d(Float32Array.from(host.subarray(c), (v) => v / count));
        const dx = tf.mul(tf.mul(gs, inv), tf.sub(tf.sub(dy, meanDy), tf.mul(xh, meanDyXhat)));
        // gamma and beta: this rank's part (the step averages parameter gradients over ranks).
        return [dx, sumDyXhat, sumDy];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const y = op(x, gamma, beta);
  invStdT.dispose();
  return { y, mean: meanT, variance: tf.tensor1d(variance), count };
}

/**
 * Sinkhorn-Knopp codes for several score matrices at once, each spread over all ranks' rows: entry i is [n_i, K] on
 * this rank, or null where this rank has no rows of it (a modality another rank has). The same algorithm as
 * sinkhorn.ts: Q = exp(s / eps) / total; `iterations` times each prototype column to 1/K and each sample row to 1/B
 * (B = rows over all ranks); then x B. Column sums and the total are over all ranks. Returns codes [n_i, K] (no
 * gradient), null where the input was.
 */
export function distributedCodes(scores: Array<Tensor2D | null>, k: number, opts: { epsilon: number; iterations: number }, comm: Communicator): Array<Tensor2D | null> {
  const m = scores.length;
  const logK = Math.log(k);
  let logQ = scores.map((s) => (s ? tf.div(stopGradient(s), opts.epsilon) as Tensor2D : null));
  const replace = (next: Array<Tensor2D | null>) => {
    for (const t of logQ) t?.dispose();
    logQ = next;
  };
  // Q / sum(Q): the total mass over all ranks.
  const total = combineLse(logQ.map((q) => (q ? new Float64Array(tf.tidy(() => tf.logSumExp(q)).dataSync()) : null)), 1, comm, Float64Array.from(logQ, (q) => q?.shape[0] ?? 0));
  const rows = total.extra;
  replace(logQ.map((q, i) => (q ? tf.sub(q, total.lse[i][0]) as Tensor2D : null)));
  for (let it = 0; it < opts.iterations; it++) {
    // Each prototype (a column) receives 1/K of the mass, its sum taken over every rank's rows...
    const cols = combineLse(logQ.map((q) => (q ? new Float64Array(lseData(q, 0)) : null)), k, comm);
    replace(logQ.map((q, i) => (q ? tf.tidy(() => tf.sub(tf.sub(q, tf.tensor2d(Float32Array.from(cols.lse[i]), [1, k])), logK)) as Tensor2D : null)));
    // ...and each sample (a row, all on this rank) holds 1/B of it.
    replace(logQ.map((q, i) => (q ? tf.tidy(() => tf.sub(tf.sub(q, tf.logSumExp(q, 1, true)), Math.log(rows[i]))) as Tensor2D : null)));
  }
  const codes = logQ.map((q, i) => (q ? tf.exp(tf.add(q, Math.log(rows[i]))) as Tensor2D : null));
  for (const t of logQ) t?.dispose();
  return codes;
}

function lseData(q: Tensor2D, axis: number): Float32Array {
  const t = tf.logSumExp(q, axis);
  const d = t.dataSync() as Float32Array;
  t.dispose();
  return d;
}

/**
 * log sum exp over all ranks of m vectors of length `len` (null: this rank has none, i.e. -inf), from each rank's
 * log-sum-exp: the all-reduced maximum is subtracted before exponentiating, so no value overflows. `extra` values are
 * summed over ranks in the same call.
 */
function combineLse(local: Array<Float64Array | null>, len: number, comm: Communicator, extra = new Float64Array(0)): { lse: Float64Array[]; extra: Float64Array } {
  const m = local.length;
  const max = new Float64Array(m * len).fill(-Infinity);
  local.forEach((v, i) => { if (v) max.set(v, i * len); });
  comm.allreduce(max, 'max', 'sinkhorn');
  const sums = new Float64Array(m * len + extra.length);
  local.forEach((v, i) => {
    if (!v) return;
    for (let j = 0; j < len; j++) {
      const mx = max[i * len + j];
      sums[i * len + j] = Number.isFinite(v[j]) && Number.isFinite(mx) ? Math.exp(v[j] - mx) : 0;
    }
  });
  sums.set(extra, m * len);
  comm.allreduce(sums, 'sum', 'sinkhorn');
  const lse = Array.from({ length: m }, (_, i) => Float64Array.from({ length: len }, (_, j) => {
    const mx = max[i * len + j];
    return Number.isFinite(mx) ? mx + Math.log(sums[i * len + j]) : -Infinity;
  }));
  return { lse, extra: sums.subarray(m * len) };
}

/**
 * Every rank's rows of z [n, D], in rank order ([N n, D]; every rank has n rows). Backward, the gradient of the
 * gathered tensor is summed over ranks and this rank keeps the rows it gave.
 */
export function gatherRows(z: Tensor2D, comm: Communicator): Tensor2D {
  const [n, d] = z.shape;
  const op = tf.customGrad(((zIn: Tensor2D) => {
    const mine = new Float32Array(zIn.dataSync());
    const parts = comm.allgather(new Uint8Array(mine.buffer));
    const all = new Float32Array(comm.size * n * d);
    parts.forEach((p, r) => {
      if (p.byteLength !== n * d * 4) throw new RangeError(`gatherRows: rank ${r} gave ${p.byteLength / 4} values, expected ${n * d}`);
      all.set(new Float32Array(p.buffer, p.byteOffset, n * d), r * n * d);
    });
    return {
      value: tf.tensor2d(all, [comm.size * n, d]),
      gradFunc: (dy: Tensor2D) => {
        const g = Float32Array.from(dy.dataSync());
        comm.allreduce(g, 'sum', 'gather');
        return tf.tensor2d(g.subarray(comm.rank * n * d, (comm.rank + 1) * n * d), [n, d]);
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(z) as Tensor2D;
}

/** Agreement on a step: every rank's values equal (checked from the sum and sum of squares of each). */
export function allEqual(sum: number, sumSquares: number, size: number): boolean {
  return Math.abs(size * sumSquares - sum * sum) <= 1e-9 * Math.max(1, sum * sum);
}
