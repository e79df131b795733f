// Test data for the cache tests: real PneumoniaMNIST images as .npy files, synthetic large frames, and record-set
// snapshots for comparing caches.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readNpz, writeNpy } from '../../../stages/source/npy.js';
import { random } from '../../../pipeline/core/random.js';
import { CacheStore } from '../../../stages/cache/store.js';
import { sample } from '../../shared.js';

export const tempDir = (prefix = 'medssl-cache-') => fs.mkdtempSync(path.join(os.tmpdir(), prefix));

/** The first `n` PneumoniaMNIST training images, written as 28x28 uint8 .npy files under `dir/pneumonia`. */
export function writePneumoniaNpy(dir: string, n: number): string[] {
  const arrays = readNpz(fs.readFileSync(sample('medmnist/pneumoniamnist.npz')));
  const images = arrays.get('train_images')!;
  const out = path.join(dir, 'pneumonia');
  fs.mkdirSync(out, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const f = path.join(out, `${String(i).padStart(5, '0')}.npy`);
    fs.writeFileSync(f, writeNpy(images.data.subarray(i * 784, (i + 1) * 784), [28, 28]));
    files.push(f);
  }
  return files;
}

/** `n` synthetic uint16 stacks of `frames` slices of side x side under `dir/synthetic` (deterministic content). */
export function writeSyntheticNpy(dir: string, n: number, side: number, frames = 1): string[] {
  const out = path.join(dir, 'synthetic');
  fs.mkdirSync(out, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = random(7).stream({ sample: i, purpose: 'synthetic' });
    const data = new Uint16Array(frames * side * side);
    for (let j = 0; j < data.length; j++) data[j] = (j % side) * 3 + s.int(64);
    const f = path.join(out, `s${String(i).padStart(4, '0')}.npy`);
    fs.writeFileSync(f, writeNpy(data, frames === 1 ? [side, side] : [frames, side, side]));
    files.push(f);
  }
  return files;
}

/** Every record key of a cache with the SHA-256 of its stored bytes, and every marker, sorted. */
export async function snapshot(cache: string): Promise<{ records: string[]; markers: string[] }> {
  const store = CacheStore.open(cache, { readOnly: true });
  try {
    const records: string[] = [];
    for (const key of store.recordKeys()) {
      records.push(`${key} ${crypto.createHash('sha256').update(store.raw(key, false)!).digest('hex')}`);
    }
    const markers = [...store.markers()].map(({ prep, content, marker }) => `${prep}/${content} ${JSON.stringify(marker.frames)} ${marker.failure?.code ?? ''}`);
    return { records: records.sort(), markers: markers.sort() };
  } finally {
    await store.close();
  }
}

/** SHA-256 over a sequence of images (ids, shapes and pixel bytes in order). */
export function digestImages(images: Array<{ id: string; height: number; width: number; channels: number; data: Float32Array }>): string {
  const h = crypto.createHash('sha256');
  for (const im of images) {
    h.update(`${im.id}|${im.height}x${im.width}x${im.channels}|`);
    h.update(new Uint8Array(im.data.buffer, im.data.byteOffset, im.data.byteLength));
  }
  return h.digest('hex');
}
