// The LMDB store behind the cache: key scheme, record codec (header + float32 array + CRC-32) and per-source
// done markers. See stages/cache/README.md for the layout and the crash-safety argument.
import fs from 'node:fs';
import zlib from 'node:zlib';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { z } from 'zod';
import { FailureCode, NormalizedImage } from '../../schemas/records.js';
import { packageVersion } from '../../pipeline/core/version.js';
import { uninitializedFloat32 } from '../../pipeline/core/memory.js';
import { dataFileProblem } from './lmdb-tail.js';
import { INDEX_VERSION, type IndexMeta, MAX_ORDINAL, SPLIT_GROUPS, compareRecordKeys, groupOf, indexKey, indexPrefix } from './ordinal-index.js';

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
  /**
   * The split of its records ('none': no split), so the index is built from markers alone; 'mixed' when its frames
   * differ. Absent in markers written before the index existed: the index reads those records' headers instead.
   */
  split: z.enum(['train', 'val', 'test', 'none', 'mixed']).optional(),
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

/** A cache that cannot be read as one: not a cache, truncated, unreadable, or its index missing or out of date. */
export class CacheError extends Error {
  constructor(readonly file: string, readonly reason: string) {
    super(`${file}: ${reason}`);
    this.name = 'CacheError';
  }
}

/** A build of the index stopped because another process started one on the same cache (which then owns it). */
export class IndexBuildSuperseded extends CacheError {
  constructor(file: string, prep: string) {
    super(file, `preparation ${prep}: another process started indexing this cache; its index is left to it`);
    this.name = 'IndexBuildSuperseded';
  }
}

/**
 * One LMDB environment with seven named databases:
 * - `records`: recordKey -> encoded record (binary);
 * - `sources`: sourceKey -> SourceMarker, written in the same transaction as that source's records;
 * - `preparations`: preparation hash -> PreparationInfo;
 * - `contents`: `v<schema>/<prep>/id:<source id>` -> the content key last committed for that source id;
 * - `stamps`: keyed hash of the file's path -> FileStamp (size, mtime, inode, SHA-256 when last committed);
 * - `index`: ordinal index entries (ordinal-index.ts) -> record key;
 * - `meta`: 'schema' -> { schemaVersion, writer }; per preparation, `generation/<prep>` (bumped by every committed
 *   source), `index/<prep>` (IndexMeta) and `index-writes/<prep>/<slot>` (rebuilds started in that slot).
 */
export class CacheStore {
  readonly path: string;
  readonly readOnly: boolean;
  readonly compression: boolean;
  private readonly env: RootDatabase;
  private readonly records: Database<Buffer, string>;
  private readonly sources: Database<SourceMarker, string>;
  private readonly preparations: Database<PreparationInfo, string>;
  private readonly meta: Database<unknown, string>;
  private readonly stamps: Database<FileStamp, string>;
  private readonly contents: Database<string, string>;
  private readonly index: Database<Buffer, Buffer>;

