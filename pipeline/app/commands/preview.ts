import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Command } from 'commander';
import { MedsslError } from '../../core/failures.js';
import { loadConfig } from '../../core/config.js';
import { random } from '../../core/random.js';
import type { DecodedImage, Dtype, PixelArray } from '../../../schemas/records.js';

// `medssl preview FILE`: the crops one sample gets, as .npy and .png, a contact sheet, and the parameters as JSON.
export function register(program: Command): void {
  program
    .command('preview')
    .description('write the multi-crop views of one image (crop_<i>.npy/.png, sheet.png) and print their parameters')
    .argument('<file>', 'DICOM or NIfTI file, .npy/.npy.gz of stored values (metadata from a sibling .json if present), or an .npz entry as FILE.npz#split/index')
    .requiredOption('--out <dir>', 'output folder')
    .option('--seed <n>', 'random seed', '0')
    .option('--epoch <n>', 'epoch (crops change with it)', '0')
    .option('--config <file>', 'config file (normalize and augment sections)')
    .option('--modality <code>', 'modality when the file does not say (CT, MR, CR, US, ...)')
    .addHelpText('after', '\nExamples:\n  $ medssl preview fixtures/data/dicom/pydicom/CT_small.dcm --seed 1 --out preview\n  $ medssl preview ct-slice.npy.gz --seed 1 --out preview\n  $ medssl preview pneumoniamnist.npz#train/0 --seed 1 --out preview --config quick.yaml')
    .action(async (file: string, opts: { out: string; seed: string; epoch: string; config?: string; modality?: string }) => {
      const seed = Number(opts.seed), epoch = Number(opts.epoch);
      if (!Number.isInteger(seed) || seed < 0) throw new MedsslError('invalid-value', file, `--seed must be a non-negative integer, got ${opts.seed}`);
      if (!Number.isInteger(epoch) || epoch < 0) throw new MedsslError('invalid-value', file, `--epoch must be a non-negative integer, got ${opts.epoch}`);
      const config = loadConfig(opts.config);
      const decoded = await loadPreviewImage(file, opts.modality);
      const { previewCrops } = await import('../preview.js');
      const report = await previewCrops(decoded, { normalize: config.normalize, augment: config.augment, source: random(seed), epoch, out: opts.out });
      process.stdout.write(`${JSON.stringify({ file, seed, ...report })}\n`);
    });
}

/** The one decoded frame a preview shows: the first frame (or slice) of a DICOM, NIfTI, .npy or .npz entry. */
export async function loadPreviewImage(file: string, modality?: string): Promise<DecodedImage> {
  const [name, entry] = splitEntry(file);
  if (!fs.existsSync(name)) throw new MedsslError('not-found', name, 'no such file');
  const lower = name.toLowerCase();
  if (lower.endsWith('.npz')) return npzImage(name, entry, modality);
  if (lower.endsWith('.npy') || lower.endsWith('.npy.gz')) return npyImage(name, modality);
  const { decodeItem } = await import('../../../stages/decode/decode.js');
  for await (const image of decodeItem({ id: path.basename(name), path: name, ...(modality ? { modality } : {}) }, undefined, {})) return image;
  throw new MedsslError('no-pixel-data', name, 'the file holds no image');
}

function splitEntry(file: string): [string, string | undefined] {
  const hash = file.lastIndexOf('#');
  return hash > 0 ? [file.slice(0, hash), file.slice(hash + 1)] : [file, undefined];
}

async function npzImage(file: string, entry: string | undefined, modality?: string): Promise<DecodedImage> {
  const { readNpz } = await import('../../../stages/source/npy.js');
  const m = /^(train|val|test)\/(\d+)$/.exec(entry ?? '');
  if (!m) throw new MedsslError('invalid-value', file, `expected FILE.npz#split/index (e.g. #train/0), got #${entry ?? ''}`);
  const arrays = readNpz(fs.readFileSync(file), file);
  const images = arrays.get(`${m[1]}_images`);
  if (!images) throw new MedsslError('wrong-format', file, `no ${m[1]}_images array (keys: ${[...arrays.keys()].join(', ')})`);
  const index = Number(m[2]);
  const [n, ...rest] = images.shape;
  if (index >= n) throw new MedsslError('invalid-value', file, `${m[1]} has ${n} images, asked for #${index}`);
  const per = rest.reduce((a, d) => a * d, 1);
  let data = images.data.subarray(index * per, (index + 1) * per) as PixelArray;
  let dims = rest;
  // 3-D volumes (MedMNIST 3D): the middle slice along the first axis.
  if (rest.length === 3 && rest[2] !== 3) {
    const slice = rest[1] * rest[2];
    const mid = Math.floor(rest[0] / 2);
    data = data.subarray(mid * slice, (mid + 1) * slice) as PixelArray;
    dims = [rest[1], rest[2]];
  }
  const labels = arrays.get(`${m[1]}_labels`);
  const perLabel = labels ? labels.shape.slice(1).reduce((a, d) => a * d, 1) : 0;
  const label = labels ? Array.from(labels.data.subarray(index * perLabel, (index + 1) * perLabel), Number) : undefined;
  return frame(`${path.basename(file)}#${m[1]}/${index}`, file, 'npz', data, images.dtype as Dtype, dims, modality ?? 'OT', 'MONOCHROME2', label);
}

