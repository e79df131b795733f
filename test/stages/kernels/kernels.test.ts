import { describe, expect, it } from 'vitest';
import { axisWeights, resampleBox, type AxisWeights } from '../../../stages/kernels/resample.js';
import { applyBlur, applyRegionalEnergy } from '../../../stages/augment/intensity.js';
import { normalQuantile, normalTable } from '../../../stages/kernels/noise.js';
import { affineWithNoise, applyGamma, gammaAffineNoise } from '../../../stages/kernels/kernels.js';

function resample(src: Float32Array, w: number, h: number, box: [number, number, number, number], size: number, flip = false) {
  const out = new Float32Array(size * size);
  resampleBox(src, w, 1, 0, { x: box[0], y: box[1], w: box[2], h: box[3] }, size, size, out, flip);
  return out;
}

describe('area-correct resampling', () => {
  it('has weights that sum to 1 and stay inside the axis', () => {
    for (const [len, out, off, ext] of [[512, 224, 10.3, 400.2], [28, 14, 3, 20], [100, 300, 0, 100], [5, 96, 0, 5], [512, 96, 500, 12]]) {
      const a = axisWeights(len, out, off, ext);
      for (let i = 0; i < out; i++) {
        let s = 0;
        for (let t = 0; t < a.taps; t++) s += a.weights[i * a.taps + t];
        expect(s).toBeCloseTo(1, 5);
        expect(a.start[i]).toBeGreaterThanOrEqual(0);
        expect(a.start[i] + a.taps - 1).toBeLessThan(len);
      }
    }
  });

  it('is the identity when the box is the whole image at its own size', () => {
    const src = Float32Array.from({ length: 37 * 23 }, (_, i) => Math.sin(i) * 10);
    const out = new Float32Array(37 * 23);
    // Non-square: resample into a 23 x 37 grid.
    const res = new Float32Array(23 * 37);
    resampleBox(src, 37, 1, 0, { x: 0, y: 0, w: 37, h: 23 }, 37, 23, res);
    out.set(res);
    for (let i = 0; i < src.length; i++) expect(out[i]).toBeCloseTo(src[i], 5);
  });

  it('averages instead of aliasing when shrinking: a 1-pixel stripe pattern halves to flat 0.5', () => {
    const w = 64;
    const src = Float32Array.from({ length: w * w }, (_, i) => (i % w) % 2);
    const out = resample(src, w, w, [0, 0, w, w], 32);
    // Interior columns (the edge columns see the repeated edge pixel).
    for (let r = 0; r < 32; r++) for (let c = 1; c < 31; c++) expect(out[r * 32 + c]).toBeCloseTo(0.5, 5);
    // Plain bilinear at the same centres would read exactly between two pixels too, so check a shrink by 3 where
    // point sampling gives 0 or 1: the tent still gives values near the mean.
    const out3 = resample(src, w, w, [0, 0, 63, 63], 21);
    for (let c = 1; c < 20; c++) expect(Math.abs(out3[5 * 21 + c] - 0.5)).toBeLessThan(0.1);
  });

  it('reproduces a linear ramp exactly (the tent is symmetric) and mirrors it when flipped', () => {
    const w = 100;
    const src = Float32Array.from({ length: w * w }, (_, i) => (i % w) + 0.5); // value = x of the pixel centre
    const box: [number, number, number, number] = [20, 10, 60, 60];
    const out = resample(src, w, w, box, 30);
    const flipped = resample(src, w, w, box, 30, true);
    for (let c = 0; c < 30; c++) {
      const centre = box[0] + (c + 0.5) * (box[2] / 30);
      expect(out[7 * 30 + c]).toBeCloseTo(centre, 3);
      expect(flipped[7 * 30 + (29 - c)]).toBeCloseTo(centre, 3);
    }
  });

  it('equals the separable filter summed directly, for every footprint, flips, odd sizes and channels', () => {
    // out(i, j) = sum_s sum_t yw(i, s) xw(j, t) src(ys_i + s, xs_j + t): the definition the SIMD passes implement.
    const direct = (src: Float32Array, w: number, ch: number, c: number, xw: AxisWeights, yw: AxisWeights) => {
      const outW = xw.start.length, outH = yw.start.length, out = new Float64Array(outW * outH);
      for (let i = 0; i < outH; i++) for (let j = 0; j < outW; j++) {
        let acc = 0;
        for (let s = 0; s < yw.taps; s++) for (let t = 0; t < xw.taps; t++) {
          acc += yw.weights[i * yw.taps + s] * xw.weights[j * xw.taps + t] * src[((yw.start[i] + s) * w + xw.start[j] + t) * ch + c];
        }
        out[i * outW + j] = acc;
      }
      return out;
    };
    const w = 131, h = 97;
    for (const ch of [1, 3]) {
      const src = Float32Array.from({ length: w * h * ch }, (_, i) => Math.sin(i * 0.013) * 3 + ((i * 7919) % 13) / 13);
      // Shrinks from 1x to 4.4x (2 to 9 taps), enlargements, boxes at the far edges, sizes that are not multiples of 4.
      for (const [x, y, bw, bh, ow, oh, flip] of [
        [0, 0, 131, 97, 30, 22, false], [10.5, 3.2, 100, 80, 23, 37, true], [70, 40, 61, 57, 14, 14, false],
        [0.3, 0.7, 20, 15, 96, 41, true], [120, 90, 11, 7, 5, 3, false], [5, 5, 120, 90, 131, 97, true],
      ] as Array<[number, number, number, number, number, number, boolean]>) {
        const xw = axisWeights(w, ow, x, bw, flip), yw = axisWeights(h, oh, y, bh);
        for (let c = 0; c < ch; c++) {
          const out = new Float32Array(ow * oh);
          resampleBox(src, w, ch, c, { x, y, w: bw, h: bh }, ow, oh, out, flip);
          const want = direct(src, w, ch, c, xw, yw);
          let err = 0;
          for (let i = 0; i < out.length; i++) err = Math.max(err, Math.abs(out[i] - want[i]));
          expect(err).toBeLessThan(2e-5);
        }
      }
    }
  });

  it('keeps values inside the source range (non-negative weights)', () => {
    const src = Float32Array.from({ length: 50 * 50 }, (_, i) => ((i * 7919) % 101) / 100);
    const out = resample(src, 50, 50, [3.3, 4.1, 20.7, 30.2], 77);
    expect(Math.min(...out)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...out)).toBeLessThanOrEqual(1);
  });
});

