// ROC AUC, exact, with ties, and its 95% confidence interval.
//
// AUC = P(score of a random positive > score of a random negative) + 0.5 * P(tie): the Mann-Whitney U statistic
// divided by m*n, computed from average ("mid") ranks so that tied scores count one half (Hanley & McNeil 1982).
// Variance: DeLong, DeLong & Clarke-Pearson (Biometrics 1988), from the placement values, computed with the
// midrank algorithm of Sun & Xu (IEEE SPL 2014) in O((m+n) log(m+n)).
import { MedsslError } from '../../pipeline/core/failures.js';
import { random } from '../../pipeline/core/random.js';

export interface AucResult {
  auc: number;
  /** 95% interval: DeLong (binary) or percentile bootstrap (multi-label macro average); clipped to [0, 1]. */
  ci: [number, number];
  /** DeLong variance of the AUC (binary), or the bootstrap variance (macro average). */
  variance: number;
  positives: number;
  negatives: number;
}

/** z_{0.975}: two-sided 95% normal quantile. */
export const Z95 = 1.959963984540054;

/** Average ranks (1-based) of `values`; tied values share the mean of the ranks they span. */
export function midranks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b] || a - b);
  const ranks = new Float64Array(n);
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && values[order[j + 1]] === values[order[i]]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]] = r;
    i = j + 1;
  }
  return ranks;
}

function checkInputs(scores: ArrayLike<number>, labels: ArrayLike<number>, task: string): { pos: number[]; neg: number[] } {
  if (scores.length !== labels.length) throw new RangeError(`${task}: ${scores.length} scores but ${labels.length} labels`);
  const pos: number[] = [], neg: number[] = [];
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i];
    if (!Number.isFinite(s)) throw new MedsslError('corrupt', task, `score ${i} is ${s}: AUC needs finite scores`);
    const y = labels[i];
    if (y === 1) pos.push(s);
    else if (y === 0) neg.push(s);
    else throw new MedsslError('corrupt', task, `label ${i} is ${y}: expected 0 or 1`);
  }
  if (pos.length === 0 || neg.length === 0) {
    throw new MedsslError('corrupt', task, `AUC of task "${task}" is undefined: only one class present (${pos.length} positive, ${neg.length} negative)`);
  }
  return { pos, neg };
}

/** Exact ROC AUC of binary `labels` (0/1) given `scores` (higher = more positive). `task` names the task in errors. */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>, task = 'auc'): number {
  const { pos, neg } = checkInputs(scores, labels, task);
  const all = midranks([...pos, ...neg]);
  let sum = 0;
  for (let i = 0; i < pos.length; i++) sum += all[i];
  const m = pos.length, n = neg.length;
  return (sum - (m * (m + 1)) / 2) / (m * n);
}

/**
 * One task's AUC on bootstrap resamples given as per-sample draw counts, without building the resample: the samples
 * are sorted by score once, and each resample walks that order (O(n)), counting each positive copy against the
 * negative copies below it (ties 1/2). The value is rocAuc of the expanded resample (pairs of copies of one sample
 * have one class, so they never count); the macro bootstrap spent its time rebuilding and re-sorting each resample.
 */
class ResampledAuc {
  private readonly order: Uint32Array;
  /** starts[g]..starts[g + 1] is the g-th group of equal scores in `order`. */
  private readonly starts: Uint32Array;

  constructor(scores: Float64Array, private readonly labels: Float64Array) {
    this.order = Uint32Array.from(scores.keys()).sort((i, j) => scores[i] - scores[j]);
    const starts = [0];
    for (let k = 1; k < this.order.length; k++) if (scores[this.order[k]] !== scores[this.order[k - 1]]) starts.push(k);
    starts.push(this.order.length);
    this.starts = Uint32Array.from(starts);
  }

  /** The AUC of the resample that draws sample i counts[i] times; null when it lacks a class. */
  auc(counts: Uint32Array): number | null {
    let area = 0, below = 0, positives = 0;
    for (let g = 0; g + 1 < this.starts.length; g++) {
      let pos = 0, neg = 0;
      for (let k = this.starts[g]; k < this.starts[g + 1]; k++) {
        const i = this.order[k], c = counts[i];
        if (this.labels[i] === 1) pos += c; else neg += c;
      }
      area += pos * (below + neg / 2);
      below += neg;
      positives += pos;
    }
    return positives === 0 || below === 0 ? null : area / (positives * below);
  }
}

