// The LMDB store behind the cache: key scheme, record codec (header + float32 array + CRC-32) and per-source
// done markers. See stages/cache/README.md for the layout and the crash-safety argument.
import fs from 'node:fs';
import zlib from 'node:zlib';
import { open, type Database, type RootDatabase } from 'lmdb';
import { z } from 'zod';
import { FailureCode, NormalizedImage } from '../../schemas/records.js';
import { packageVersion } from '../../pipeline/version.js';
import { uninitializedFloat32 } from '../../pipeline/memory.js';

/** Bumped whenever the key scheme or the value layout changes: older records then miss instead of misreading. */
export const CACHE_SCHEMA_VERSION = 3;

export interface CacheStoreOptions {
  /** Open an existing cache for reading only (replay, verify, stats); several processes may read at once. */
  readOnly?: boolean;
  /** Byte-shuffle + deflate the arrays of new records, kept only where it saves at least 10%. */
  compression?: boolean;
}

/** What a done marker says about one source (a file or a container entry) under one preparation. */
export const SourceMarker = z.object({
  /** SourceItem.id of the first source seen with this content. */
  id: z.string(),
  /** The file relative to its input root (or hashed, with data.hashPaths): failure reports name it. */
  file: z.string(),
  /** Frame indices stored for this source (their keys are recordKey(prep, content, frame)). */
  frames: z.array(z.number().int().nonnegative()),
  /** Bytes of the source read to produce it. */
  bytes: z.number().int().nonnegative(),
  /** Set when the source could not be prepared: a rerun does not retry it (until the preparation changes). */
  failure: z.object({ code: FailureCode, stage: z.string(), reason: z.string() }).optional(),
});
export type SourceMarker = z.infer<typeof SourceMarker>;

/** A file's identity on disk when it was hashed: with trustFileStamps, an unchanged stamp stands for the hash. */
export interface FileStamp {
  /** The key it is stored under: a keyed hash of the file's absolute path (never the path itself). */
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
}

/** What the cache records about one preparation (the decode + normalize configuration that produced records). */
export const PreparationInfo = z.object({
  schemaVersion: z.number().int(),
  /** The configuration that was hashed, for people choosing among several preparations in one cache. */
  config: z.unknown(),
});
export type PreparationInfo = z.infer<typeof PreparationInfo>;

/**
 * The header stored in front of every array: the NormalizedImage fields except the pixels, plus how the array is
 * stored. encodeRecord copies exactly these fields, one by one; anything else on the object is never written.
 */
export const RecordHeader = z.strictObject({
  ...NormalizedImage.omit({ data: true }).shape,
  dtype: z.literal('float32'),
  /** 'raw': the array as stored little-endian float32; 'shuffle-deflate': byte planes, then raw deflate. */
  encoding: z.enum(['raw', 'shuffle-deflate']),
  /** Bytes of the array once decoded (height * width * channels * 4). */
  arrayBytes: z.number().int().nonnegative(),
});
export type RecordHeader = z.infer<typeof RecordHeader>;

/**
 * One LMDB environment with four named databases:
 * - `records`: recordKey -> encoded record (binary);
 * - `sources`: sourceKey -> SourceMarker, written in the same transaction as that source's records;
 * - `preparations`: preparation hash -> PreparationInfo;
 * - `contents`: `v<schema>/<prep>/id:<source id>` -> the content key last committed for that source id;
 * - `stamps`: keyed hash of the file's path -> FileStamp (size, mtime, inode, SHA-256 when last committed);
 * - `meta`: 'schema' -> { schemaVersion, writer }.
 */
export class CacheStore {
  readonly path: string;
  readonly readOnly: boolean;
  readonly compression: boolean;
  private readonly env: RootDatabase;
  private readonly records: Database<Buffer, string>;
  private readonly sources: Database<SourceMarker, string>;
  private readonly preparations: Database<PreparationInfo, string>;
  private readonly meta: Database<{ schemaVersion: number; writer: string }, string>;
  private readonly stamps: Database<FileStamp, string>;
  private readonly contents: Database<string, string>;