async function npyImage(file: string, modality?: string): Promise<DecodedImage> {
  const { readNpy } = await import('../../../stages/source/npy.js');
  const raw = fs.readFileSync(file);
  const bytes = file.toLowerCase().endsWith('.gz') ? gunzip(raw, file) : raw;
  const a = readNpy(bytes, file);
  if (a.dtype === 'bool' || a.fortranOrder) throw new MedsslError('unsupported', file, 'expected a C-order numeric array');
  // Reference decodes are (frames, rows, cols[, samples]); the first frame is shown.
  let dims = a.shape;
  let data = a.data;
  if (dims.length === 4 || (dims.length === 3 && dims[2] !== 3 && dims[2] !== 4)) {
    const per = dims.slice(1).reduce((x, d) => x * d, 1);
    data = data.subarray(0, per) as PixelArray;
    dims = dims.slice(1);
  }
  const meta = sidecar(file);
  const image = frame(path.basename(file), file, 'dicom', data, a.dtype, dims, modality ?? (meta.modality as string) ?? 'OT', (meta.photometricInterpretation as string) ?? 'MONOCHROME2');
  const slope = Number(meta.rescaleSlope ?? 1), intercept = Number(meta.rescaleIntercept ?? 0);
  image.rescale = { slope: Number.isFinite(slope) ? slope : 1, intercept: Number.isFinite(intercept) ? intercept : 0 };
  if (typeof meta.bitsStored === 'number') image.bitsStored = meta.bitsStored;
  if (typeof meta.windowCenter === 'number' && typeof meta.windowWidth === 'number') image.window = { center: meta.windowCenter, width: meta.windowWidth };
  return image;
}

/** `<rel>.npy.gz` -> `<rel>.json` (the reference decodes' convention), or `<name>.json`. */
function sidecar(file: string): Record<string, unknown> {
  const base = file.replace(/\.npy(\.gz)?$/i, '');
  for (const candidate of [`${base}.json`]) {
    if (!fs.existsSync(candidate)) continue;
    try {
      return JSON.parse(fs.readFileSync(candidate, 'utf8')) as Record<string, unknown>;
    } catch {
      throw new MedsslError('corrupt', candidate, 'sidecar JSON does not parse');
    }
  }
  return {};
}

function gunzip(raw: Buffer, file: string): Buffer {
  try {
    return zlib.gunzipSync(raw, { maxOutputLength: 2 ** 31 - 1 });
  } catch (e) {
    throw new MedsslError('corrupt', file, `does not gunzip: ${(e as Error).message}`);
  }
}

function frame(id: string, file: string, format: DecodedImage['format'], data: PixelArray, dtype: Dtype, dims: number[], modality: string, photometric: string, label?: number[]): DecodedImage {
  if (dims.length < 2 || dims.length > 3) throw new MedsslError('unsupported', file, `expected a 2-D image, got shape (${dims.join(', ')})`);
  const [rows, cols, samples = 1] = dims;
  if (rows < 1 || cols < 1) throw new MedsslError('invalid-value', file, `empty image (${dims.join(', ')})`);
  return {
    id, sourceId: id, path: file, format, frame: 0, frames: 1, modality: modality.toUpperCase(), rows, cols, samples, dtype, data,
    photometric: samples === 3 && photometric.startsWith('MONO') ? 'RGB' : photometric, rescale: { slope: 1, intercept: 0 }, spacing: null,
    ...(label ? { label } : {}),
  };
}
