import { describe, expect, it } from 'vitest';
import { AugmentConfig } from '../../../schemas/config.js';
import { random } from '../../../pipeline/core/random.js';
import { cropPlan, cropSet, drawIntensity, drawRendering, multiCrop, randomResizedBox } from '../../../stages/augment/crops.js';
import { testImage } from './helpers.js';

const quick = AugmentConfig.parse({ global: { count: 2, size: 28, scale: [0.4, 1] }, local: { count: 4, size: 14, scale: [0.05, 0.4] } });

describe('crop geometry', () => {
  it('respects the area-scale and aspect-ratio ranges and stays inside the image over many draws', () => {
    const source = random(7);
    for (const [w, h, scale] of [[512, 512, [0.14, 1]], [512, 512, [0.05, 0.14]], [300, 200, [0.2, 0.6]]] as const) {
      let fallbacks = 0, minScale = 1, maxScale = 0;
      for (let i = 0; i < 3000; i++) {
        const b = randomResizedBox(source.stream({ sample: i, purpose: 'crop' }), w, h, scale, [3 / 4, 4 / 3]);
        expect(b.x).toBeGreaterThanOrEqual(0);
        expect(b.y).toBeGreaterThanOrEqual(0);
        expect(b.x + b.w).toBeLessThanOrEqual(w + 1e-9);
        expect(b.y + b.h).toBeLessThanOrEqual(h + 1e-9);
        if (b.attempts === 0) { fallbacks++; continue; }
        const s = (b.w * b.h) / (w * h);
        expect(s).toBeGreaterThanOrEqual(scale[0] - 1e-9);
        expect(s).toBeLessThanOrEqual(scale[1] + 1e-9);
        expect(b.w / b.h).toBeGreaterThanOrEqual(3 / 4 - 1e-9);
        expect(b.w / b.h).toBeLessThanOrEqual(4 / 3 + 1e-9);
        minScale = Math.min(minScale, s); maxScale = Math.max(maxScale, s);
      }
      // The draws cover the range (uniform in scale), and fallbacks are rare.
      expect(minScale).toBeLessThan(scale[0] + 0.05 * (scale[1] - scale[0]));
      expect(maxScale).toBeGreaterThan(scale[1] - 0.1 * (scale[1] - scale[0]));
      expect(fallbacks).toBeLessThan(30);
    }
  });

  it('makes G global and L local crops of the configured sizes, with their parameters logged', () => {
    const crops = multiCrop(testImage('a', 28, 28), quick, random(1), 0);
    expect(crops.map((c) => [c.kind, c.size, c.data.length])).toEqual([
      ['global', 28, 784], ['global', 28, 784], ['local', 14, 196], ['local', 14, 196], ['local', 14, 196], ['local', 14, 196],
    ]);
    for (const c of crops) {
      expect(c.params.box).toHaveLength(4);
      expect(typeof c.params.flip).toBe('boolean');
      expect(c.data.every(Number.isFinite)).toBe(true);
    }
    const paper = multiCrop(testImage('b', 512, 512), AugmentConfig.parse({}), random(1), 0);
    expect(paper.map((c) => c.size)).toEqual([224, 224, 96, 96, 96, 96, 96, 96]);
  });

  it('logs the parameters of every augmentation that fired, inside the configured ranges', () => {
    const all = AugmentConfig.parse({ gamma: { p: 1 }, energy: { p: 1, regional: true }, linear: { p: 1 }, noise: { p: 1 }, blur: { p: 1 } });
    const crops = multiCrop(testImage('c', 64, 64), all, random(3), 2);
    for (const c of crops) {
      const p = c.params as Record<string, number>;
      expect(p.gamma).toBeGreaterThanOrEqual(0.7); expect(p.gamma).toBeLessThanOrEqual(1.5);
      expect(p.energy).toBeGreaterThanOrEqual(0.7); expect(p.energy).toBeLessThanOrEqual(1.3);
      expect(p.linearScale).toBeGreaterThanOrEqual(0.8); expect(p.linearShift).toBeLessThanOrEqual(0.1);
      expect(p.noiseSigma).toBeLessThanOrEqual(0.05);
      expect(p.blurSigma).toBeGreaterThanOrEqual(0.1);
      expect(c.params.energyRegion).toHaveLength(3);
    }
    const none = AugmentConfig.parse({ flip: 0, gamma: { p: 0 }, energy: { p: 0 }, linear: { p: 0 }, noise: { p: 0 } });
    for (const c of multiCrop(testImage('c', 64, 64), none, random(3), 2)) expect(Object.keys(c.params).sort()).toEqual(['box', 'flip', 'ratio', 'scale']);
  });

  it('logs exactly the values drawn, so a crop can be replayed from its log', () => {
    // Crops travel from workers as numbers and are logged from them: check them against the draws themselves.
    const source = random(4);
    for (const [config, image] of [
      [AugmentConfig.parse({ gamma: { p: 1 }, energy: { p: 1, regional: true }, linear: { p: 1 }, noise: { p: 1 }, blur: { p: 1 }, local: { count: 2, size: 16, scale: [0.05, 0.4] } }), testImage('all', 60, 50, 3, { renderings: 3 })],
      [AugmentConfig.parse({ gamma: { p: 0.5 }, energy: { p: 0.5 }, linear: { p: 0.5 }, noise: { p: 0.5 }, local: { count: 6, size: 16, scale: [0.05, 0.4] } }), testImage('some', 60, 50)],
    ] as const) {
      const crops = multiCrop(image, config, source, 5);
      const renderings = image.renderings ?? 1;
      crops.forEach((crop, index) => {
        const { crop: size } = cropPlan(config)[index];
        const geometry = source.stream({ epoch: 5, sample: image.id, crop: index, purpose: 'crop' });
        const box = randomResizedBox(geometry, image.width, image.height, size.scale, config.ratio);
        const flip = geometry.uniform() < config.flip;
        const p = drawIntensity(source.stream({ epoch: 5, sample: image.id, crop: index, purpose: 'intensity' }), config, size.size);
        expect(crop.params).toEqual({
          box: [box.x, box.y, box.w, box.h], scale: (box.w * box.h) / (image.width * image.height), ratio: box.w / box.h, flip,
          ...(renderings > 1 ? { rendering: drawRendering(image, source, 5) } : {}),
          ...(p.gamma !== null ? { gamma: p.gamma } : {}),
          ...(p.energy !== null ? { energy: p.energy } : {}),
          ...(p.region ? { energyRegion: [p.region.cx, p.region.cy, p.region.sigma] } : {}),
          ...(p.linear ? { linearScale: p.linear[0], linearShift: p.linear[1] } : {}),
          ...(p.noise !== null ? { noiseSigma: p.noise } : {}),
          ...(p.blur !== null ? { blurSigma: p.blur } : {}),
        });
      });
    }
  });

  it('without augmentations, a full-image crop at native size returns the image; flip mirrors it', () => {
    const img = testImage('id', 32, 32);
    const base = { gamma: { p: 0 }, energy: { p: 0 }, linear: { p: 0 }, noise: { p: 0 }, ratio: [1, 1] as [number, number], local: { count: 0, size: 8, scale: [0.1, 0.2] as [number, number] } };
    const [plain] = multiCrop(img, AugmentConfig.parse({ ...base, flip: 0, global: { count: 1, size: 32, scale: [1, 1] } }), random(0), 0);
    for (let i = 0; i < plain.data.length; i++) expect(plain.data[i]).toBeCloseTo(img.data[i], 5);
    const [flipped] = multiCrop(img, AugmentConfig.parse({ ...base, flip: 1, global: { count: 1, size: 32, scale: [1, 1] } }), random(0), 0);
    for (let r = 0; r < 32; r++) for (let c = 0; c < 32; c++) expect(flipped.data[r * 32 + c]).toBeCloseTo(img.data[r * 32 + 31 - c], 5);
  });
});

