import { describe, expect, it } from 'vitest';
import { aucWithCi, combinePaired, combineSeeds, delongAuc, delongPaired, midranks, pairedAuc, rocAuc, twoSidedP } from '../../../stages/evaluate/auc.js';
import { random } from '../../../pipeline/core/random.js';
import { MedsslError } from '../../../pipeline/core/failures.js';

/** Brute force: pairs where the positive scores higher, ties count one half. */
function pairwise(scores: number[], labels: number[]): number {
  let num = 0, den = 0;
  for (let i = 0; i < scores.length; i++) for (let j = 0; j < scores.length; j++) {
    if (labels[i] === 1 && labels[j] === 0) { den++; num += scores[i] > scores[j] ? 1 : scores[i] === scores[j] ? 0.5 : 0; }
  }
  return num / den;
}

describe('rocAuc', () => {
  it('matches hand-computed cases', () => {
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.75); // sklearn's doc example
    expect(rocAuc([1, 2, 3, 4], [0, 0, 1, 1])).toBe(1);
    expect(rocAuc([4, 3, 2, 1], [0, 0, 1, 1])).toBe(0);
  });

  it('counts ties as one half', () => {
    // positives {0.5, 0.7}, negatives {0.5, 0.2}: pairs 0.5/0.5 tie (1/2), 0.5>0.2, 0.7>0.5, 0.7>0.2 -> 3.5/4
    expect(rocAuc([0.5, 0.7, 0.5, 0.2], [1, 1, 0, 0])).toBe(0.875);
    expect(rocAuc([3, 3, 3, 3], [1, 0, 1, 0])).toBe(0.5);
    expect(midranks([10, 20, 10, 30])).toEqual(Float64Array.from([1.5, 3, 1.5, 4]));
  });

  it('equals the pairwise definition on random data with many ties', () => {
    let s = 7;
    const next = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const scores = Array.from({ length: 200 }, () => Math.floor(next() * 8));
    const labels = scores.map((x) => (next() < 0.2 + x / 10 ? 1 : 0));
    expect(rocAuc(scores, labels)).toBeCloseTo(pairwise(scores, labels), 12);
  });

  it('rejects one class, bad labels and non-finite scores with a clear error', () => {
    expect(() => rocAuc([0.1, 0.2], [1, 1], 'pneumonia')).toThrow(MedsslError);
    expect(() => rocAuc([0.1, 0.2], [1, 1], 'pneumonia')).toThrow(/AUC of task "pneumonia" is undefined: only one class present/);
    expect(() => rocAuc([0.1, 0.2], [0, 0])).toThrow(/only one class present \(0 positive, 2 negative\)/);
    expect(() => rocAuc([0.1, 0.2], [0, 2])).toThrow(/expected 0 or 1/);
    expect(() => rocAuc([NaN, 0.2], [0, 1])).toThrow(/finite/);
    expect(() => rocAuc([0.1], [0, 1])).toThrow(RangeError);
  });
});

describe('delongAuc', () => {
  it('computes the DeLong variance from placements (hand-computed)', () => {
    // positives x = {0.9, 0.6}, negatives y = {0.7, 0.1, 0.6}
    // V10: 0.9 beats all 3 -> 1; 0.6 beats 0.1, ties 0.6 -> 1.5/3 = 0.5.          S10 = var([1, 0.5]) = 0.125
    // V01: 0.7 below 0.9 only -> 1/2; 0.1 below both -> 1; 0.6 below 0.9 + tie -> 0.75. S01 = var([.5, 1, .75]) = 0.0625
    // AUC = mean V10 = 0.75; var = 0.125/2 + 0.0625/3
    const r = delongAuc([0.9, 0.6, 0.7, 0.1, 0.6], [1, 1, 0, 0, 0]);
    expect(r.auc).toBeCloseTo(0.75, 12);
    expect(r.variance).toBeCloseTo(0.125 / 2 + 0.0625 / 3, 12);
    const half = 1.959963984540054 * Math.sqrt(r.variance);
    expect(r.ci[0]).toBeCloseTo(0.75 - half, 12);
    expect(r.ci[1]).toBe(1); // clipped
    expect([r.positives, r.negatives]).toEqual([2, 3]);
  });

  it('gives a zero-width interval for perfect separation', () => {
    const r = delongAuc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]);
    expect(r).toMatchObject({ auc: 1, variance: 0, ci: [1, 1] });
  });
});