/** The draw counts of bootstrap resample `b` (n draws with replacement, the stream `purpose` of `seed`). */
function drawCounts(n: number, seed: number, b: number, purpose: string, counts: Uint32Array): Uint32Array {
  counts.fill(0);
  const rs = random(seed).stream({ sample: b, purpose });
  for (let i = 0; i < n; i++) counts[rs.int(n)]++;
  return counts;
}

/** Macro AUC over tasks of one resample (null when some task lacks a class in it). */
function macroResampled(perTask: ResampledAuc[], counts: Uint32Array): number | null {
  let total = 0;
  for (const t of perTask) {
    const a = t.auc(counts);
    if (a === null) return null;
    total += a;
  }
  return total / perTask.length;
}

/** AUC with DeLong's variance and the normal 95% interval AUC +- 1.96 sqrt(var), clipped to [0, 1]. */
export function delongAuc(scores: ArrayLike<number>, labels: ArrayLike<number>, task = 'auc'): AucResult {
  // Placements: V10_i = fraction of negatives below positive i (ties 1/2); V01_j = fraction of positives above negative j.
  const { auc, v10, v01 } = placements(scores, labels, task);
  const m = v10.length, n = v01.length;
  const s10 = sampleVariance(v10), s01 = sampleVariance(v01);
  const variance = (m > 1 ? s10 / m : 0) + (n > 1 ? s01 / n : 0);
  const half = Z95 * Math.sqrt(variance);
  return { auc, ci: [Math.max(0, auc - half), Math.min(1, auc + half)], variance, positives: m, negatives: n };
}

function sampleVariance(v: Float64Array): number {
  if (v.length < 2) return 0;
  let mean = 0;
  for (const x of v) mean += x;
  mean /= v.length;
  let s = 0;
  for (const x of v) s += (x - mean) ** 2;
  return s / (v.length - 1);
}

export interface MultiLabelOptions {
  /** Task names for error messages. */
  tasks?: string[];
  /** Bootstrap resamples for the macro interval (multi-label only). */
  resamples?: number;
  seed?: number;
}

/**
 * AUC of `tasks` labels per sample (row-major [n, tasks] scores and labels). One task: DeLong. Several: the macro
 * average over tasks, with a percentile bootstrap interval over samples (tasks share samples, so their AUCs are
 * correlated and DeLong's per-task variances cannot simply be added). A task with one class only is an error.
 */
export function aucWithCi(scores: ArrayLike<number>, labels: ArrayLike<number>, tasks = 1, opts: MultiLabelOptions = {}): AucResult & { perTask: number[] } {
  if (tasks < 1 || scores.length % tasks !== 0) throw new RangeError(`scores length ${scores.length} is not a multiple of ${tasks} tasks`);
  const names = opts.tasks ?? Array.from({ length: tasks }, (_, t) => (tasks === 1 ? 'auc' : `task ${t}`));
  if (tasks === 1) {
    const r = delongAuc(scores, labels, names[0]);
    return { ...r, perTask: [r.auc] };
  }
  const n = scores.length / tasks;
  const column = (a: ArrayLike<number>, t: number, idx?: ArrayLike<number>) => {
    const len = idx ? idx.length : n;
    const out = new Float64Array(len);
    for (let i = 0; i < len; i++) out[i] = a[(idx ? idx[i] : i) * tasks + t];
    return out;
  };
  const perTask = names.map((name, t) => rocAuc(column(scores, t), column(labels, t), name));
  const auc = perTask.reduce((a, b) => a + b, 0) / tasks;
  const resamples = opts.resamples ?? 1000;
  const boot: number[] = [];
  const resampled = resamples > 0 ? names.map((_, t) => new ResampledAuc(column(scores, t), column(labels, t))) : [];
  const counts = new Uint32Array(n);
  for (let b = 0; b < resamples; b++) {
    // A resample without both classes in some task has no AUC: it is skipped.
    const v = macroResampled(resampled, drawCounts(n, opts.seed ?? 0, b, 'auc-bootstrap', counts));
    if (v !== null) boot.push(v);
  }
  boot.sort((a, b) => a - b);
  const q = (p: number) => boot[Math.min(boot.length - 1, Math.max(0, Math.floor(p * (boot.length - 1) + 0.5)))];
  const variance = boot.length > 1 ? sampleVariance(Float64Array.from(boot)) : 0;
  const ci: [number, number] = boot.length ? [q(0.025), q(0.975)] : [auc, auc];
  let positives = 0;
  for (let i = 0; i < labels.length; i++) positives += labels[i];
  return { auc, ci, variance, positives, negatives: labels.length - positives, perTask };
}