  private constructor(path: string, opts: CacheStoreOptions) {
    this.path = path;
    this.readOnly = opts.readOnly ?? false;
    this.compression = opts.compression ?? false;
    // noMemInit stays off: LMDB would otherwise leave freed bytes (old records) in unused page space.
    // A cache is always a folder: lmdb would take a path with an extension ("cache.v1") for a single file.
    this.env = open({ path, maxDbs: 8, readOnly: this.readOnly, noSubdir: false });
    // Read-only, a database that no transaction has created yet (an ingest killed before its first commit) does not
    // open: it reads as empty.
    const db = <V>(name: string, encoding: 'binary' | 'msgpack' | 'string'): Database<V, string> =>
      this.env.openDB<V, string>({ name, encoding }) ?? (EMPTY_DB as unknown as Database<V, string>);
    this.records = db<Buffer>('records', 'binary');
    this.sources = db<SourceMarker>('sources', 'msgpack');
    this.preparations = db<PreparationInfo>('preparations', 'msgpack');
    this.meta = db<{ schemaVersion: number; writer: string }>('meta', 'msgpack');
    this.stamps = db<FileStamp>('stamps', 'msgpack');
    this.contents = db<string>('contents', 'string');
  }

  /** Opens (and for writing, creates) the cache folder at `path`. */
  static open(path: string, opts: CacheStoreOptions = {}): CacheStore {
    if (opts.readOnly) {
      if (!fs.existsSync(`${path}/data.mdb`)) throw new Error(`${path}: not a medssl cache (no data.mdb)`);
    } else {
      fs.mkdirSync(path, { recursive: true });
    }
    const store = new CacheStore(path, opts);
    if (!store.readOnly && store.meta.get('schema') === undefined) {
      store.meta.putSync('schema', { schemaVersion: CACHE_SCHEMA_VERSION, writer: `medssl ${packageVersion}` });
    }
    return store;
  }

  /** The schema version the cache was created with (records of other versions are never read). */
  get schemaVersion(): number {
    return this.meta.get('schema')?.schemaVersion ?? CACHE_SCHEMA_VERSION;
  }

  marker(prep: string, content: string): SourceMarker | undefined {
    return this.sources.get(sourceKey(prep, content));
  }

  /**
   * Writes a source's records (`frames`/`values`: those not yet written by putRecords) and its done marker in one
   * LMDB transaction, so a crash leaves either all of them or
   * none. Resolves once committed. Several calls in flight are batched by lmdb into shared transactions, which keeps
   * each source whole (a transaction holding several whole sources is still all-or-nothing for each of them).
   */
  commitSource(
    prep: string, content: string, marker: SourceMarker, frames: number[], values: Buffer[], info?: PreparationInfo, stamp?: FileStamp,
  ): Promise<void> {
    if (values.length !== frames.length) throw new RangeError('one encoded record per frame expected');
    return this.env.transaction(() => {
      if (info && this.preparations.get(prep) === undefined) this.preparations.put(prep, info);
      if (stamp) this.stamps.put(stamp.path, stamp);
      // A source whose content changed (a file edited in place) replaces its old records instead of joining them.
      const idKey = sourceKey(prep, `id:${marker.id}`);
      const previous = this.contents.get(idKey);
      if (previous !== undefined && previous !== content) {
        const old = this.sources.get(sourceKey(prep, previous));
        if (old && old.id === marker.id) {
          for (const f of old.frames) this.records.remove(recordKey(prep, previous, f));
          this.sources.remove(sourceKey(prep, previous));
        }
      }
      this.contents.put(idKey, content);
      for (let i = 0; i < values.length; i++) this.records.put(recordKey(prep, content, frames[i]), values[i]);
      this.sources.put(sourceKey(prep, content), marker);
    }) as Promise<unknown> as Promise<void>;
  }

  /**
   * Writes records of a source without its marker (sources too large for one transaction). They stay invisible to
   * replay until commitSource writes the marker; a crash in between leaves orphans that the rerun overwrites.
   */
  putRecords(prep: string, content: string, frames: number[], values: Buffer[]): Promise<void> {
    return this.env.transaction(() => {
      for (let i = 0; i < values.length; i++) this.records.put(recordKey(prep, content, frames[i]), values[i]);
    }) as Promise<unknown> as Promise<void>;
  }

  /** The stamp recorded for a file when its sources were last committed (for resuming without re-reading). */
  stamp(path: string): FileStamp | undefined {
    return this.stamps.get(path);
  }

  /** Resolves once every write issued so far is committed. */
  async flushed(): Promise<void> {
    await this.env.committed;
  }