describe('aucWithCi (multi-label)', () => {
  it('macro-averages the task AUCs and brackets them with a bootstrap interval', () => {
    const n = 60;
    const scores: number[] = [], labels: number[] = [];
    for (let i = 0; i < n; i++) {
      const y0 = i % 2, y1 = i % 3 === 0 ? 1 : 0;
      labels.push(y0, y1);
      scores.push(y0 + ((i * 7) % 10) / 8, y1 * 0.5 + ((i * 3) % 10) / 10);
    }
    const r = aucWithCi(scores, labels, 2, { resamples: 200, tasks: ['a', 'b'] });
    const a = rocAuc(scores.filter((_, k) => k % 2 === 0), labels.filter((_, k) => k % 2 === 0));
    const b = rocAuc(scores.filter((_, k) => k % 2 === 1), labels.filter((_, k) => k % 2 === 1));
    expect(r.perTask).toEqual([a, b]);
    expect(r.auc).toBeCloseTo((a + b) / 2, 12);
    expect(r.ci[0]).toBeLessThan(r.auc);
    expect(r.ci[1]).toBeGreaterThan(r.auc);
    expect(aucWithCi(scores, labels, 2, { resamples: 200 })).toEqual(aucWithCi(scores, labels, 2, { resamples: 200 }));
  });

  it('names the task that has one class only', () => {
    expect(() => aucWithCi([0.1, 0.2, 0.3, 0.4], [0, 1, 1, 1], 2, { tasks: ['effusion', 'nodule'] })).toThrow(/task "nodule" is undefined/);
  });
});

describe('combineSeeds', () => {
  it('averages seeds and widens the interval by the seed spread', () => {
    const one = combineSeeds([{ auc: 0.8, variance: 0.0004 }]);
    expect(one.auc).toBe(0.8);
    expect(one.ci[1] - one.ci[0]).toBeCloseTo(2 * 1.959963984540054 * 0.02, 12);
    const three = combineSeeds([{ auc: 0.7, variance: 0.0004 }, { auc: 0.8, variance: 0.0004 }, { auc: 0.9, variance: 0.0004 }]);
    expect(three.auc).toBeCloseTo(0.8, 12);
    expect(three.sd).toBeCloseTo(0.1, 12);
    expect(three.ci[1] - three.ci[0]).toBeGreaterThan(one.ci[1] - one.ci[0]);
  });
});

/** DeLong's paired variance from its definition: O(m n) placements, then the 2x2 covariance matrices. */
function pairedByDefinition(a: number[], b: number[], labels: number[]): { delta: number; variance: number } {
  const psi = (x: number, y: number) => (x > y ? 1 : x === y ? 0.5 : 0);
  const P = labels.flatMap((y, i) => (y === 1 ? [i] : [])), N = labels.flatMap((y, i) => (y === 0 ? [i] : []));
  const v10 = (s: number[]) => P.map((i) => N.reduce((t, j) => t + psi(s[i], s[j]), 0) / N.length);
  const v01 = (s: number[]) => N.map((j) => P.reduce((t, i) => t + psi(s[i], s[j]), 0) / P.length);
  const cov = (x: number[], y: number[]) => {
    const mx = x.reduce((s, v) => s + v, 0) / x.length, my = y.reduce((s, v) => s + v, 0) / y.length;
    return x.reduce((s, v, k) => s + (v - mx) * (y[k] - my), 0) / (x.length - 1);
  };
  const [xa, xb, ya, yb] = [v10(a), v10(b), v01(a), v01(b)];
  const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
  return {
    delta: mean(xa) - mean(xb),
    variance: (cov(xa, xa) + cov(xb, xb) - 2 * cov(xa, xb)) / P.length + (cov(ya, ya) + cov(yb, yb) - 2 * cov(ya, yb)) / N.length,
  };
}

describe('delongPaired', () => {
  it('matches a case worked by hand: AUCs 7/8 and 5/8, var(delta) = 1/24, z = sqrt(1.5), p = 0.2207', () => {
    // Positives a: 0.9 0.8 0.4 0.7, negatives a: 0.3 0.6 0.2 0.5 -> V10 = (1, 1, 1/2, 1), V01 = (1, 3/4, 1, 3/4), AUC 7/8.
    // b: positives 0.7 0.9 0.5 0.2, negatives 0.4 0.6 0.1 0.8 -> V10 = (3/4, 3/4, 1/2, 1/4), V01 = (3/4, 1/2, 1, 1/4), AUC 5/8.
    const r = delongPaired([0.9, 0.8, 0.4, 0.7, 0.3, 0.6, 0.2, 0.5], [0.7, 0.9, 0.5, 0.2, 0.4, 0.6, 0.1, 0.8], [1, 1, 1, 1, 0, 0, 0, 0]);
    expect(r.delta).toBeCloseTo(0.25, 12);
    expect(r.variance).toBeCloseTo(1 / 24, 12);
    expect(r.z).toBeCloseTo(Math.sqrt(1.5), 10);
    expect(r.p).toBeCloseTo(0.22067136, 6); // erfc(sqrt(0.75))
  });

  it('equals the definition on random scores with ties, and is antisymmetric', () => {
    const rs = random(7).stream({ purpose: 'test' });
    const n = 60;
    const labels = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
    const a = labels.map((y) => Math.round((y + rs.normal()) * 4) / 4), b = labels.map((y, i) => Math.round((0.5 * y + a[i] * 0.5 + rs.normal()) * 4) / 4);
    const ref = pairedByDefinition(a, b, labels);
    const r = delongPaired(a, b, labels);
    expect(r.delta).toBeCloseTo(ref.delta, 12);
    expect(r.variance).toBeCloseTo(ref.variance, 12);
    const back = delongPaired(b, a, labels);
    expect(back.delta).toBeCloseTo(-r.delta, 12);
    expect(back.p).toBeCloseTo(r.p, 12);
  });

  it('gives p = 1 for the same scores, and a small p for a clearly better scorer', () => {
    const labels = Array.from({ length: 200 }, (_, i) => i % 2);
    const rs = random(3).stream({ purpose: 'test' });
    const good = labels.map((y) => y * 2 + rs.normal()), poor = labels.map((y) => y * 0.2 + rs.normal());
    expect(delongPaired(good, good, labels).p).toBe(1);
    expect(delongPaired(good, poor, labels).p).toBeLessThan(1e-6);
  });
});