/**
 * Summary over seeds: the mean AUC and a 95% interval that adds the test-set sampling variance (mean of the per-seed
 * DeLong variances: every seed is scored on the same test set, so averaging seeds does not shrink it) to the
 * variance of the seed mean (between-seed sample variance / seeds).
 */
export function combineSeeds(results: Array<{ auc: number; variance: number }>): { auc: number; ci: [number, number]; sd: number } {
  if (results.length === 0) throw new RangeError('combineSeeds needs at least one result');
  const k = results.length;
  const mean = results.reduce((a, r) => a + r.auc, 0) / k;
  const within = results.reduce((a, r) => a + r.variance, 0) / k;
  const between = k > 1 ? results.reduce((a, r) => a + (r.auc - mean) ** 2, 0) / (k - 1) : 0;
  const half = Z95 * Math.sqrt(within + between / k);
  return { auc: mean, ci: [Math.max(0, mean - half), Math.min(1, mean + half)], sd: Math.sqrt(between) };
}

/** Two-sided p-value of a standard normal statistic z: 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2). */
export function twoSidedP(z: number): number {
  if (!Number.isFinite(z)) return Number.isNaN(z) ? 1 : 0;
  return Math.min(1, erfc(Math.abs(z) / Math.SQRT2));
}

/** erfc by the continued-fraction-free Chebyshev fit of Numerical Recipes (3rd ed., 6.2.2): relative error < 1.2e-7. */
function erfc(x: number): number {
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const y = t * Math.exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? y : 2 - y;
}

/** A paired comparison of two scorers on the same test samples: delta = AUC(a) - AUC(b). */
export interface PairedAuc {
  delta: number;
  /** Variance of delta (DeLong's covariance for one task; the paired bootstrap for a macro average). */
  variance: number;
  z: number;
  /** Two-sided p-value of H0: AUC(a) = AUC(b). */
  p: number;
}

/**
 * DeLong, DeLong & Clarke-Pearson (1988) paired test of two correlated AUCs on the same samples: with the placement
 * values V10^r_i (positives) and V01^r_j (negatives) of scorer r, S10 and S01 their 2x2 sample covariance matrices,
 * var(A1 - A2) = (S10_11 + S10_22 - 2 S10_12) / m + (S01_11 + S01_22 - 2 S01_12) / n, z = (A1 - A2) / sqrt(var),
 * p = 2 (1 - Phi(|z|)). Equal scorers (var 0, delta 0) give p = 1.
 */
export function delongPaired(a: ArrayLike<number>, b: ArrayLike<number>, labels: ArrayLike<number>, task = 'auc'): PairedAuc {
  if (a.length !== b.length) throw new RangeError(`${task}: ${a.length} and ${b.length} scores`);
  const pa = placements(a, labels, task), pb = placements(b, labels, task);
  const m = pa.v10.length, n = pa.v01.length;
  const cov = (x: Float64Array, y: Float64Array) => {
    if (x.length < 2) return 0;
    let mx = 0, my = 0;
    for (let i = 0; i < x.length; i++) { mx += x[i]; my += y[i]; }
    mx /= x.length; my /= y.length;
    let s = 0;
    for (let i = 0; i < x.length; i++) s += (x[i] - mx) * (y[i] - my);
    return s / (x.length - 1);
  };
  const v10 = cov(pa.v10, pa.v10) + cov(pb.v10, pb.v10) - 2 * cov(pa.v10, pb.v10);
  const v01 = cov(pa.v01, pa.v01) + cov(pb.v01, pb.v01) - 2 * cov(pa.v01, pb.v01);
  const variance = Math.max(0, v10 / m + v01 / n);
  const delta = pa.auc - pb.auc;
  return pairedResult(delta, variance);
}

