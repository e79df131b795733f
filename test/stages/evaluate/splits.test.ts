import { describe, expect, it } from 'vitest';
import { labelFractions } from '../../../stages/evaluate/splits.js';

const labels = Uint8Array.from({ length: 1000 }, (_, i) => (i % 10 < 2 ? 1 : 0)); // 20% positives
const fractions = [1, 0.5, 0.25, 0.1];

describe('labelFractions', () => {
  it('is stratified: every subset keeps the class balance', () => {
    const s = labelFractions(labels, { fractions, seed: 3 });
    expect(s.get(1)!.length).toBe(1000);
    for (const f of [0.5, 0.25, 0.1]) {
      const idx = s.get(f)!;
      expect(idx.length).toBe(Math.round(f * 200) + Math.round(f * 800));
      const pos = Array.from(idx).filter((i) => labels[i] === 1).length;
      expect(pos).toBe(Math.round(f * 200));
    }
  });

  it('is nested: 10% inside 25% inside 50% inside 100%', () => {
    const s = labelFractions(labels, { fractions, seed: 5 });
    for (const [small, big] of [[0.1, 0.25], [0.25, 0.5], [0.5, 1]]) {
      const bigSet = new Set(s.get(big));
      expect(Array.from(s.get(small)!).every((i) => bigSet.has(i))).toBe(true);
    }
  });

  it('is seeded: same seed same subset, other seed other subset', () => {
    const a = labelFractions(labels, { fractions: [0.1], seed: 1 }).get(0.1);
    const b = labelFractions(labels, { fractions: [0.1], seed: 1 }).get(0.1);
    const c = labelFractions(labels, { fractions: [0.1], seed: 2 }).get(0.1);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    // Asking for more fractions does not change a fraction's subset.
    expect(labelFractions(labels, { fractions, seed: 1 }).get(0.1)).toEqual(a);
  });

  it('keeps every patient whole', () => {
    const patients = Array.from({ length: 1000 }, (_, i) => `p${Math.floor(i / 5)}`); // 5 images per patient
    const lab = Uint8Array.from({ length: 1000 }, (_, i) => (Math.floor(i / 5) % 4 === 0 ? 1 : 0));
    const idx = labelFractions(lab, { fractions: [0.1], seed: 0, patients }).get(0.1)!;
    expect(idx.length).toBe(100); // 10% of 200 patients = 20 patients x 5 images
    const count = new Map<string, number>();
    for (const i of idx) count.set(patients[i], (count.get(patients[i]) ?? 0) + 1);
    expect([...count.values()].every((c) => c === 5)).toBe(true);
  });

  it('keeps at least one of each class, and stratifies multi-label rows by label combination', () => {
    const few = Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const idx = labelFractions(few, { fractions: [0.1], seed: 0 }).get(0.1)!;
    expect(Array.from(idx).some((i) => few[i] === 1)).toBe(true);
    const multi = Uint8Array.from({ length: 400 }, (_, k) => ((k >> 1) % 4 === 0 ? 1 : k % 2)); // rows [1,1] or [0,1]
    const m = labelFractions(multi, { fractions: [0.5], seed: 0, tasks: 2 }).get(0.5)!;
    expect(Array.from(m).filter((i) => multi[2 * i] === 1).length).toBe(25);
    expect(() => labelFractions(labels, { fractions: [0], seed: 0 })).toThrow(RangeError);
  });
});
