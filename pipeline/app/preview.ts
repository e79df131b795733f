// What one sample looks like after normalize and augment: crops as .npy and .png, a contact sheet, the parameters.
import fs from 'node:fs';
import path from 'node:path';
import { PNG } from 'pngjs';
import type { AugmentConfig, NormalizeConfig } from '../../schemas/config.js';
import type { Crop, DecodedImage, NormalizedImage } from '../../schemas/records.js';
import type { RandomSource } from '../core/random.js';
import { normalizeImage } from '../../stages/normalize/normalize.js';
import { drawRendering, intensityRange, multiCrop } from '../../stages/augment/crops.js';
import { resampleBox } from '../../stages/kernels/resample.js';
import { writeNpy } from '../../stages/source/npy.js';

export interface PreviewOptions {
  normalize: NormalizeConfig;
  augment: AugmentConfig;
  source: RandomSource;
  epoch: number;
  out: string;
}

/** Side of the source tile on the sheet. */
const SHEET_SOURCE = 256;
const GAP = 8;

/**
 * Normalizes `image`, makes its crops for `epoch`, and writes crop_<i>.npy (float32, (H, W) or (H, W, C)),
 * crop_<i>.png (8-bit, the normalized range mapped to 0..255) and sheet.png (source and crops side by side).
 * Same inputs, same bytes. Returns what was done, for printing as JSON.
 */
export async function previewCrops(image: DecodedImage, opts: PreviewOptions) {
  const normalized = normalizeImage(image, opts.normalize);
  const range = intensityRange(normalized);
  const crops = multiCrop(normalized, opts.augment, opts.source, opts.epoch);
  const rendering = drawRendering(normalized, opts.source, opts.epoch);
  fs.mkdirSync(opts.out, { recursive: true });
  const written: Array<Record<string, unknown>> = [];
  for (const [i, crop] of crops.entries()) {
    const shape = crop.channels === 1 ? [crop.size, crop.size] : [crop.size, crop.size, crop.channels];
    fs.writeFileSync(path.join(opts.out, `crop_${i}.npy`), writeNpy(crop.data, shape));
    await writePng(path.join(opts.out, `crop_${i}.png`), toBytes(crop.data, range), crop.size, crop.size, crop.channels);
    written.push({ index: i, kind: crop.kind, size: crop.size, channels: crop.channels, params: crop.params, npy: `crop_${i}.npy`, png: `crop_${i}.png` });
  }
  await writeSheet(path.join(opts.out, 'sheet.png'), normalized, rendering, range, crops);
  return {
    epoch: opts.epoch,
    out: opts.out,
    image: {
      id: normalized.id, modality: normalized.modality, height: normalized.height, width: normalized.width,
      channels: normalized.channels, renderings: normalized.renderings ?? 1, range, normalization: normalized.normalization,
    },
    rendering,
    crops: written,
  };
}

/** 8-bit values: round(255 * clamp((x - lo) / (hi - lo), 0, 1)). */
export function toBytes(data: Float32Array, [lo, hi]: readonly [number, number]): Uint8Array {
  const out = new Uint8Array(data.length);
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  for (let i = 0; i < data.length; i++) {
    const v = (data[i] - lo) * scale;
    out[i] = v > 0 ? (v < 255 ? Math.round(v) : 255) : 0;
  }
  return out;
}

/** An 8-bit grey (1 channel) or RGB (3 channels) PNG. */
async function writePng(file: string, bytes: Uint8Array, width: number, height: number, channels: number): Promise<void> {
  const png = PNG.sync.write(
    { width, height, data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) } as PNG,
    { colorType: channels === 1 ? 0 : 2, inputColorType: channels === 1 ? 0 : 2, inputHasAlpha: false },
  );
  await fs.promises.writeFile(file, png);
}

/** The source (its drawn rendering, fitted into 256 x 256) then every crop at its own size, on one grey RGB row. */
async function writeSheet(file: string, image: NormalizedImage, rendering: number, range: [number, number], crops: Crop[]): Promise<void> {
  const channels = image.channels / (image.renderings ?? 1);
  const fit = SHEET_SOURCE / Math.max(image.height, image.width);
  const sh = Math.max(1, Math.round(image.height * fit)), sw = Math.max(1, Math.round(image.width * fit));
  const source = new Float32Array(sh * sw * channels);
  const plane = new Float32Array(sh * sw);
  for (let c = 0; c < channels; c++) {
    resampleBox(image.data, image.width, image.channels, rendering * channels + c, { x: 0, y: 0, w: image.width, h: image.height }, sw, sh, plane);
    for (let i = 0, o = c; i < plane.length; i++, o += channels) source[o] = plane[i];
  }
  const tiles = [{ data: source, w: sw, h: sh, channels }, ...crops.map((c) => ({ data: c.data, w: c.size, h: c.size, channels: c.channels }))];
  const width = tiles.reduce((a, t) => a + t.w + GAP, GAP);
  const height = Math.max(...tiles.map((t) => t.h)) + 2 * GAP;
  const sheet = new Uint8Array(width * height * 3).fill(64);
  let x0 = GAP;
  for (const t of tiles) {
    const bytes = toBytes(t.data, range);
    for (let r = 0; r < t.h; r++) {
      for (let c = 0; c < t.w; c++) {
        const o = ((GAP + r) * width + x0 + c) * 3;
        for (let k = 0; k < 3; k++) sheet[o + k] = bytes[(r * t.w + c) * t.channels + (t.channels === 3 ? k : 0)];
      }
    }
    x0 += t.w + GAP;
  }
  await writePng(file, sheet, width, height, 3);
}