describe('intensity formulas', () => {
  it('gamma: lo + (hi - lo) ((x - lo) / (hi - lo))^g, and returns the sum', () => {
    const x = Float32Array.from([-1, 0, 1, 2, 3]);
    const sum = applyGamma(x, 2, -1, 3);
    const expected = [-1, -1 + 4 * 0.25 ** 2, -1 + 4 * 0.5 ** 2, -1 + 4 * 0.75 ** 2, 3];
    expected.forEach((e, i) => expect(x[i]).toBeCloseTo(e, 4));
    expect(sum).toBeCloseTo(expected.reduce((a, b) => a + b), 3);
    // Table accuracy over the default range of g, on [0, 1].
    for (const g of [0.7, 1, 1.5]) {
      const u = Float32Array.from({ length: 1001 }, (_, i) => i / 1000);
      const v = u.slice();
      applyGamma(v, g, 0, 1);
      let err = 0;
      for (let i = 0; i < u.length; i++) err = Math.max(err, Math.abs(v[i] - u[i] ** g));
      expect(err).toBeLessThan(2e-3);
    }
  });

  it('energy (global, through the affine fold): mean kept, sum of squared deviations times e', () => {
    const x = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i * 0.37) + 0.2);
    const m = x.reduce((a, b) => a + b) / x.length;
    const e0 = x.reduce((a, v) => a + (v - m) ** 2, 0);
    const e = 1.3, k = Math.sqrt(e), a = 1, b = 0;
    const y = x.slice();
    affineWithNoise(y, a * k, a * m * (1 - k) + b, 0, [1, 2, 3, 4]);
    const my = y.reduce((p, q) => p + q) / y.length;
    expect(my).toBeCloseTo(m, 5);
    expect(y.reduce((p, v) => p + (v - my) ** 2, 0) / e0).toBeCloseTo(e, 4);
  });

  it('regional energy changes deviations only near the bump centre; linear is a x + b', () => {
    const size = 64;
    const x = Float32Array.from({ length: size * size }, (_, i) => (i % 2 ? 1 : 0));
    const y = x.slice();
    applyRegionalEnergy(y, size, 1, 0.5, 2.25, { cx: 16, cy: 16, sigma: 3 }, 2, 0.1);
    // Far from the bump: k = 1, so y = 2 x + 0.1.
    expect(y[60 * size + 61]).toBeCloseTo(2 * 1 + 0.1, 4);
    expect(y[60 * size + 60]).toBeCloseTo(0.1, 4);
    // At the bump centre k ~ sqrt(2.25) = 1.5: deviation 0.5 -> 0.75 (times a = 2, plus b).
    const centre = 15 * size + 15; // pixel (15, 15) has centre (15.5, 15.5)
    const w = Math.exp(-(0.5 ** 2) / (2 * 9)) ** 2;
    const k = 1 + 0.5 * w;
    expect(y[centre]).toBeCloseTo(2 * (0.5 + k * (x[centre] - 0.5)) + 0.1, 4);
  });

  it('noise: the normal table has mean 0 and variance 1, and a field has the asked sigma, reproducibly', () => {
    const t = normalTable();
    let s = 0, q = 0;
    for (const v of t) { s += v; q += v * v; }
    expect(s / t.length).toBeCloseTo(0, 6);
    expect(q / t.length).toBeCloseTo(1, 4);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 5);
    const a = new Float32Array(200_000), b = new Float32Array(200_000);
    affineWithNoise(a, 1, 0, 0.05, [11, 22, 33, 44]);
    affineWithNoise(b, 1, 0, 0.05, [11, 22, 33, 44]);
    expect(a).toEqual(b);
    const mean = a.reduce((p, v) => p + v) / a.length;
    const sd = Math.sqrt(a.reduce((p, v) => p + (v - mean) ** 2, 0) / a.length);
    expect(Math.abs(mean)).toBeLessThan(0.05 * 0.01);
    expect(sd).toBeCloseTo(0.05, 3);
    const c = new Float32Array(1000);
    affineWithNoise(c, 1, 0, 0.05, [11, 22, 33, 45]);
    expect(c).not.toEqual(a.subarray(0, 1000));
  });

  it('noise: a field is the prefix of a longer field, and the four SIMD lanes are uncorrelated', () => {
    const state: [number, number, number, number] = [7, 8, 9, 10];
    const long = new Float32Array(4099);
    affineWithNoise(long, 1, 0, 1, state);
    for (const n of [1, 5, 8, 13, 4096]) {
      const short = new Float32Array(n);
      affineWithNoise(short, 1, 0, 1, state);
      expect(short).toEqual(long.subarray(0, n));
    }
    // Values 8q + l and 8q + l' come from lanes l and l' of step q: independent generators, so near-zero correlation.
    const z = new Float32Array(400_000);
    affineWithNoise(z, 1, 0, 1, state);
    for (const [l, m] of [[0, 1], [0, 3], [2, 5], [4, 7]]) {
      let s = 0;
      for (let q = 0; q < z.length / 8; q++) s += z[8 * q + l] * z[8 * q + m];
      expect(Math.abs(s / (z.length / 8))).toBeLessThan(0.02);
    }
  });

  it('the fused gamma + linear + noise pass equals the three steps one after the other', () => {
    const x = Float32Array.from({ length: 999 }, (_, i) => -0.5 + 2 * ((i * 7919) % 1000) / 1000);
    const fused = x.slice(), steps = x.slice();
    const state: [number, number, number, number] = [5, 6, 7, 8];
    gammaAffineNoise(fused, 1.3, -0.5, 1.5, 0.9, 0.05, 0.02, state);
    applyGamma(steps, 1.3, -0.5, 1.5);
    affineWithNoise(steps, 0.9, 0.05, 0.02, state);
    for (let i = 0; i < x.length; i++) expect(fused[i]).toBeCloseTo(steps[i], 5);
  });

  it('blur keeps a constant and spreads an impulse as a normalised Gaussian', () => {
    const size = 21;
    const flat = new Float32Array(size * size).fill(0.3);
    applyBlur(flat, size, 1, 1.2);
    for (const v of flat) expect(v).toBeCloseTo(0.3, 5);
    const imp = new Float32Array(size * size);
    imp[10 * size + 10] = 1;
    applyBlur(imp, size, 1, 1.5);
    expect(imp.reduce((a, b) => a + b)).toBeCloseTo(1, 4);
    const g = (d: number) => Math.exp(-(d * d) / (2 * 1.5 * 1.5));
    expect(imp[10 * size + 12] / imp[10 * size + 10]).toBeCloseTo(g(2) / g(0), 3);
  });
});
