// Modality-balanced epochs (pipeline/compose/batches.ts): pure functions of (modalities, seed, epoch, options).
import { describe, expect, it } from 'vitest';
import { balancedOrder, modalityShares } from '../../pipeline/compose/batches.js';

// A pool shaped like the bundled one: many mask slices, radiographs, fundus photographs, a few MR, CT, US and NM frames.
const pool = [
  ...Array<string>(9000).fill('CT'), ...Array<string>(3900).fill('CR'), ...Array<string>(1080).fill('OP'),
  ...Array<string>(200).fill('MR'), ...Array<string>(6).fill('US'), ...Array<string>(3).fill('NM'),
];

describe('modalityShares', () => {
  it('follows count^power and caps every share, handing the excess to the others', () => {
    const counts = new Map([['a', 900], ['b', 100]]);
    expect(modalityShares(counts, 1, 1).get('a')).toBeCloseTo(0.9, 12);
    expect(modalityShares(counts, 0.5, 1).get('a')).toBeCloseTo(30 / 40, 12);
    const capped = modalityShares(counts, 1, 0.6);
    expect(capped.get('a')).toBeCloseTo(0.6, 12);
    expect(capped.get('b')).toBeCloseTo(0.4, 12);
    expect(modalityShares(new Map([['a', 5], ['b', 1], ['c', 1]]), 1, 0.2).get('a')).toBeCloseTo(1 / 3, 12); // cap unreachable: equal
  });
});

describe('balancedOrder', () => {
  const count = (order: Uint32Array) => {
    const c = new Map<string, number>();
    for (const i of order) c.set(pool[i], (c.get(pool[i]) ?? 0) + 1);
    return c;
  };

  it('keeps every modality at or under maxShare of the epoch and every modality present', () => {
    const order = balancedOrder(pool, { seed: 0, epoch: 0, epochImages: 6000, power: 0.5, maxShare: 0.5 });
    expect(order.length).toBe(6000);
    const c = count(order);
    expect([...c.keys()].sort()).toEqual(['CR', 'CT', 'MR', 'NM', 'OP', 'US']);
    for (const n of c.values()) expect(n).toBeLessThanOrEqual(3000);
    expect(c.get('CT')! / 6000).toBeLessThan(9000 / pool.length); // masks no longer three quarters of an epoch
  });

  it('goes through a large modality over successive epochs before repeating it', () => {
    const seen = new Set<number>();
    for (let epoch = 0; epoch < 4; epoch++) {
      for (const i of balancedOrder(pool, { seed: 1, epoch, epochImages: 6000, power: 0.5, maxShare: 0.5 })) if (pool[i] === 'CR') seen.add(i);
    }
    const perEpoch = count(balancedOrder(pool, { seed: 1, epoch: 0, epochImages: 6000, power: 0.5, maxShare: 0.5 })).get('CR')!;
    expect(seen.size).toBe(Math.min(3900, 4 * perEpoch));
  });

  it('makes runs of one modality for uni-modal batches, and replays bit for bit', () => {
    const opts = { seed: 2, epoch: 3, epochImages: 6400, power: 0.5, maxShare: 0.5, block: 64 };
    const order = balancedOrder(pool, opts);
    // The whole epoch in blocks: as many images as a mixed epoch, so every clustering sees as many images a step count.
    expect(order.length).toBe(6400);
    expect(balancedOrder(pool, { ...opts, epochImages: 6430 }).length).toBe(6400);
    for (let b = 0; b < order.length; b += 64) expect(new Set(Array.from(order.subarray(b, b + 64), (i) => pool[i])).size).toBe(1);
    expect(Array.from(balancedOrder(pool, opts))).toEqual(Array.from(order));
    expect(Array.from(balancedOrder(pool, { ...opts, epoch: 4 }))).not.toEqual(Array.from(order));
  });
});
