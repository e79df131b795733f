// The cache's reason to exist: replaying prepared images must be much faster than preparing them again.
// Replay throughput (images/s, MB/s of float32 pixels delivered) is measured for small records (PneumoniaMNIST 28x28)
// and 1 MiB records (512x512 CT slices), against preparing the same images from their sources: the .npz archive,
// an uncompressed DICOM CT slice and the same slice in JPEG 2000 (decoded with @cornerstonejs/codec-openjpeg).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Benchmark, BenchResult } from './harness.js';
import type { NormalizedImage, SourceItem } from '../schemas/records.js';
import { loadConfig } from '../pipeline/core/config.js';
import { count, from, lastValueFrom } from 'rxjs';
import { FailureLog } from '../pipeline/core/failures.js';
import { listInputs, prepareImages, preparationHash } from '../pipeline/compose/prepare.js';
import { minMax } from '../stages/normalize/intensity.js';
import { ingest } from '../stages/cache/ingest.js';
import { CACHE_SCHEMA_VERSION, CacheStore, encodeRecord } from '../stages/cache/store.js';
import { CacheDataset } from '../stages/cache/replay.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, import.meta.url.includes('/dist/') ? '../..' : '..');
/**
 * The file `rel` (a path in the corpus layout): fixtures/data/<rel> in the repository, else ../shared/data/<rel> (the
 * external test corpus beside the project, where there is one), else undefined.
 */
const dataFile = (rel: string): string | undefined =>
  [path.join(root, 'fixtures', 'data', rel), path.join(root, '..', 'shared', 'data', rel)].find((f) => fs.existsSync(f));
const requireData = (rel: string): string => {
  const file = dataFile(rel);
  if (!file) throw new Error(`${rel} is neither in fixtures/data nor in ../shared/data`);
  return file;
};
const NPZ = 'medmnist/pneumoniamnist.npz';
const CT_RAW = 'dicom/cornerstone3D/CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm';
const CT_J2K = 'dicom/cornerstone3D/CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm';
const CT_RECORDS = 256;

const result = (name: string, unit: string, value: number, config: Record<string, unknown>): BenchResult => ({ name, unit, value, config });

/**
 * Epochs of replay over one opened dataset (as a training run does): images/s and MB/s of delivered float32 pixels,
 * best of `repeats` after a warm-up epoch (which also starts the reader threads).
 */
async function replayEpoch(caches: string[], readers: number, repeats = 3, verify = true): Promise<{ imagesPerS: number; mbPerS: number; images: number }> {
  const dataset = CacheDataset.open(caches);
  let best = { imagesPerS: 0, mbPerS: 0, images: 0 };
  try {
    for (let r = 0; r <= repeats; r++) {
      let images = 0, bytes = 0;
      const t0 = performance.now();
      for await (const im of dataset.epoch({ seed: 1, epoch: r, readers, verify })) {
        images++;
        bytes += im.data.byteLength;
      }
      const s = (performance.now() - t0) / 1000;
      if (r > 0 && images / s > best.imagesPerS) best = { imagesPerS: images / s, mbPerS: bytes / 1e6 / s, images };
    }
  } finally {
    await dataset.close();
  }
  return best;
}

/** Times `fn` over `n` images (after one warm-up call): images/s and MB/s of float32 output. */
function decodeRate(n: number, fn: () => Float32Array): { imagesPerS: number; mbPerS: number } {
  fn();
  let bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) bytes += fn().byteLength;
  const s = (performance.now() - t0) / 1000;
  return { imagesPerS: n / s, mbPerS: bytes / 1e6 / s };
}

// ---- decoding from source ---------------------------------------------------------------------------------------
// The two DICOM paths below do the minimum a decoder must: find the pixel data, decode it (a copy for native pixels,
// OpenJPEG for JPEG 2000) and normalize to float32 [0, 1] by min-max. They skip the full DICOM parse, so they flatter
// decoding: against the decode stage itself (`npm run bench -- decode`) the cache's advantage is larger.

const PIXEL_DATA_OW = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x57, 0x00, 0x00]); // (7FE0,0010) OW, explicit VR LE
const PIXEL_DATA_TAG = Buffer.from([0xe0, 0x7f, 0x10, 0x00]); // (7FE0,0010)

/** Native pixel data of an explicit VR little-endian file as int16 (signed CT). */
function nativeCtPixels(file: Buffer): Int16Array {
  const at = file.lastIndexOf(PIXEL_DATA_OW);
  if (at < 0) throw new Error('no native pixel data');
  const len = file.readUInt32LE(at + 8);
  const copy = new Uint8Array(len);
  copy.set(file.subarray(at + 12, at + 12 + len));
  return new Int16Array(copy.buffer);
}

