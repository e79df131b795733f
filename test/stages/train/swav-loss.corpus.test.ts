// All 24 SwAV reference cases of the corpus (../shared/vectors/swav_vectors.json); the default tests check 8 of them.
import { describe, expect, it } from 'vitest';
import { readJson, sharedVectors } from '../../shared.js';
import { type Vectors, caseName, checkCase } from './swav-vectors.js';

describe('sinkhornKnopp and swavLoss against the float64 reference (all cases)', () => {
  it('match every reference case: codes and loss within 1e-4 relative', () => {
    const vectors = readJson<Vectors>(sharedVectors('swav_vectors.json'));
    expect(vectors.cases).toHaveLength(24);
    expect(vectors.cases.filter((c) => c.queueScores).length).toBeGreaterThan(0);
    const failed: string[] = [];
    for (const c of vectors.cases) {
      try {
        checkCase(c);
      } catch (err) {
        failed.push(`${caseName(c)}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    expect(failed).toEqual([]);
  });
});