describe('twoSidedP', () => {
  it('is the two-sided normal tail', () => {
    expect(twoSidedP(0)).toBeCloseTo(1, 7);
    expect(twoSidedP(1.959963984540054)).toBeCloseTo(0.05, 7);
    expect(twoSidedP(-2.5758293035489)).toBeCloseTo(0.01, 7);
  });
});

describe('combinePaired and pairedAuc', () => {
  it('reduces to the one-seed test and adds the spread of the per-seed differences', () => {
    const one = { delta: 0.02, variance: 0.0001, z: 2, p: twoSidedP(2) };
    expect(combinePaired([one])).toEqual(one);
    const three = combinePaired([{ ...one, delta: 0.01 }, one, { ...one, delta: 0.03 }]);
    expect(three.delta).toBeCloseTo(0.02, 12);
    expect(three.variance).toBeCloseTo(0.0001 + 0.0001 / 3, 12);
    expect(three.p).toBeGreaterThan(one.p);
  });

  it('uses a paired bootstrap for a macro average over tasks', () => {
    const rs = random(5).stream({ purpose: 'test' });
    const n = 80, tasks = 2;
    const labels = Array.from({ length: n * tasks }, (_, k) => ((k >> 1) + (k & 1)) % 2);
    const a = labels.map((y) => 2 * y + rs.normal()), b = labels.map((y) => 0.1 * y + rs.normal());
    const r = pairedAuc(a, b, labels, tasks, { resamples: 200 });
    expect(r.delta).toBeCloseTo(aucWithCi(a, labels, tasks, { resamples: 0 }).auc - aucWithCi(b, labels, tasks, { resamples: 0 }).auc, 12);
    expect(r.variance).toBeGreaterThan(0);
    expect(r.p).toBeLessThan(0.05);
  });

  it('bootstraps exactly as rebuilding each resample would: same draws, the AUC of the expanded resample', () => {
    // Scores rounded to tenths, so tied scores meet duplicated samples; three tasks with uneven classes.
    const rs = random(9).stream({ purpose: 'test' });
    const n = 60, tasks = 3;
    const labels = Array.from({ length: n * tasks }, (_, k) => (rs.uniform() < 0.3 + 0.2 * (k % tasks) ? 1 : 0));
    const a = labels.map((y) => Math.round(10 * (y + rs.normal())) / 10), b = labels.map((y) => Math.round(10 * (0.3 * y + rs.normal())) / 10);
    // The definition: draw n indices per resample, build the resample, macro rocAuc; skip resamples lacking a class.
    const rebuilt = (purpose: string, resamples: number, score: (pick: (x: number[]) => number[]) => number) => {
      const out: number[] = [];
      for (let r = 0; r < resamples; r++) {
        const draw = random(0).stream({ sample: r, purpose });
        const idx = Array.from({ length: n }, () => draw.int(n));
        const pick = (x: number[]) => idx.flatMap((i) => x.slice(i * tasks, (i + 1) * tasks));
        try { out.push(score(pick)); } catch { /* one class in some task */ }
      }
      return out;
    };
    const macro = (x: number[], y: number[]) => Array.from({ length: tasks }, (_, t) => rocAuc(x.filter((_, k) => k % tasks === t), y.filter((_, k) => k % tasks === t))).reduce((u, v) => u + v) / tasks;
    const variance = (v: number[]) => { const m = v.reduce((u, w) => u + w) / v.length; return v.reduce((u, w) => u + (w - m) ** 2, 0) / (v.length - 1); };
    const diffs = rebuilt('auc-paired-bootstrap', 150, (pick) => macro(pick(a), pick(labels)) - macro(pick(b), pick(labels)));
    expect(pairedAuc(a, b, labels, tasks, { resamples: 150 }).variance).toBeCloseTo(variance(diffs), 12);
    const boot = rebuilt('auc-bootstrap', 150, (pick) => macro(pick(a), pick(labels))).sort((u, v) => u - v);
    const r = aucWithCi(a, labels, tasks, { resamples: 150 });
    expect(r.variance).toBeCloseTo(variance(boot), 12);
    expect(r.ci[0]).toBeCloseTo(boot[Math.floor(0.025 * (boot.length - 1) + 0.5)], 12);
  });
});