/** The single frame of encapsulated pixel data: fragments of (FFFE,E000) items after the basic offset table. */
function encapsulatedFrame(file: Buffer): Buffer {
  // Explicit VR: tag, VR (OB or OW), 2 reserved bytes, then the undefined length 0xFFFFFFFF of encapsulated data.
  const at = file.lastIndexOf(PIXEL_DATA_TAG);
  if (at < 0 || file.readUInt32LE(at + 8) !== 0xffffffff) throw new Error('no encapsulated pixel data');
  let p = at + 12;
  const fragments: Buffer[] = [];
  let first = true;
  while (p + 8 <= file.length) {
    const group = file.readUInt16LE(p), element = file.readUInt16LE(p + 2), len = file.readUInt32LE(p + 4);
    if (group !== 0xfffe) throw new Error('bad item');
    if (element === 0xe0dd) break; // sequence delimiter
    if (!first) fragments.push(file.subarray(p + 8, p + 8 + len));
    first = false; // the first item is the basic offset table
    p += 8 + len;
  }
  return Buffer.concat(fragments);
}

interface J2KCodec {
  J2KDecoder: new () => {
    delete(): void;
    getEncodedBuffer(n: number): Uint8Array;
    decode(): void;
    getDecodedBuffer(): Uint8Array;
    getFrameInfo(): { width: number; height: number; bitsPerSample: number; isSigned: boolean; componentCount: number };
  };
}

async function openJpeg(): Promise<J2KCodec> {
  const require = createRequire(import.meta.url);
  // The WebAssembly build (about 5x faster here than the package's default asm.js build): the fastest decoder we have.
  const factory = require('@cornerstonejs/codec-openjpeg/wasmjs') as (o: object) => Promise<J2KCodec>;
  // The codec prints [INFO] lines through Emscripten's print: keep stdout for the JSON results.
  return factory({ print: () => {}, printErr: () => {} });
}

function decodeJ2K(codec: J2KCodec, codestream: Uint8Array): Int16Array {
  const decoder = new codec.J2KDecoder();
  decoder.getEncodedBuffer(codestream.length).set(codestream);
  decoder.decode();
  const info = decoder.getFrameInfo();
  const out = decoder.getDecodedBuffer();
  const copy = new Uint8Array(out.length);
  copy.set(out);
  decoder.delete();
  if (!(info.bitsPerSample > 8 && info.isSigned)) throw new Error('expected signed 16-bit CT');
  return new Int16Array(copy.buffer);
}

// ---- benchmarks ---------------------------------------------------------------------------------------------------