  /** Preparation hashes present in this cache for the current schema version. */
  preparationHashes(): Map<string, PreparationInfo> {
    const out = new Map<string, PreparationInfo>();
    for (const { key, value } of this.preparations.getRange()) {
      if (value.schemaVersion === CACHE_SCHEMA_VERSION) out.set(key, value);
    }
    return out;
  }

  /** Done markers of one preparation (or of all, with their preparation hash), in key order. */
  *markers(prep?: string): Generator<{ prep: string; content: string; marker: SourceMarker }> {
    const prefix = prep ? `v${CACHE_SCHEMA_VERSION}/${prep}/` : `v${CACHE_SCHEMA_VERSION}/`;
    for (const { key, value } of this.sources.getRange({ start: prefix, end: `${prefix}\uffff` })) {
      const { prep: p, content } = parseSourceKey(key);
      yield { prep: p, content, marker: value };
    }
  }

  /**
   * The stored bytes of one record. `fast` returns lmdb's shared read buffer, valid only until the next read on this
   * thread (no copy); otherwise a private copy.
   */
  raw(key: string, fast = true): Buffer | undefined {
    return fast ? this.records.getBinaryFast(key) : this.records.getBinary(key);
  }

  /** Every stored record key (all preparations and schema versions). */
  recordKeys(): Iterable<string> {
    return this.records.getKeys();
  }

  /** Keys of records whose source has no done marker (left by a crash inside a multi-transaction source). */
  orphanCount(): number {
    const referenced = new Set<string>();
    for (const { prep, content, marker } of this.markers()) for (const f of marker.frames) referenced.add(recordKey(prep, content, f));
    let n = 0;
    for (const key of this.records.getKeys()) if (!referenced.has(key)) n++;
    return n;
  }

  /**
   * Decodes one record (verifying its checksum unless told not to); undefined when absent. Reads through lmdb's
   * shared buffer (getBinaryFast) and copies the array once into the image's own Float32Array: measured faster than
   * getBinary, which allocates and copies the whole value before any decoding (2.2 vs 1.4 GB/s for 1 MiB records).
   */
  image(key: string, verify = true): NormalizedImage | undefined {
    const value = this.records.getBinaryFast(key);
    return value === undefined ? undefined : decodeRecord(value, { verify, key });
  }

  async close(): Promise<void> {
    await this.env.close();
  }
}

// ---- keys ----------------------------------------------------------------------------------------------------

/** `v<schema>/<preparation hash>/<content>`: the done marker of one source under one preparation. */
export function sourceKey(prep: string, content: string): string {
  return `v${CACHE_SCHEMA_VERSION}/${prep}/${content}`;
}

/** The marker key plus a zero-padded frame index, so a source's frames are adjacent and in frame order. */
export function recordKey(prep: string, content: string, frame: number): string {
  return `${sourceKey(prep, content)}/${String(frame).padStart(6, '0')}`;
}

/** Content identity of a source: SHA-256 of its bytes, plus the entry address for a container entry. */
export function contentKey(sha256Hex: string, entry?: string): string {
  return entry ? `${sha256Hex}#${entry}` : sha256Hex;
}

function parseSourceKey(key: string): { prep: string; content: string } {
  const a = key.indexOf('/');
  const b = key.indexOf('/', a + 1);
  return { prep: key.slice(a + 1, b), content: key.slice(b + 1) };
}

// ---- record codec --------------------------------------------------------------------------------------------
//
//   offset 0        4 bytes  magic "MSR1"
//   offset 4        4 bytes  header length H (uint32 LE)
//   offset 8        H bytes  header JSON (RecordHeader, UTF-8)
//   offset P        N bytes  array: P = 8 + H rounded up to a multiple of 8; raw float32 LE or shuffle-deflate
//   offset P + N    4 bytes  CRC-32 (zlib polynomial) of bytes [0, P + N)

const MAGIC = 0x3152534d; // "MSR1" little-endian
const TRAILER = 4;
/** Larger claims are corruption, not images: refuse before allocating. */
const MAX_HEADER_BYTES = 1 << 20;

export interface EncodeOptions {
  compression?: boolean;
}

