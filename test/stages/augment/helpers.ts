import type { NormalizedImage } from '../../../schemas/records.js';

/** A synthetic normalized image with a deterministic texture in [0, 1]. */
export function testImage(id: string, height = 64, width = 64, channels = 1, extra: Partial<NormalizedImage> = {}): NormalizedImage {
  const data = new Float32Array(height * width * channels);
  for (let i = 0; i < data.length; i++) data[i] = (Math.sin(i * 0.013 + id.length) + 1) / 2;
  return { id, sourceId: id, frame: 0, modality: 'CT', height, width, channels, data, spacing: null, normalization: 'test', range: [0, 1], ...extra };
}
