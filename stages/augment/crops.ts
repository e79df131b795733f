// Multi-crop (SwAV, Caron et al. 2020): G global and L local random-resized crops of one normalized image, each with
// its own flip and intensity augmentations. Pure: every random decision comes from the counter-based source keyed
// on (seed, epoch, image id, crop index, purpose), so a crop does not depend on the order or thread it is made in.
import type { AugmentConfig, CropConfig } from '../../schemas/config.js';
import type { Crop, CropKind, CropSet, NormalizedImage } from '../../schemas/records.js';
import type { RandomSource, RandomStream } from '../../pipeline/core/random.js';
import { applyBlur, applyRegionalEnergy, type EnergyRegion } from './intensity.js';
import { kernels, type Kernels } from '../kernels/kernels.js';
import { uninitializedFloat32 } from '../../pipeline/core/memory.js';

/** A crop box in continuous source pixel coordinates (x along columns, y along rows). */
export interface CropBox { x: number; y: number; w: number; h: number }

/**
 * RandomResizedCrop geometry (Szegedy et al. 2015; torchvision's sampler): area fraction s ~ U[scale], aspect
 * ratio r = w / h log-uniform in `ratio`, w = sqrt(s A r), h = sqrt(s A / r), position uniform. Up to 10 draws;
 * when none fits, the largest centred box whose ratio is inside `ratio`. Boxes are not rounded to whole pixels:
 * the resampler takes fractional boxes, so the area fraction is exactly the drawn s.
 */
export function randomResizedBox(rng: RandomStream, width: number, height: number, scale: readonly [number, number], ratio: readonly [number, number]): CropBox & { attempts: number } {
  const area = width * height;
  const logLo = Math.log(ratio[0]), logHi = Math.log(ratio[1]);
  for (let attempt = 1; attempt <= 10; attempt++) {
    const target = area * rng.range(scale[0], scale[1]);
    const r = Math.exp(rng.range(logLo, logHi));
    const w = Math.sqrt(target * r), h = Math.sqrt(target / r);
    const ux = rng.uniform(), uy = rng.uniform();
    if (w <= width && h <= height && w > 0 && h > 0) return { x: ux * (width - w), y: uy * (height - h), w, h, attempts: attempt };
  }
  const inRatio = width / height;
  let w = width, h = height;
  if (inRatio < ratio[0]) h = w / ratio[0];
  else if (inRatio > ratio[1]) w = h * ratio[1];
  return { x: (width - w) / 2, y: (height - h) / 2, w, h, attempts: 0 };
}

/** The intensity parameters of one crop. Every value is drawn whether or not its augmentation fires, so changing a
 * probability does not shift the other draws. */
export interface IntensityParams {
  gamma: number | null;
  energy: number | null;
  region: EnergyRegion | null;
  linear: [number, number] | null;
  noise: number | null;
  noiseState: [number, number, number, number];
  blur: number | null;
}

export function drawIntensity(rng: RandomStream, config: AugmentConfig, size: number): IntensityParams {
  const on = (p: number) => rng.uniform() < p;
  const gammaOn = on(config.gamma.p), g = rng.range(config.gamma.range[0], config.gamma.range[1]);
  const energyOn = on(config.energy.p), e = rng.range(config.energy.range[0], config.energy.range[1]);
  const region = { cx: rng.uniform() * size, cy: rng.uniform() * size, sigma: rng.range(config.energy.regionSigma[0], config.energy.regionSigma[1]) * size };
  const linearOn = on(config.linear.p), a = rng.range(config.linear.scale[0], config.linear.scale[1]), b = rng.range(config.linear.shift[0], config.linear.shift[1]);
  const noiseOn = on(config.noise.p), sigma = rng.range(config.noise.sigma[0], config.noise.sigma[1]);
  const noiseState: [number, number, number, number] = [rng.nextUint32(), rng.nextUint32(), rng.nextUint32(), rng.nextUint32()];
  const blurOn = on(config.blur.p), blurSigma = rng.range(config.blur.sigma[0], config.blur.sigma[1]);
  return {
    gamma: gammaOn ? g : null,
    energy: energyOn ? e : null,
    region: energyOn && config.energy.regional ? region : null,
    linear: linearOn ? [a, b] : null,
    noise: noiseOn ? sigma : null,
    noiseState,
    blur: blurOn ? blurSigma : null,
  };
}

