// Mutated files (truncations, bit flips, absurd lengths and dimensions): every case must decode or fail with a
// MedsslError (one line), in bounded time and memory. Deterministic: the mutations come from the Philox source.
// fuzz.test.ts runs it on the fixture files, fuzz.corpus.test.ts on the small files of the whole corpus.
import fs from 'node:fs';
import zlib from 'node:zlib';
import { expect } from 'vitest';
import { MedsslError } from '../../../pipeline/core/failures.js';
import { random, type RandomStream } from '../../../pipeline/core/random.js';
import { decodeItem } from '../../../stages/decode/decode.js';
import type { Reference } from './reference.js';

export const CASES_PER_FILE = 30;
const MAX_FILE = 100_000;
/** Tight limits, so an absurd header that slipped through would show up as a failed allocation check. */
const LIMITS = { maxPixels: 4 * 1024 * 1024, maxFileBytes: 64 * 1024 * 1024 };

/** The files of `refs` small enough to mutate, read (gzip-wrapped files are mutated inside the gzip). */
export function fuzzFiles(refs: Reference[]) {
  return refs
    .filter((r) => fs.statSync(r.file).size <= MAX_FILE)
    .map((r) => {
      const raw = fs.readFileSync(r.file);
      const gz = raw[0] === 0x1f && raw[1] === 0x8b;
      return { rel: r.rel, file: r.file, bytes: gz ? zlib.gunzipSync(raw) : raw, gz };
    });
}

/** Offsets of the values of Rows, Columns, BitsAllocated, NumberOfFrames (explicit or implicit LE), and NIfTI dims. */
function headerTargets(b: Uint8Array): number[] {
  const out: number[] = [];
  const tags = [[0x28, 0x00, 0x10, 0x00], [0x28, 0x00, 0x11, 0x00], [0x28, 0x00, 0x00, 0x01], [0x28, 0x00, 0x08, 0x00]];
  for (let i = 0; i + 12 < b.length && out.length < 16; i++) {
    for (const t of tags) if (b[i] === t[0] && b[i + 1] === t[1] && b[i + 2] === t[2] && b[i + 3] === t[3]) out.push(i + 8);
  }
  if (b.length >= 348) out.push(40, 42, 44, 46, 70, 108); // NIfTI-1 dim[0..3], datatype, vox_offset
  if (b.length >= 540) out.push(16, 24, 32, 40, 12, 168); // NIfTI-2 dim[0..3], datatype, vox_offset
  return out;
}

function mutate(src: Uint8Array, rng: RandomStream): { bytes: Uint8Array; how: string } {
  const b = new Uint8Array(src);
  const kind = rng.int(4);
  if (kind === 0) {
    const at = rng.int(b.length);
    return { bytes: b.subarray(0, at), how: `truncate at ${at}` };
  }
  if (kind === 1) {
    const flips = 1 + rng.int(8);
    for (let i = 0; i < flips; i++) {
      const at = rng.int(b.length);
      b[at] ^= 1 << rng.int(8);
    }
    return { bytes: b, how: `${flips} bit flips` };
  }
  const absurd = [0xffffffff, 0x7fffffff, 0x80000000, 0xfffffff0, 0x00010000, 0];
  const value = absurd[rng.int(absurd.length)];
  const targets = headerTargets(b);
  const at = kind === 2 || !targets.length ? rng.int(Math.max(1, b.length - 4)) : targets[rng.int(targets.length)];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (at + 4 <= b.length) dv.setUint32(at, value, rng.bernoulli(0.8));
  return { bytes: b, how: `${value.toString(16)} written at ${at}` };
}

/** Mutates each file CASES_PER_FILE times and decodes every case; `min` are the least counts of each outcome. */
export async function fuzz(corpus: ReturnType<typeof fuzzFiles>, min: { decoded: number; rejected: number; codes: number }): Promise<void> {
  const outcomes = { decoded: 0, rejected: 0 };
  const codes: Record<string, number> = {};
  const rss0 = process.memoryUsage().rss;
  for (const c of corpus) {
    for (let k = 0; k < CASES_PER_FILE; k++) {
      const rng = random(7).stream({ sample: c.rel, crop: k, purpose: 'fuzz' });
      const { bytes, how } = mutate(c.bytes, rng);
      const t0 = performance.now();
      try {
        for await (const img of decodeItem({ id: c.rel, path: c.file }, c.gz ? zlib.gzipSync(bytes) : bytes, LIMITS)) {
          expect(img.data.length).toBe(img.rows * img.cols * img.samples);
        }
        outcomes.decoded++;
      } catch (err) {
        if (!(err instanceof MedsslError)) throw new Error(`${c.rel} (${how}): not a MedsslError: ${(err as Error)?.stack ?? String(err)}`);
        expect(err.message, `${c.rel} (${how})`).not.toMatch(/\n/);
        outcomes.rejected++;
        codes[err.code] = (codes[err.code] ?? 0) + 1;
      }
      const ms = performance.now() - t0;
      expect(ms, `${c.rel} (${how}) took ${ms} ms`).toBeLessThan(5000);
    }
    // Memory stays bounded: no case may leave hundreds of MB behind (limits above are 64 MB per file).
    expect(process.memoryUsage().rss - rss0).toBeLessThan(1.5 * 1024 ** 3);
  }
  // Both outcomes occur: the mutations are neither all harmless nor all fatal.
  expect(outcomes.decoded).toBeGreaterThan(min.decoded);
  expect(outcomes.rejected).toBeGreaterThan(min.rejected);
  expect(Object.keys(codes).length).toBeGreaterThan(min.codes);
}