export const benchmarks: Benchmark[] = [
  {
    name: 'cache/28x28',
    async run() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-bench-'));
      try {
        const config = loadConfig(undefined);
        const cache = path.join(dir, 'cache');
        const store = CacheStore.open(cache);
        const t0 = performance.now();
        const s = await ingest({ sources: listInputs([requireData(NPZ)]), prepare: (failures) => prepareImages(config, { failures }), store, normalizationHash: preparationHash(config) });
        const ingestS = (performance.now() - t0) / 1000;
        await store.close();
        // Decoding from source: parse the archive, cut and normalize every image (what a cache-less epoch does).
        const items: SourceItem[] = [];
        for await (const item of listInputs([requireData(NPZ)])) items.push(item);
        const t1 = performance.now();
        // One chain over the items parses the archive once, like an epoch would.
        const images = await lastValueFrom(from(items).pipe(prepareImages(config, { failures: new FailureLog() }), count()));
        const decodeS = (performance.now() - t1) / 1000;
        const decode = { imagesPerS: images / decodeS, mbPerS: (images * 784 * 4) / 1e6 / decodeS };
        const r1 = await replayEpoch([cache], 1);
        const r2 = await replayEpoch([cache], 2);
        const cfg = { records: s.images, recordBytes: 784 * 4, source: NPZ };
        return [
          result('cache/28x28/ingest', 'images/s', s.images / ingestS, cfg),
          result('cache/28x28/decode-npz', 'images/s', decode.imagesPerS, { ...cfg, mbPerS: decode.mbPerS }),
          result('cache/28x28/replay', 'images/s', r1.imagesPerS, { ...cfg, readers: 1, mbPerS: r1.mbPerS }),
          result('cache/28x28/replay', 'MB/s', r1.mbPerS, { ...cfg, readers: 1 }),
          result('cache/28x28/replay-2-readers', 'images/s', r2.imagesPerS, { ...cfg, readers: 2, mbPerS: r2.mbPerS }),
          result('cache/28x28/replay-vs-decode-npz', 'x', r1.imagesPerS / decode.imagesPerS, cfg),
        ];
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: 'cache/ct512',
    async run() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-bench-'));
      try {
        // The uncompressed slice is only in the external corpus: without it, its two results are skipped.
        const rawFile = dataFile(CT_RAW);
        if (!rawFile) process.stderr.write('bench: cache/ct512/decode-dicom-uncompressed and replay-vs-decode-uncompressed skipped: the uncompressed CT slice is only in ../shared/data\n');
        const j2k = fs.readFileSync(requireData(CT_J2K));
        const codec = await openJpeg();
        const b = decodeJ2K(codec, encapsulatedFrame(j2k));
        if (b.length !== 512 * 512) throw new Error('expected a 512 x 512 CT slice');
        // Both sources decode to the same pixels (lossless): check it, so the comparison is between equals.
        const a = rawFile ? nativeCtPixels(fs.readFileSync(rawFile)) : b;
        if (!Buffer.from(a.buffer).equals(Buffer.from(b.buffer))) throw new Error('JPEG 2000 and native CT pixels differ');
        const fromRaw = rawFile ? decodeRate(64, () => minMax(nativeCtPixels(fs.readFileSync(rawFile)))) : undefined;
        const fromJ2K = decodeRate(16, () => minMax(decodeJ2K(codec, encapsulatedFrame(fs.readFileSync(requireData(CT_J2K))))));

        // A cache of CT_RECORDS such slices (1 MiB of float32 each), one record per source.
        const data = minMax(a);
        const slice = (i: number, compression: boolean) => {
          const im: NormalizedImage = {
            id: `ct/${i}.dcm#0`, sourceId: `ct/${i}.dcm`, frame: 0, modality: 'CT', height: 512, width: 512, channels: 1, data, spacing: [0.66, 0.66], normalization: 'bench',
          };
          return encodeRecord(im, { compression });
        };
        const build = async (name: string, compression: boolean) => {
          const cache = path.join(dir, name);
          const store = CacheStore.open(cache);
          for (let i = 0; i < CT_RECORDS; i++) {
            await store.commitSource('bench', `ct${String(i).padStart(4, '0')}`, { id: `ct/${i}.dcm`, file: `ct/${i}.dcm`, frames: [0], bytes: j2k.length }, [0], [slice(i, compression)], { schemaVersion: CACHE_SCHEMA_VERSION, config: null });
          }
          await store.buildIndex('bench'); // as ingest does when it finishes: replay reads through the index
          await store.close();
          return cache;
        };
        const plain = await build('plain', false);
        const r1 = await replayEpoch([plain], 1);
        const r2 = await replayEpoch([plain], 2);
        const r1NoCrc = await replayEpoch([plain], 1, 3, false);
        const packed = await build('packed', true);
        const rPacked = await replayEpoch([packed], 1, 2);
        const cfg = { records: CT_RECORDS, recordBytes: 512 * 512 * 4, rawSource: CT_RAW, j2kSource: CT_J2K };
        return [
          ...(fromRaw ? [result('cache/ct512/decode-dicom-uncompressed', 'images/s', fromRaw.imagesPerS, { ...cfg, mbPerS: fromRaw.mbPerS })] : []),
          result('cache/ct512/decode-dicom-jpeg2000', 'images/s', fromJ2K.imagesPerS, { ...cfg, mbPerS: fromJ2K.mbPerS }),
          result('cache/ct512/replay', 'images/s', r1.imagesPerS, { ...cfg, readers: 1, verify: true }),
          result('cache/ct512/replay', 'MB/s', r1.mbPerS, { ...cfg, readers: 1, verify: true }),
          result('cache/ct512/replay-2-readers', 'MB/s', r2.mbPerS, { ...cfg, readers: 2, verify: true }),
          result('cache/ct512/replay-no-checksum', 'MB/s', r1NoCrc.mbPerS, { ...cfg, readers: 1, verify: false }),
          result('cache/ct512/replay-compressed', 'MB/s', rPacked.mbPerS, { ...cfg, readers: 1, compression: 'shuffle-deflate' }),
          result('cache/ct512/replay-vs-decode-jpeg2000', 'x', r1.imagesPerS / fromJ2K.imagesPerS, { ...cfg, target: 10 }),
          ...(fromRaw ? [result('cache/ct512/replay-vs-decode-uncompressed', 'x', r1.imagesPerS / fromRaw.imagesPerS, cfg)] : []),
        ];
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