function pairedResult(delta: number, variance: number): PairedAuc {
  // A zero variance with a zero difference is "no evidence of a difference", not 0/0.
  const z = variance > 0 ? delta / Math.sqrt(variance) : delta === 0 ? 0 : Math.sign(delta) * Infinity;
  return { delta, variance, z, p: twoSidedP(z) };
}

/** The AUC and the placement values of one scorer (Sun & Xu's mid-rank form, as in delongAuc). */
function placements(scores: ArrayLike<number>, labels: ArrayLike<number>, task: string): { auc: number; v10: Float64Array; v01: Float64Array } {
  const { pos, neg } = checkInputs(scores, labels, task);
  const m = pos.length, n = neg.length;
  const tz = midranks([...pos, ...neg]);
  const tx = midranks(pos), ty = midranks(neg);
  const v10 = new Float64Array(m), v01 = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < m; i++) { v10[i] = (tz[i] - tx[i]) / n; sum += tz[i]; }
  for (let j = 0; j < n; j++) v01[j] = 1 - (tz[m + j] - ty[j]) / m;
  return { auc: (sum - (m * (m + 1)) / 2) / (m * n), v10, v01 };
}

/**
 * Paired comparison for `tasks` labels per sample: one task is DeLong's paired test; several (macro average) use a
 * paired percentile-free bootstrap: the same resampled samples score both scorers, and the variance of the
 * difference over resamples gives z = delta / sd.
 */
export function pairedAuc(a: ArrayLike<number>, b: ArrayLike<number>, labels: ArrayLike<number>, tasks = 1, opts: MultiLabelOptions = {}): PairedAuc {
  if (tasks === 1) return delongPaired(a, b, labels, opts.tasks?.[0]);
  const ra = aucWithCi(a, labels, tasks, { ...opts, resamples: 0 }).auc, rb = aucWithCi(b, labels, tasks, { ...opts, resamples: 0 }).auc;
  const n = labels.length / tasks, resamples = opts.resamples ?? 1000;
  const column = (x: ArrayLike<number>, t: number) => Float64Array.from({ length: n }, (_, i) => x[i * tasks + t]);
  const ta = Array.from({ length: tasks }, (_, t) => new ResampledAuc(column(a, t), column(labels, t)));
  const tb = Array.from({ length: tasks }, (_, t) => new ResampledAuc(column(b, t), column(labels, t)));
  const diffs: number[] = [];
  const counts = new Uint32Array(n);
  for (let r = 0; r < resamples; r++) {
    // The same resample scores both; one with a single class in some task has no AUC and is skipped.
    drawCounts(n, opts.seed ?? 0, r, 'auc-paired-bootstrap', counts);
    const va = macroResampled(ta, counts), vb = va === null ? null : macroResampled(tb, counts);
    if (va !== null && vb !== null) diffs.push(va - vb);
  }
  return pairedResult(ra - rb, diffs.length > 1 ? sampleVariance(Float64Array.from(diffs)) : 0);
}

/**
 * Paired comparison over seeds, scored on one test set: the mean difference, and a variance that adds the mean
 * paired test-set variance (as combineSeeds: the test set is shared, so averaging seeds does not shrink it) to the
 * variance of the seed mean (s^2 / k of the per-seed differences). One seed is exactly DeLong's paired test.
 */
export function combinePaired(results: PairedAuc[]): PairedAuc {
  if (results.length === 0) throw new RangeError('combinePaired needs at least one result');
  const k = results.length;
  const delta = results.reduce((s, r) => s + r.delta, 0) / k;
  const within = results.reduce((s, r) => s + r.variance, 0) / k;
  const between = k > 1 ? results.reduce((s, r) => s + (r.delta - delta) ** 2, 0) / (k - 1) : 0;
  return pairedResult(delta, within + between / k);
}