/** The [lo, hi] range intensity augmentations work on: the modality rule's, or the data's extremes. */
export function intensityRange(image: NormalizedImage): [number, number] {
  if (image.range) return image.range;
  let lo = Infinity, hi = -Infinity;
  const d = image.data;
  for (let i = 0; i < d.length; i++) { const v = d[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
  return Number.isFinite(lo) ? [lo, hi] : [0, 1];
}

export interface CropRequest {
  kind: CropKind;
  size: number;
  box: CropBox;
  flip: boolean;
  intensity: IntensityParams;
  /** First channel of the rendering to crop. */
  channelOffset: number;
  channels: number;
  range: [number, number];
}

/** Resamples and augments one crop: the pixel work, with all random choices already made. */
export function renderCrop(image: NormalizedImage, req: CropRequest): Float32Array {
  const k = kernels();
  const mark = k.mark();
  try {
    const out = uninitializedFloat32(req.size * req.size * req.channels);
    renderCropFrom(k, uploadPlanes(k, image, req.channelOffset, req.channels), image, req, out);
    return out;
  } finally {
    k.release(mark);
  }
}

/** Places channels [first, first + count) of the image in the kernels' memory as planes; returns their pointers. */
function uploadPlanes(k: Kernels, image: NormalizedImage, first: number, count: number): number[] {
  if (image.channels === 1) return [k.put(image.data)];
  const n = image.width * image.height;
  const planes = Array.from({ length: count }, () => k.alloc(n));
  const mark = k.mark();
  const interleaved = k.put(image.data);
  planes.forEach((plane, c) => k.fn.deinterleave(interleaved, n, image.channels, first + c, plane));
  k.release(mark);
  return planes;
}

/** renderCrop on planes already in the kernels' memory (multiCrop uploads an image once for all its crops), into `out`. */
function renderCropFrom(k: Kernels, planes: number[], image: NormalizedImage, req: CropRequest, out: Float32Array): void {
  const { size, box, channels } = req;
  const n = size * size, count = n * channels;
  const mark = k.mark();
  const xw = k.axis(image.width, size, box.x, box.w, req.flip, 'columns');
  const yw = k.axis(image.height, size, box.y, box.h, false, 'rows');
  const crop = k.alloc(count);
  if (channels === 1) k.resample(planes[0], image.width, xw, yw, crop);
  else {
    const plane = k.alloc(n);
    for (let c = 0; c < channels; c++) {
      k.resample(planes[c], image.width, xw, yw, plane);
      k.fn.interleave(plane, n, channels, c, crop);
    }
  }
  augmentIntensity(k, crop, size, channels, req);
  out.set(k.view(crop, count));
  k.release(mark);
}

/** The intensity chain on a crop in the kernels' memory: gamma, blur, energy, linear, noise (intensity.ts). */
function augmentIntensity(k: Kernels, crop: number, size: number, channels: number, req: CropRequest): void {
  const count = size * size * channels;
  const p = req.intensity;
  const [lo, hi] = req.range;
  const gamma = p.gamma !== null && hi > lo;
  const energy = p.energy !== null;
  const [a, b] = p.linear ?? [1, 0];
  const sigma = p.noise ?? 0;
  if (gamma && !energy && p.blur === null) {
    // Nothing between gamma and the affine/noise step needs the crop: the whole chain in one pass.
    k.gammaAffineNoise(crop, count, p.gamma as number, lo, hi, a, b, sigma, p.noiseState);
    return;
  }
  // The energy pivot is the crop mean after gamma: one pass computes both when gamma is on; a plain sum otherwise,
  // and nothing when energy is off (the mean is then unused).
  let mean = 0;
  if (gamma) mean = k.gamma(crop, count, p.gamma as number, lo, hi) / count;
  else if (energy) mean = k.fn.sum(crop, count) / count;
  if (p.blur !== null) applyBlur(k.view(crop, count), size, channels, p.blur);
  if (energy && p.region) {
    applyRegionalEnergy(k.view(crop, count), size, channels, mean, p.energy as number, p.region, a, b);
    k.affineNoise(crop, count, 1, 0, sigma, p.noiseState);
  } else {
    // a * (m + s (x - m)) + b = (a s) x + (a m (1 - s) + b), with s = sqrt(e), or 1 when energy is off.
    const s = energy ? Math.sqrt(p.energy as number) : 1;
    k.affineNoise(crop, count, a * s, a * mean * (1 - s) + b, sigma, p.noiseState);
  }
}

/** Float32 values in one crop set of images with `channels` channels per rendering. */
export function cropSetValues(config: AugmentConfig, channels: number): number {
  return cropPlan(config).reduce((total, { crop }) => total + crop.size * crop.size * channels, 0);
}

/** The crop list a config asks for: globals first, then locals (SwAV's order; the trainer assigns codes on globals). */
export function cropPlan(config: AugmentConfig): Array<{ kind: CropKind; crop: CropConfig }> {
  return [
    ...Array.from({ length: config.global.count }, () => ({ kind: 'global' as const, crop: config.global })),
    ...Array.from({ length: config.local.count }, () => ({ kind: 'local' as const, crop: config.local })),
  ];
}

/** Which rendering (CT window) a sample uses this epoch; 0 when the image has one. */
export function drawRendering(image: NormalizedImage, source: RandomSource, epoch: number): number {
  const renderings = image.renderings ?? 1;
  return renderings > 1 ? source.stream({ epoch, sample: image.id, purpose: 'rendering' }).int(renderings) : 0;
}

/**
 * All crops of one image for one epoch. Random keys: (epoch, image id, crop index, 'crop' | 'intensity') and
 * (epoch, image id, 'rendering'); the result depends on nothing else.
 */
export function multiCrop(image: NormalizedImage, config: AugmentConfig, source: RandomSource, epoch: number, output?: ArrayBuffer): Crop[] {
  const { values, params } = renderCrops(image, config, source, epoch, output);
  return cropsFrom(values, params, cropPlan(config), image.channels / (image.renderings ?? 1));
}

/**
 * The work of multiCrop as plain numbers: every crop's pixels, one after the other in cropPlan order, and their
 * params, PARAM_SLOTS per crop (writeParams). This is what a worker sends back: the buffer moves, the small array
 * of numbers is copied in one piece, where the crop records would be cloned object by object.
 */
export function renderCrops(image: NormalizedImage, config: AugmentConfig, source: RandomSource, epoch: number, output?: ArrayBuffer): { values: Float32Array; params: Float64Array } {
  const renderings = image.renderings ?? 1;
  if (image.channels % renderings !== 0) throw new RangeError(`${image.id}: ${image.channels} channels do not split into ${renderings} renderings`);
  const channels = image.channels / renderings;
  const rendering = drawRendering(image, source, epoch);
  const range = intensityRange(image);
  const plan = cropPlan(config);
  // One buffer for the whole set: a set leaves a worker as one transfer, and the receiving thread tracks one buffer
  // instead of one per crop. A reused buffer (CropBuffers) when one big enough is given; its leading values are
  // overwritten in full.
  const total = cropSetValues(config, channels);
  const values = output && output.byteLength >= total * 4 ? new Float32Array(output, 0, total) : uninitializedFloat32(total);
  const params = new Float64Array(plan.length * PARAM_SLOTS);
  const k = kernels();
  const mark = k.mark();
  try {
    const planes = uploadPlanes(k, image, rendering * channels, channels);
    let offset = 0;
    plan.forEach(({ kind, crop }, index) => {
      const geometry = source.stream({ epoch, sample: image.id, crop: index, purpose: 'crop' });
      const box = randomResizedBox(geometry, image.width, image.height, crop.scale, config.ratio);
      const flip = geometry.uniform() < config.flip;
      const intensity = drawIntensity(source.stream({ epoch, sample: image.id, crop: index, purpose: 'intensity' }), config, crop.size);
      const data = values.subarray(offset, (offset += crop.size * crop.size * channels));
      renderCropFrom(k, planes, image, { kind, size: crop.size, box, flip, intensity, channelOffset: rendering * channels, channels, range }, data);
      writeParams(params, index * PARAM_SLOTS, image, box, flip, intensity, renderings > 1 ? rendering : null);
    });
    return { values, params };
  } finally {
    k.release(mark);
  }
}

/** The Crop records of renderCrops' output: crop i is a view of `values` after crops 0..i-1. */
export function cropsFrom(values: Float32Array, params: Float64Array, plan: ReadonlyArray<{ kind: CropKind; crop: CropConfig }>, channels: number): Crop[] {
  let offset = 0;
  return plan.map(({ kind, crop }, index) => {
    const data = values.subarray(offset, (offset += crop.size * crop.size * channels));
    return { kind, size: crop.size, channels, data, params: readParams(params, index * PARAM_SLOTS) };
  });
}

/** A CropSet for `image` at position `sample` of the epoch. */
export function cropSet(image: NormalizedImage, config: AugmentConfig, source: RandomSource, epoch: number, sample: number, output?: ArrayBuffer): CropSet {
  return cropSetOf(image, epoch, sample, multiCrop(image, config, source, epoch, output));
}

/** The CropSet record of `image`'s crops at position `sample` of the epoch. */
export function cropSetOf(image: NormalizedImage, epoch: number, sample: number, crops: Crop[]): CropSet {
  return {
    id: image.id, epoch, sample, modality: image.modality, crops,
    ...(image.label ? { label: image.label } : {}), ...(image.patientKey ? { patientKey: image.patientKey } : {}),
  };
}

/** Numbers per crop in renderCrops' params: box (4), scale, ratio, flip, rendering, gamma, energy, energy region (3),
 * linear scale and shift, noise sigma, blur sigma. NaN marks a value that does not apply. */
export const PARAM_SLOTS = 17;

/** What a crop log records: the box, its area fraction and ratio, and each augmentation that fired (readParams). */
function writeParams(out: Float64Array, at: number, image: NormalizedImage, box: CropBox, flip: boolean, p: IntensityParams, rendering: number | null): void {
  const region = p.region ? [p.region.cx, p.region.cy, p.region.sigma] : [NaN, NaN, NaN];
  const [a, b] = p.linear ?? [NaN, NaN];
  out.set([
    box.x, box.y, box.w, box.h, (box.w * box.h) / (image.width * image.height), box.w / box.h, flip ? 1 : 0,
    rendering ?? NaN, p.gamma ?? NaN, p.energy ?? NaN, ...region, a, b, p.noise ?? NaN, p.blur ?? NaN,
  ], at);
}

/** A crop's params record from the numbers writeParams wrote at `at`: only the augmentations that fired. */
export function readParams(v: Float64Array, at: number): Crop['params'] {
  const params: Crop['params'] = { box: [v[at], v[at + 1], v[at + 2], v[at + 3]], scale: v[at + 4], ratio: v[at + 5], flip: v[at + 6] === 1 };
  const has = (i: number) => !Number.isNaN(v[at + i]);
  if (has(7)) params.rendering = v[at + 7];
  if (has(8)) params.gamma = v[at + 8];
  if (has(9)) params.energy = v[at + 9];
  if (has(10)) params.energyRegion = [v[at + 10], v[at + 11], v[at + 12]];
  if (has(13)) { params.linearScale = v[at + 13]; params.linearShift = v[at + 14]; }
  if (has(15)) params.noiseSigma = v[at + 15];
  if (has(16)) params.blurSigma = v[at + 16];
  return params;
}
