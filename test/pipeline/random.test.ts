import { describe, expect, it } from 'vitest';
import { hash32, philox4x32, random } from '../../pipeline/core/random.js';
import { startWorker } from '../../pipeline/core/workers.js';

describe('philox4x32-10', () => {
  // Known-answer vectors from Random123's kat_vectors (philox4x32_10).
  it('matches the Random123 known answers', () => {
    expect(philox4x32([0, 0, 0, 0], [0, 0]).map((v) => v.toString(16).padStart(8, '0'))).toEqual(['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
    expect(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]).map((v) => v.toString(16).padStart(8, '0')))
      .toEqual(['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
    expect(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]).map((v) => v.toString(16).padStart(8, '0')))
      .toEqual(['d16cfe09', '94fdcceb', '5001e420', '24126ea1']);
  });
});

describe('random source', () => {
  const draw = (seed: number, sample: string, crop: number, purpose: string, n = 8) => {
    const s = random(seed).stream({ epoch: 3, sample, crop, purpose });
    return Array.from({ length: n }, () => s.uniform());
  };

  it('gives the same numbers for the same coordinates, whatever the order of drawing', () => {
    const keys = Array.from({ length: 50 }, (_, i) => [`img-${i}`, i % 8, i % 2 ? 'gamma' : 'crop'] as const);
    const forward = keys.map(([s, c, p]) => draw(7, s, c, p));
    const backward = [...keys].reverse().map(([s, c, p]) => draw(7, s, c, p)).reverse();
    expect(backward).toEqual(forward);
  });

  it('changes with every coordinate', () => {
    const base = draw(1, 'a', 0, 'crop');
    expect(draw(2, 'a', 0, 'crop')).not.toEqual(base);
    expect(draw(1, 'b', 0, 'crop')).not.toEqual(base);
    expect(draw(1, 'a', 1, 'crop')).not.toEqual(base);
    expect(draw(1, 'a', 0, 'noise')).not.toEqual(base);
    const s = random(1).stream({ epoch: 4, sample: 'a', crop: 0, purpose: 'crop' });
    expect(s.uniform()).not.toEqual(base[0]);
  });

  it('is uniform enough: mean, variance and a permutation', () => {
    const s = random(11).stream({ purpose: 'stats' });
    const xs = Array.from({ length: 20000 }, () => s.uniform());
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(0.003);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const p = random(11).stream({ purpose: 'perm' }).permutation(100);
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const normals = Array.from({ length: 20000 }, () => s.normal());
    const nm = normals.reduce((a, b) => a + b, 0) / normals.length;
    expect(Math.abs(nm)).toBeLessThan(0.03);
  });

  it('gives bit-identical numbers in worker threads', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => [`img-${i}`, i % 4, 'crop'] as const);
    const w = startWorker('./random.worker.js', import.meta.url, { workerData: { keys: [...keys].reverse() } });
    const inWorker = await new Promise<number[][]>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(inWorker.reverse()).toEqual(keys.map(([s, c, p]) => draw(7, s, c, p)));
  });

  it('hashes ids to 32 bits', () => {
    expect(hash32('')).toBe(0x811c9dc5);
    expect(hash32('a')).toBe(0xe40c292c);
    expect(hash32('img-1')).not.toBe(hash32('img-2'));
  });
});