/** Encodes an image as a record. Only RecordHeader fields are copied: anything else on the object is dropped. */
export function encodeRecord(image: NormalizedImage, opts: EncodeOptions = {}): Buffer {
  const { data } = image;
  if (data.length !== image.height * image.width * image.channels) {
    throw new RangeError(`${image.id}: data holds ${data.length} values, expected ${image.height}x${image.width}x${image.channels}`);
  }
  const rawBytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let payload: Uint8Array = rawBytes;
  let encoding: RecordHeader['encoding'] = 'raw';
  if (opts.compression && data.byteLength >= 1024) {
    const packed = zlib.deflateRawSync(byteShuffle(rawBytes, 4), { level: 1 });
    if (packed.length <= 0.9 * rawBytes.length) {
      payload = packed;
      encoding = 'shuffle-deflate';
    }
  }
  const header: RecordHeader = {
    id: image.id,
    sourceId: image.sourceId,
    frame: image.frame,
    modality: image.modality,
    height: image.height,
    width: image.width,
    channels: image.channels,
    spacing: image.spacing,
    ...(image.patientKey !== undefined ? { patientKey: image.patientKey } : {}),
    ...(image.label !== undefined ? { label: image.label } : {}),
    ...(image.split !== undefined ? { split: image.split } : {}),
    // The modality rule's value range (gamma works on it) and the CT windows stacked as channels (augment draws one).
    ...(image.range !== undefined ? { range: image.range } : {}),
    ...(image.renderings !== undefined ? { renderings: image.renderings } : {}),
    normalization: image.normalization,
    dtype: 'float32',
    encoding,
    arrayBytes: data.byteLength,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const start = align8(8 + json.length);
  const out = Buffer.alloc(start + payload.length + TRAILER);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(json.length, 4);
  json.copy(out, 8);
  out.set(payload, start);
  out.writeUInt32LE(zlib.crc32(out.subarray(0, start + payload.length)), start + payload.length);
  return out;
}

/** Why a stored value is not a valid record, or null when it is (checks layout and checksum, not the array). */
export function checkRecord(value: Uint8Array): string | null {
  const len = value.length;
  if (len < 8 + TRAILER) return `too short (${len} bytes)`;
  const view = Buffer.from(value.buffer, value.byteOffset, len);
  if (view.readUInt32LE(0) !== MAGIC) return 'bad magic';
  const stored = view.readUInt32LE(len - TRAILER);
  const actual = zlib.crc32(view.subarray(0, len - TRAILER));
  if (stored !== actual) return `checksum mismatch (stored ${hex(stored)}, computed ${hex(actual)})`;
  const h = view.readUInt32LE(4);
  if (h > MAX_HEADER_BYTES || 8 + h > len - TRAILER) return `header length ${h} runs past the record`;
  return null;
}

/** Parses the header of a record (no checksum check: callers that need it call checkRecord). */
export function readHeader(value: Uint8Array): RecordHeader {
  const view = Buffer.from(value.buffer, value.byteOffset, value.length);
  const h = view.readUInt32LE(4);
  if (h > MAX_HEADER_BYTES || 8 + h > value.length - TRAILER) throw new Error(`record header length ${h} runs past the record`);
  const header = JSON.parse(view.toString('utf8', 8, 8 + h)) as unknown;
  // The full schema check costs more than reading a small record; the hand check covers what decoding relies on.
  if (!isHeader(header)) return RecordHeader.parse(header); // throws with the schema's description of the problem
  return header;
}

function isHeader(h: unknown): h is RecordHeader {
  if (typeof h !== 'object' || h === null) return false;
  const r = h as Record<string, unknown>;
  const dim = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  return typeof r.id === 'string' && typeof r.sourceId === 'string' && Number.isInteger(r.frame) && (r.frame as number) >= 0 &&
    typeof r.modality === 'string' && dim(r.height) && dim(r.width) && dim(r.channels) && typeof r.normalization === 'string' &&
    r.dtype === 'float32' && (r.encoding === 'raw' || r.encoding === 'shuffle-deflate') && Number.isInteger(r.arrayBytes) &&
    (r.spacing === null || (Array.isArray(r.spacing) && r.spacing.length === 2 && r.spacing.every((x) => typeof x === 'number'))) &&
    (r.patientKey === undefined || typeof r.patientKey === 'string') &&
    (r.label === undefined || (Array.isArray(r.label) && r.label.every((x) => typeof x === 'number'))) &&
    (r.split === undefined || r.split === 'train' || r.split === 'val' || r.split === 'test') &&
    Object.keys(r).length <= 15;
}

export class CorruptRecordError extends Error {
  constructor(readonly key: string, readonly reason: string) {
    super(`cache record ${key}: ${reason}`);
    this.name = 'CorruptRecordError';
  }
}

/**
 * Decodes a record into a NormalizedImage that owns its pixels. When `value` is lmdb's shared read buffer the array
 * is copied once into a fresh Float32Array. When `owned` (a private buffer from getBinary, itself the one copy out
 * of the memory map) and the array is 4-byte aligned, data is a view on it: no second copy.
 */
export function decodeRecord(value: Uint8Array, opts: { verify?: boolean; key?: string; owned?: boolean } = {}): NormalizedImage {
  const key = opts.key ?? '?';
  if (opts.verify !== false) {
    const problem = checkRecord(value);
    if (problem) throw new CorruptRecordError(key, problem);
  }
  let header: RecordHeader;
  try {
    header = readHeader(value);
  } catch (e) {
    throw new CorruptRecordError(key, `unreadable header: ${(e as Error).message}`);
  }
  const count = header.height * header.width * header.channels;
  if (header.arrayBytes !== count * 4) throw new CorruptRecordError(key, `header claims ${header.arrayBytes} array bytes for ${count} values`);
  const start = align8(8 + Buffer.from(value.buffer, value.byteOffset, value.length).readUInt32LE(4));
  const stored = value.subarray(start, value.length - TRAILER);
  let data: Float32Array;
  if (header.encoding === 'raw') {
    if (stored.length !== header.arrayBytes) throw new CorruptRecordError(key, `array is ${stored.length} bytes, header says ${header.arrayBytes}`);
    if (opts.owned && (value.byteOffset + start) % 4 === 0) {
      data = new Float32Array(value.buffer, value.byteOffset + start, count);
    } else {
      data = uninitializedFloat32(count);
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(stored);
    }
  } else {
    data = uninitializedFloat32(count);
    const target = new Uint8Array(data.buffer);
    let shuffled: Buffer;
    try {
      shuffled = zlib.inflateRawSync(stored, { maxOutputLength: Math.max(header.arrayBytes, 1) });
    } catch (e) {
      throw new CorruptRecordError(key, `array does not inflate: ${(e as Error).message}`);
    }
    if (shuffled.length !== header.arrayBytes) throw new CorruptRecordError(key, `array inflates to ${shuffled.length} bytes, header says ${header.arrayBytes}`);
    byteUnshuffle(shuffled, 4, target);
  }
  return {
    id: header.id,
    sourceId: header.sourceId,
    frame: header.frame,
    modality: header.modality,
    height: header.height,
    width: header.width,
    channels: header.channels,
    data,
    spacing: header.spacing,
    ...(header.patientKey !== undefined ? { patientKey: header.patientKey } : {}),
    ...(header.label !== undefined ? { label: header.label } : {}),
    ...(header.split !== undefined ? { split: header.split } : {}),
    ...(header.range !== undefined ? { range: header.range } : {}),
    ...(header.renderings !== undefined ? { renderings: header.renderings } : {}),
    normalization: header.normalization,
  };
}

/**
 * Groups byte k of every element together (k = 0..size-1). Normalized float32 images share exponent and high
 * mantissa bytes across neighbours, so the planes compress far better than the interleaved floats (the Blosc idea).
 */
export function byteShuffle(src: Uint8Array, size: number): Uint8Array {
  const n = Math.floor(src.length / size);
  const out = new Uint8Array(src.length);
  for (let k = 0; k < size; k++) {
    const base = k * n;
    for (let i = 0; i < n; i++) out[base + i] = src[i * size + k];
  }
  out.set(src.subarray(n * size), n * size);
  return out;
}

export function byteUnshuffle(src: Uint8Array, size: number, out: Uint8Array): Uint8Array {
  const n = Math.floor(src.length / size);
  for (let k = 0; k < size; k++) {
    const base = k * n;
    for (let i = 0; i < n; i++) out[i * size + k] = src[base + i];
  }
  out.set(src.subarray(n * size), n * size);
  return out;
}

const align8 = (n: number) => (n + 7) & ~7;
const hex = (n: number) => n.toString(16).padStart(8, '0');

/** What a database that no transaction has created yet reads as, in a read-only cache. */
const EMPTY_DB = {
  get: () => undefined,
  getBinary: () => undefined,
  getBinaryFast: () => undefined,
  getKeys: () => [],
  getRange: () => [],
};