  private constructor(path: string, opts: CacheStoreOptions) {
    this.path = path;
    this.readOnly = opts.readOnly ?? false;
    this.compression = opts.compression ?? false;
    // noMemInit stays off: LMDB would otherwise leave freed bytes (old records) in unused page space.
    // A cache is always a folder: lmdb would take a path with an extension ("cache.v1") for a single file.
    const file = `${path}/data.mdb`;
    // Before LMDB maps it: a cut file would kill the process (SIGBUS) on the first read past its end.
    // A writer initializes an empty file (a creation interrupted before LMDB wrote its meta pages).
    const problem = fs.existsSync(file) && !(fs.statSync(file).size === 0 && !this.readOnly) ? dataFileProblem(file) : null;
    if (problem) throw new CacheError(file, problem);
    try {
      this.env = open({ path, maxDbs: 8, readOnly: this.readOnly, noSubdir: false });
    } catch (e) {
      throw new CacheError(file, `not readable as an LMDB cache (${(e as Error).message})`);
    }
    try {
      // Read-only, a database that no transaction has created yet (an ingest killed before its first commit) does
      // not open: it reads as empty.
      const db = <V, K extends Key = string>(name: string, encoding: 'binary' | 'msgpack' | 'string', keyEncoding?: 'binary'): Database<V, K> =>
        this.env.openDB<V, K>({ name, encoding, ...(keyEncoding ? { keyEncoding } : {}) }) ?? (EMPTY_DB as unknown as Database<V, K>);
      this.records = db<Buffer>('records', 'binary');
      this.sources = db<SourceMarker>('sources', 'msgpack');
      this.preparations = db<PreparationInfo>('preparations', 'msgpack');
      this.meta = db<unknown>('meta', 'msgpack');
      this.stamps = db<FileStamp>('stamps', 'msgpack');
      this.contents = db<string>('contents', 'string');
      this.index = db<Buffer, Buffer>('index', 'binary', 'binary');
    } catch (e) {
      void this.env.close();
      throw e instanceof CacheError ? e : new CacheError(file, `unreadable (${(e as Error).message})`);
    }
  }