describe('multiCrop determinism', () => {
  it('depends on (seed, epoch, image id) only: same inputs give identical crops, any change gives others', () => {
    const img = testImage('x', 40, 48);
    const a = multiCrop(img, quick, random(5), 1);
    // Other images processed in between do not matter (no shared state).
    multiCrop(testImage('y', 40, 48), quick, random(5), 1);
    const b = multiCrop(testImage('x', 40, 48), quick, random(5), 1);
    expect(b.map((c) => Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength))).toEqual(a.map((c) => Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength)));
    expect(b.map((c) => c.params)).toEqual(a.map((c) => c.params));
    for (const other of [multiCrop(img, quick, random(6), 1), multiCrop(img, quick, random(5), 2), multiCrop({ ...img, id: 'x2' }, quick, random(5), 1)]) {
      expect(other[0].params.box).not.toEqual(a[0].params.box);
    }
  });

  it('draws one CT window (rendering) per sample and epoch, shared by all its crops', () => {
    const img = testImage('ct', 32, 32, 3, { renderings: 3 });
    // Make the renderings distinguishable: channel k holds the constant k / 2.
    for (let i = 0; i < img.data.length; i++) img.data[i] = (i % 3) / 2;
    const none = AugmentConfig.parse({ gamma: { p: 0 }, energy: { p: 0 }, linear: { p: 0 }, noise: { p: 0 }, global: { count: 2, size: 8, scale: [0.5, 1] }, local: { count: 2, size: 4, scale: [0.1, 0.2] } });
    const seen = new Set<number>();
    for (let epoch = 0; epoch < 30; epoch++) {
      const set = cropSet(img, none, random(9), epoch, 0);
      const r = set.crops[0].params.rendering as number;
      seen.add(r);
      for (const c of set.crops) {
        expect(c.channels).toBe(1);
        expect(c.params.rendering).toBe(r);
        expect(c.data[0]).toBeCloseTo(r / 2, 6);
      }
    }
    expect(seen).toEqual(new Set([0, 1, 2]));
  });
});
