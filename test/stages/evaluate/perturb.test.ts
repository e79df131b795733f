import { describe, expect, it } from 'vitest';
import { DEFAULT_GRID, gamma, intensityScaleShift, perturb, rotate, zoom, type Image } from '../../../stages/evaluate/perturb.js';

const img = (h: number, w: number, values: number[], channels = 1): Image => ({ data: Float32Array.from(values), height: h, width: w, channels });
const grid3 = img(3, 3, [1, 2, 3, 4, 5, 6, 7, 8, 9]);

describe('intensity perturbations', () => {
  it('scale/shift and gamma are exact on known values', () => {
    expect(Array.from(intensityScaleShift(img(1, 2, [0.5, -1]), 2, 0.25).data)).toEqual([1.25, -1.75]);
    expect(Array.from(gamma(img(1, 4, [0, 0.25, 1, -0.25]), 0.5).data)).toEqual([0, 0.5, 1, -0.5]);
    expect(() => gamma(grid3, 0)).toThrow(RangeError);
  });
  it('does not modify its input', () => {
    const a = img(1, 2, [0.5, 0.25]);
    intensityScaleShift(a, 3, 1);
    expect(Array.from(a.data)).toEqual([0.5, 0.25]);
  });
});

describe('rotate', () => {
  it('rotates by 90 degrees counter-clockwise as displayed, exactly', () => {
    // 1 2 3      3 6 9
    // 4 5 6  ->  2 5 8
    // 7 8 9      1 4 7
    expect(Array.from(rotate(grid3, 90).data)).toEqual([3, 6, 9, 2, 5, 8, 1, 4, 7]);
    expect(Array.from(rotate(grid3, 360).data)).toEqual(Array.from(grid3.data));
  });
  it('interpolates bilinearly and fills outside with zero or the edge', () => {
    // 45 degrees: the corner (0,0) maps to source offset (0, -sqrt2) from the centre: (1, 1 - 1.414) -> outside -> 0.
    const z = rotate(grid3, 45, 'zero');
    expect(z.data[0]).toBeCloseTo(0.586 * 2, 2); // row -0.414: bilinear between nothing (0) and 2 weighted 0.586
    const e = rotate(grid3, 45, 'edge');
    expect(e.data[0]).toBeCloseTo(2, 6); // clamped to the top row
    expect(z.data[4]).toBe(5); // centre fixed
  });
  it('keeps channels apart', () => {
    const two = img(1, 2, [1, 10, 2, 20], 2);
    expect(Array.from(rotate(two, 180).data)).toEqual([2, 20, 1, 10]);
  });
});

describe('zoom', () => {
  it('magnifies about the centre', () => {
    const line = img(1, 5, [0, 1, 2, 3, 4]);
    // factor 2: dest x maps to centre + (x - 2)/2: 1, 1.5, 2, 2.5, 3
    expect(Array.from(zoom(line, 2).data)).toEqual([1, 1.5, 2, 2.5, 3]);
    // factor 0.5: dest x -> 2 + 2(x - 2): -2 (outside), 0, 2, 4, 6 (outside)
    expect(Array.from(zoom(line, 0.5).data)).toEqual([0, 0, 2, 4, 0]);
    expect(Array.from(zoom(line, 0.5, 'edge').data)).toEqual([0, 0, 2, 4, 4]);
    expect(() => zoom(line, 0)).toThrow(RangeError);
  });
});

describe('grid', () => {
  it('covers intensity, gamma, rotation and scaling and is deterministic', () => {
    expect(new Set(DEFAULT_GRID.map((p) => p.kind))).toEqual(new Set(['scale', 'shift', 'gamma', 'rotate', 'zoom']));
    for (const p of DEFAULT_GRID) expect(perturb(grid3, p).data).toEqual(perturb(grid3, p).data);
  });
});