  /** Opens (and for writing, creates) the cache folder at `path`. */
  static open(path: string, opts: CacheStoreOptions = {}): CacheStore {
    if (opts.readOnly) {
      if (!fs.existsSync(`${path}/data.mdb`)) throw new CacheError(path, 'not a medssl cache (no data.mdb)');
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
    return (this.meta.get('schema') as { schemaVersion?: number } | undefined)?.schemaVersion ?? CACHE_SCHEMA_VERSION;
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
      // In the same transaction: an index built from an earlier generation is known to be out of date.
      this.meta.put(generationKey(prep), this.generation(prep) + 1);
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

  /**
   * Keys of records whose source has no done marker (left by a crash inside a multi-transaction source). A source's
   * records are adjacent, so one marker lookup per source suffices and no set of keys is held.
   */
  orphanCount(): number {
    let n = 0;
    let source = '';
    let frames: Set<number> | undefined;
    for (const key of this.records.getKeys()) {
      const slash = key.lastIndexOf('/');
      if (key.slice(0, slash) !== source) {
        source = key.slice(0, slash);
        const marker = this.sources.get(source);
        frames = marker ? new Set(marker.frames) : undefined;
      }
      if (!frames?.has(Number(key.slice(slash + 1)))) n++;
    }
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

  // ---- ordinal index (ordinal-index.ts; README "Ordinal index") ----------------------------------------------

  /** The preparation's generation: bumped by every committed source (0 before the first, and in older caches). */
  generation(prep: string): number {
    return (this.meta.get(generationKey(prep)) as number | undefined) ?? 0;
  }

  /** Whether `prep` has an index that lists exactly its committed records, and if not, why. */
  indexState(prep: string): { state: 'current'; meta: IndexMeta } | { state: 'missing' | 'stale'; reason: string } {
    const meta = this.meta.get(indexMetaKey(prep)) as IndexMeta | undefined;
    if (meta === undefined) {
      // A preparation this cache never committed a source of (a shard that drew none) reads as empty.
      if (this.generation(prep) === 0 && this.markersPage(prep, undefined, 1).length === 0) {
        return { state: 'current', meta: { version: INDEX_VERSION, slot: 0, generation: 0, counts: SPLIT_GROUPS.map(() => 0) } };
      }
      return { state: 'missing', reason: 'no index (an ingest made before the index existed, or one stopped before indexing)' };
    }
    if (meta.version !== INDEX_VERSION) return { state: 'stale', reason: `index format v${meta.version}; this medssl reads v${INDEX_VERSION}` };
    const generation = this.generation(prep);
    if (meta.generation !== generation) {
      return { state: 'stale', reason: `the index lists generation ${meta.generation} of the records, which are at ${generation} (an ingest stopped before indexing, or is still running)` };
    }
    return { state: 'current', meta };
  }

  /** Opens the current index of `prep` for reading; a CacheError says why when there is none. */
  openIndex(prep: string): IndexView {
    const s = this.indexState(prep);
    if (s.state !== 'current') {
      throw new CacheError(this.path, `preparation ${prep}: ${s.reason}: run \`medssl cache index ${this.path}\`, or rerun the ingest`);
    }
    return this.indexView(prep, s.meta, this.slotWrites(prep, s.meta.slot));
  }

  /** A view of a given index (a reader thread reads the index its dataset opened, whatever happened since). */
  indexView(prep: string, meta: IndexMeta, writes: number): IndexView {
    return new IndexView(this, prep, meta, writes, { index: this.index, records: this.records, meta: this.meta });
  }

  /** Rebuilds started in one slot of the index of `prep` (a reader of that slot compares it with its own count). */
  slotWrites(prep: string, slot: number): number {
    return (this.meta.get(writesKey(prep, slot)) as { count: number } | undefined)?.count ?? 0;
  }

  /**
   * The canonical sequence of one preparation's records, with each one's split group: done markers in key order, each
   * marker's frames in ascending order. Read a page of markers at a time, so writes may come between pages.
   */
  *canonical(prep: string): Generator<{ key: string; group: number }> {
    let after: string | undefined;
    for (;;) {
      const page = this.markersPage(prep, after, 1024);
      if (page.length === 0) return;
      for (const { key, value } of page) {
        const frames = [...value.frames].sort((a, b) => a - b);
        const split = value.split;
        for (const frame of frames) {
          const record = `${key}/${String(frame).padStart(6, '0')}`;
          yield { key: record, group: split !== undefined && split !== 'mixed' ? SPLIT_GROUPS.indexOf(split) : this.groupFromHeader(record) };
        }
      }
      after = page[page.length - 1].key;
    }
  }

  /**
   * Builds the index of `prep` from its done markers (writer only; ingest calls it when it finishes). It writes the
   * slot not in use in transactions of 50,000 entries and switches to it in one last transaction, so readers see the
   * old index or the new one, never a mixture, and a crash leaves the old one (out of date, so reported as such).
   * Memory: one batch of entries.
   */
  async buildIndex(prep: string): Promise<IndexMeta> {
    if (this.readOnly) throw new CacheError(this.path, 'opened read-only: cannot build its index');
    await this.flushed();
    const current = this.meta.get(indexMetaKey(prep)) as IndexMeta | undefined;
    const slot: 0 | 1 = current?.slot === 0 ? 1 : 0;
    const token = `${process.pid}-${performance.now()}-${Math.random()}`;
    let generation = 0;
    this.env.transactionSync(() => {
      generation = this.generation(prep);
      this.meta.put(writesKey(prep, slot), { count: this.slotWrites(prep, slot) + 1, token });
    });
    // Two builders of one cache (two ingests ending together): the later one owns the slot, the earlier one stops.
    const mine = () => {
      if ((this.meta.get(writesKey(prep, slot)) as { token?: string } | undefined)?.token !== token) {
        throw new IndexBuildSuperseded(this.path, prep);
      }
    };
    const prefixes = SPLIT_GROUPS.map((_, g) => indexPrefix(prep, slot, g));
    const counts = SPLIT_GROUPS.map(() => 0);
    let batch: Array<[Buffer, Buffer]> = [];
    const flush = () => {
      const entries = batch;
      batch = [];
      this.env.transactionSync(() => {
        mine();
        for (const [k, v] of entries) this.index.put(k, v);
      });
    };
    for (const { key, group } of this.canonical(prep)) {
      if (counts[group] >= MAX_ORDINAL) throw new CacheError(this.path, `preparation ${prep}: more than ${MAX_ORDINAL} records in split ${SPLIT_GROUPS[group]}`);
      batch.push([indexKey(prefixes[group], counts[group]++), Buffer.from(key, 'utf8')]);
      if (batch.length >= 50_000) {
        flush();
        await new Promise((r) => setImmediate(r));
      }
    }
    flush();
    // Entries past the new counts, left by an earlier, larger index in this slot, are removed: the slot then holds
    // exactly this index (verify compares them entry by entry).
    for (let g = 0; g < prefixes.length; g++) {
      for (;;) {
        const stale = [...this.index.getKeys({ start: indexKey(prefixes[g], counts[g]), end: indexKey(prefixes[g], MAX_ORDINAL), inclusiveEnd: true, limit: 50_000 })];
        if (stale.length === 0) break;
        this.env.transactionSync(() => {
          mine();
          for (const k of stale) this.index.remove(k);
        });
      }
    }
    const meta: IndexMeta = { version: INDEX_VERSION, slot, generation, counts };
    this.env.transactionSync(() => {
      mine();
      this.meta.put(indexMetaKey(prep), meta);
    });
    return meta;
  }

  /** Up to `limit` done markers of `prep` after the key `after` (from the first when undefined). */
  private markersPage(prep: string, after: string | undefined, limit: number): Array<{ key: string; value: SourceMarker }> {
    const prefix = `v${CACHE_SCHEMA_VERSION}/${prep}/`;
    return [...this.sources.getRange({ start: after ?? prefix, end: `${prefix}\uffff`, exclusiveStart: after !== undefined, limit })];
  }

  /** The split group of a record read from its header (markers without a split); 'none' when it does not read. */
  private groupFromHeader(key: string): number {
    const value = this.records.getBinaryFast(key);
    if (value === undefined || checkRecord(value) !== null) return SPLIT_GROUPS.indexOf('none');
    try {
      return groupOf(readHeader(value).split);
    } catch {
      return SPLIT_GROUPS.indexOf('none');
    }
  }

  async close(): Promise<void> {
    await this.env.close();
  }
}

/**
 * Read access to the current index of one preparation: record `ordinal` of split group `group` in one index get and
 * one record get, with no key held in memory.
 */
export class IndexView {
  readonly counts: readonly number[];
  /** Per group, the key of the entry last read: the prefix and 4 bytes for the ordinal, rewritten in place. */
  private readonly entryKeys: Buffer[];
  private keyCopy = Buffer.allocUnsafe(512);
  /** Views of keyCopy by length: keys of one cache have a few lengths, and a view per read is measurable. */
  private keyViews: Buffer[] = [];

  constructor(
    readonly store: CacheStore,
    readonly prep: string,
    readonly meta: IndexMeta,
    /** slotWrites when opened: a rebuild that starts writing this slot changes it. */
    readonly writes: number,
    private readonly dbs: { index: Database<Buffer, Buffer>; records: Database<Buffer, string>; meta: Database<unknown, string> },
  ) {
    this.counts = meta.counts;
    this.entryKeys = SPLIT_GROUPS.map((_, g) => indexKey(indexPrefix(prep, meta.slot, g), 0));
  }

  /** The key of record `ordinal` of `group`, in a buffer that the next call reuses; undefined when there is no entry. */
  keyAt(group: number, ordinal: number): Buffer | undefined {
    const k = this.entryKeys[group];
    k.writeUInt32BE(ordinal, k.length - 4);
    let value: Buffer | undefined;
    try {
      value = this.dbs.index.getBinaryFast(k);
    } catch (e) {
      this.unreadable(e);
    }
    if (value === undefined) return undefined;
    // lmdb's read buffer is overwritten by the next read: the key is copied out (its length is lmdb's, not the view's).
    const n = value.length;
    if (n > this.keyCopy.length) {
      this.keyCopy = Buffer.allocUnsafe(2 * n);
      this.keyViews = [];
    }
    this.keyCopy.set(value.subarray(0, n));
    return (this.keyViews[n] ??= this.keyCopy.subarray(0, n));
  }

  /** The stored bytes of a record (lmdb's shared read buffer: valid until the next read on this thread). */
  raw(group: number, ordinal: number): Buffer | undefined {
    const key = this.keyAt(group, ordinal);
    return key === undefined ? undefined : this.read(() => this.dbs.records.getBinaryFast(key as unknown as string));
  }

  /** Decodes a record; CorruptRecordError (naming its key) when it is missing or does not check. */
  image(group: number, ordinal: number, verify = true): NormalizedImage {
    const key = this.keyAt(group, ordinal);
    if (key === undefined) throw new CorruptRecordError(this.entryName(group, ordinal), 'missing from the index');
    let value: Buffer | undefined;
    try {
      value = this.dbs.records.getBinaryFast(key as unknown as string);
    } catch (e) {
      this.unreadable(e);
    }
    if (value === undefined) throw new CorruptRecordError(key.toString('utf8'), 'listed by the index but missing');
    try {
      return decodeRecord(value, { verify });
    } catch (e) {
      // The key becomes a string only here, for the error: for every record it would be made for nothing.
      if (e instanceof CorruptRecordError) throw new CorruptRecordError(key.toString('utf8'), e.reason);
      throw e;
    }
  }

  /**
   * False once a rebuild has started writing this index's slot: entries read since may belong to another index. A
   * rebuild writes the other slot first, so this stays true through one rebuild and fails from the second.
   */
  intact(): boolean {
    this.dbs.meta.resetReadTxn();
    return this.store.slotWrites(this.prep, this.meta.slot) === this.writes;
  }

  /** One group's record keys in ordinal order (copies), read a page at a time. */
  *keys(group: number): Generator<Buffer> {
    const prefix = this.entryKeys[group].subarray(0, this.entryKeys[group].length - 4);
    const count = this.counts[group];
    for (let from = 0; from < count; from += 4096) {
      const page = this.read(() => [...this.dbs.index.getRange({ start: indexKey(prefix, from), end: indexKey(prefix, Math.min(count, from + 4096)) })]);
      for (let i = 0; i < page.length; i++) {
        const { key, value } = page[i];
        if (key.readUInt32BE(key.length - 4) !== from + i) throw new CacheError(this.store.path, `preparation ${this.prep}: index entry ${SPLIT_GROUPS[group]} #${from + i} is missing`);
        yield value;
      }
      if (page.length < Math.min(count, from + 4096) - from) throw new CacheError(this.store.path, `preparation ${this.prep}: index of split ${SPLIT_GROUPS[group]} ends at ${from + page.length} of ${count} entries`);
    }
  }

  private entryName(group: number, ordinal: number): string {
    return `index ${this.prep}/${SPLIT_GROUPS[group]}/${ordinal}`;
  }

  /** An LMDB failure (a damaged page) becomes a CacheError naming the file. */
  private read<T>(get: () => T): T {
    try {
      return get();
    } catch (e) {
      this.unreadable(e);
    }
  }

  private unreadable(e: unknown): never {
    throw new CacheError(`${this.store.path}/data.mdb`, `unreadable (${(e as Error).message})`);
  }
}

const generationKey = (prep: string) => `generation/${prep}`;
const indexMetaKey = (prep: string) => `index/${prep}`;
const writesKey = (prep: string, slot: number) => `index-writes/${prep}/${slot}`;

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
  const view = asBuffer(value);
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
  const view = asBuffer(value);
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
  const start = align8(8 + asBuffer(value).readUInt32LE(4));
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
/**
 * A Buffer over the same bytes, without a new view when it is one already (a view per record per step is measurable
 * at 100,000 records/s). Callers take the length from `value.length`: lmdb's shared read buffer is longer than the
 * value it holds and says so only in that property.
 */
const asBuffer = (value: Uint8Array): Buffer => (Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.length));
const hex = (n: number) => n.toString(16).padStart(8, '0');

/** What a database that no transaction has created yet reads as, in a read-only cache. */
const EMPTY_DB = {
  get: () => undefined,
  getBinary: () => undefined,
  getBinaryFast: () => undefined,
  getKeys: () => [],
  getRange: () => [],
  resetReadTxn: () => {},
};
