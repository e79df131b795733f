// Intensity augmentation kernels. Each works in place on a crop, (size, size, channels) float32, with the same
// parameters for every channel. Formulas (x is a value, [lo, hi] the image's normalized range, m the crop mean):
//
//   gamma     x' = lo + (hi - lo) * ((x - lo) / (hi - lo))^g           ("x^g on the normalized range")
//   energy    x' = m + k(p) * (x - m),  k(p) = 1 + (sqrt(e) - 1) * w(p)
//             e is the factor applied to the signal energy sum (x - m)^2; w = 1 (global) or a Gaussian bump
//             (regional). This definition is ours: the paper names the augmentation without a formula.
//   linear    x' = a * x + b
//   noise     x' = x + sigma * z,  z ~ N(0, 1)                          (see stages/kernels/noise.ts)
//   blur      separable Gaussian of standard deviation sigma pixels, edges repeated
//
// Global energy and linear are both affine, so they are folded into one multiply-add per value. Gamma, the affine
// map and noise run in the WebAssembly SIMD kernels (stages/kernels/kernels.ts, gamma's table size GAMMA_TABLE_SIZE there); blur and regional energy, off by default, run here
// on views of the kernels' memory.

/** Regional energy: a Gaussian bump centred at (cx, cy) (pixels) with standard deviation sigma (pixels). */
export interface EnergyRegion { cx: number; cy: number; sigma: number }

/**
 * Energy change weighted by a separable Gaussian bump, then the linear map a * x + b:
 * x' = a * (m + (1 + (k - 1) w(p)) (x - m)) + b, with k = sqrt(e).
 */
export function applyRegionalEnergy(
  data: Float32Array, size: number, channels: number, mean: number, e: number, region: EnergyRegion, a: number, b: number,
): void {
  const k1 = Math.sqrt(e) - 1;
  const gx = new Float32Array(size), gy = new Float32Array(size);
  const inv = 1 / (2 * region.sigma * region.sigma);
  for (let i = 0; i < size; i++) {
    gx[i] = Math.exp(-((i + 0.5 - region.cx) ** 2) * inv);
    gy[i] = Math.exp(-((i + 0.5 - region.cy) ** 2) * inv);
  }
  let p = 0;
  for (let r = 0; r < size; r++) {
    const kr = k1 * gy[r];
    for (let c = 0; c < size; c++) {
      const k = 1 + kr * gx[c];
      for (let ch = 0; ch < channels; ch++, p++) data[p] = a * (mean + k * (data[p] - mean)) + b;
    }
  }
}

/** Normalised Gaussian taps of standard deviation sigma, radius ceil(3 sigma). */
export function gaussianTaps(sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const taps = new Float32Array(2 * radius + 1);
  let sum = 0;
  for (let i = -radius; i <= radius; i++) sum += (taps[i + radius] = Math.exp(-(i * i) / (2 * sigma * sigma)));
  for (let i = 0; i < taps.length; i++) taps[i] /= sum;
  return taps;
}

/** Separable Gaussian blur of a (size, size, channels) crop in place, edges repeated. */
export function applyBlur(data: Float32Array, size: number, channels: number, sigma: number): void {
  const taps = gaussianTaps(sigma);
  const radius = (taps.length - 1) >> 1;
  const line = new Float32Array(size + 2 * radius);
  for (let pass = 0; pass < 2; pass++) {
    // pass 0: along rows (stride channels), pass 1: along columns (stride size * channels).
    const step = pass === 0 ? channels : size * channels;
    const lineStride = pass === 0 ? size * channels : channels;
    for (let l = 0; l < size; l++) {
      for (let ch = 0; ch < channels; ch++) {
        const base = l * lineStride + ch;
        for (let i = 0; i < size; i++) line[i + radius] = data[base + i * step];
        for (let i = 0; i < radius; i++) { line[i] = line[radius]; line[size + radius + i] = line[size + radius - 1]; }
        for (let i = 0; i < size; i++) {
          let acc = 0;
          for (let t = 0; t < taps.length; t++) acc += taps[t] * line[i + t];
          data[base + i * step] = acc;
        }
      }
    }
  }
}
