// Ingest: run the deterministic part of the pipeline (the decode -> normalize operators, given as `prepare`) once per
// source and store its output in the cache. Resumable (sources whose done marker exists are skipped after hashing their bytes)
// and crash-safe (a source's records and marker share one LMDB transaction).
import crypto from 'node:crypto';
import fs from 'node:fs';
import { type OperatorFunction, concatMap, count, defer, filter, firstValueFrom, from, lastValueFrom, mergeMap, of, takeWhile } from 'rxjs';
import type { FailureRecord, NormalizedImage, SourceInput, SourceItem } from '../../schemas/records.js';
import { FailureLog, MedsslError, toFailure } from '../../pipeline/core/failures.js';
import { Gate, settle } from '../../pipeline/core/flow.js';
import { type CacheStore, type PreparationInfo, type SourceMarker, CACHE_SCHEMA_VERSION, IndexBuildSuperseded, contentKey, encodeRecord } from './store.js';

/**
 * The deterministic preparation: the operators that turn a source into its normalized frames (decode -> normalize,
 * pipeline/compose/prepare.ts prepareImages), recording bad input on `failures` as every stage does. Ingest applies them to
 * one source at a time, on a log of that source's own: the first failure ends the source, which is then remembered
 * as failed with the frames it gave before.
 */
export type Prepare = (failures: FailureLog) => OperatorFunction<SourceInput, NormalizedImage>;

/**
 * How the cache and the failure records name input files (pipeline/core/privacy.ts SourceNames: relative to their input
 * root, or hashed). Without it, files are named by the path they were read from.
 */
export interface SourceNaming {
  /** The name a done marker and a failure give a file. */
  file(path: string): string;
  /** A failure record as it is reported and remembered (file and reason named). */
  failure(f: FailureRecord): FailureRecord;
  /** The key the file's stamp is remembered under. */
  stampKey(path: string): string;
}

const asRead: SourceNaming = { file: (p) => p, failure: (f) => f, stampKey: (p) => p };

export interface Shard {
  /** 0-based index of this shard. */
  index: number;
  count: number;
}

export interface IngestProgress {
  /** Sources handled so far (prepared, skipped as done, or failed). */
  files: number;
  /** Of those, already in the cache. */
  skipped: number;
  /** Images written in this run. */
  images: number;
  /** Source bytes read in this run. */
  bytesRead: number;
  /** Sources that failed in this run (new failures) plus known failures found in the cache. */
  failures: number;
  /** Sources of other shards passed over. */
  otherShards: number;
}

export interface IngestOptions {
  sources: AsyncIterable<SourceItem> | Iterable<SourceItem>;
  prepare: Prepare;
  store: CacheStore;
  /**
   * Hash of everything that determines the prepared images (normalization config, decode options, code version):
   * the records' key prefix, and the `normalization` field of every stored image.
   */
  normalizationHash: string;
  /** Stored once per preparation so people can tell ablations apart. */
  preparation?: PreparationInfo;
  shard?: Shard;
  /** Sources prepared at once (useful when `prepare` runs in worker threads). */
  workers?: number;
  failures?: FailureLog;
  compression?: boolean;
  /** Container items (with `entry`) are handed to `prepare` without bytes: it reads the container itself. */
  passContainerBytes?: boolean;
  /** Files larger than this are failures, rejected before reading. */
  maxFileBytes?: number;
  /** A source whose encoded records exceed this is written in several transactions, marker last. */
  maxTransactionBytes?: number;
  onProgress?: (p: Readonly<IngestProgress>) => void;
  /** How markers, stamps and failure records name input files. */
  names?: SourceNaming;
  /**
   * Resume without re-reading: a file whose path, size, modification time and inode match the stamp recorded when
   * it was last ingested is taken to have the same SHA-256, so a done source is skipped after a stat, not a read.
   * Off by default: a file rewritten in place with the same size and mtime would be missed.
   */
  trustFileStamps?: boolean;
}

export interface IngestSummary extends IngestProgress {
  seconds: number;
}

/** Failure codes caused by the file itself, remembered in the cache; other failures are retried next run. */
const PERMANENT = new Set(['wrong-format', 'truncated', 'corrupt', 'too-large', 'unsupported', 'no-pixel-data', 'decode-error', 'invalid-value']);

/** Ingests `sources` into `store`. Resolves when every record is committed. */
export async function ingest(opts: IngestOptions): Promise<IngestSummary> {
  const t0 = performance.now();
  const workers = Math.max(1, opts.workers ?? 1);
  const failures = opts.failures ?? new FailureLog();
  const names = opts.names ?? asRead;
  const fail = (e: unknown, item: SourceItem, stage: string) => {
    const f = names.failure(toFailure(e, item.path, stage, item.id));
    failures.record(f);
    progress.failures++;
    return f;
  };
  const progress: IngestProgress = { files: 0, skipped: 0, images: 0, bytesRead: 0, failures: 0, otherShards: 0 };
  const report = () => opts.onProgress?.(progress);
  const files = new FileHashes(opts.maxFileBytes ?? 2 * 1024 ** 3, (n) => { progress.bytesRead += n; });
  const maxTxn = opts.maxTransactionBytes ?? 256 * 1024 ** 2;
  const prep = opts.normalizationHash;
  const store = opts.store;
  const preparation = opts.preparation ?? { schemaVersion: CACHE_SCHEMA_VERSION, config: null };
  const commits = new Set<Promise<void>>();
  const maxPendingCommits = 64;

  const one = async (item: SourceItem): Promise<void> => {
    if (item.error) {
      // The source stage would not read it (a link not followed, a FIFO): a failure now, looked at again next run.
      fail(new MedsslError(item.error.code, item.path, item.error.reason), item, 'source');
      return;
    }
    if (opts.trustFileStamps) {
      const st = await fs.promises.stat(item.path).catch(() => undefined);
      const known = st && store.stamp(names.stampKey(item.path));
      if (st && known && known.size === st.size && known.mtimeMs === st.mtimeMs && known.ino === st.ino) {
        const done = store.marker(prep, contentKey(known.sha256, item.entry));
        if (done) {
          progress.skipped++;
          if (done.failure) progress.failures++;
          return;
        }
      }
    }
    let read: FileHash;
    try {
      read = await files.get(item.path);
    } catch (e) {
      // Unreadable now (missing, permissions): a run-time failure, not remembered, so the next run tries again.
      fail(e, item, 'ingest');
      return;
    }
    const content = contentKey(read.sha256, item.entry);
    const done = store.marker(prep, content);
    if (done) {
      progress.skipped++;
      if (done.failure) progress.failures++;
      return;
    }
    const frames: number[] = [];
    let split: SourceMarker['split'];
    // Encoded records not yet written, and their frame indices.
    let pendingFrames: number[] = [];
    let pendingValues: Buffer[] = [];
    let pending = 0;
    let failure: SourceMarker['failure'];
    try {
      const input: SourceInput = item.entry && !opts.passContainerBytes ? item : { ...item, bytes: read.bytes };
      const log = new FailureLog();
      const images$ = of(input).pipe(
        opts.prepare(log),
        takeWhile(() => log.records.length === 0),
        concatMap((image) => defer(async () => {
          // Records carry the hash they are keyed by: it covers the normalization config and everything else that
          // shaped the image (decode options, preparation code version), so replayed images name their preparation.
          const value = encodeRecord(image.normalization === prep ? image : { ...image, normalization: prep }, { compression: opts.compression });
          frames.push(image.frame);
          const group = image.split ?? 'none';
          split = split === undefined || split === group ? group : 'mixed';
          pendingFrames.push(image.frame);
          pendingValues.push(value);
          pending += value.length;
          if (pending > maxTxn) {
            // Too large for one transaction: write these frames now; they stay invisible until the marker lands.
            await store.putRecords(prep, content, pendingFrames, pendingValues);
            pendingFrames = [];
            pendingValues = [];
            pending = 0;
          }
        })),
      );
      await lastValueFrom(images$, { defaultValue: undefined });
      const first = log.records[0];
      if (first) throw new MedsslError(first.code, first.file, first.reason);
    } catch (e) {
      const f = fail(e, item, 'ingest');
      if (!PERMANENT.has(f.code)) return;
      failure = { code: f.code, stage: f.stage, reason: f.reason };
    }
    const marker: SourceMarker = {
      id: item.id, file: names.file(item.path), frames, bytes: read.bytes.length, ...(failure ? { failure } : {}), ...(split ? { split } : {}),
    };
    // Not awaited here: the next sources are prepared while lmdb batches this commit with others (one sync for many
    // sources). At most `maxPendingCommits` are outstanding, which bounds the encoded bytes held in memory.
    const stamp = { path: names.stampKey(item.path), size: read.size, mtimeMs: read.mtimeMs, ino: read.ino, sha256: read.sha256 };
    const committed = store.commitSource(prep, content, marker, pendingFrames, pendingValues, preparation, stamp).then(() => {
      progress.images += frames.length;
      commits.delete(committed);
    });
    commits.add(committed);
    while (commits.size > maxPendingCommits) await Promise.race(commits);
  };

  // Bound memory: at most 2 * workers sources between the source iterator and the commit.
  const gate = new Gate({ window: 2 * workers });
  const done$ = gate.source(opts.sources).pipe(
    filter((item) => {
      if (!opts.shard || shardOf(item.id, opts.shard.count) === opts.shard.index) return true;
      progress.otherShards++;
      gate.release();
      return false;
    }),
    mergeMap((item) => defer(() => from(one(item).then(() => { progress.files++; report(); }))), workers),
    settle(gate),
    count(),
  );
  await firstValueFrom(done$);
  await Promise.all(commits);
  await store.flushed();
  // Replay reads records through the index: bring it up to date (a rerun that added nothing finds it current). Another
  // ingest into this cache that starts its build later owns the index and brings it up to date instead.
  if (store.indexState(prep).state !== 'current') await store.buildIndex(prep).catch((e: unknown) => {
    if (!(e instanceof IndexBuildSuperseded)) throw e;
  });
  report();
  return { ...progress, seconds: (performance.now() - t0) / 1000 };
}

/** The shard a source belongs to: a stable hash of its id, the same on every machine and run. */
export function shardOf(id: string, count: number): number {
  if (count <= 1) return 0;
  const h = crypto.createHash('sha256').update(id, 'utf8').digest();
  // 48 bits keep the modulo unbiased for any practical shard count.
  return (h.readUIntBE(0, 6)) % count;
}

/** Parses `I/N` (0 <= I < N). */
export function parseShard(spec: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(spec.trim());
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count)) throw new RangeError(`--shard: expected I/N with 0 <= I < N, got "${spec}"`);
  return { index, count };
}

interface FileHash {
  bytes: Uint8Array;
  sha256: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

/**
 * Reads and hashes files, remembering the last few: the entries of one container (an .npz with thousands of
 * images) arrive together, so the container is read and hashed once, not once per entry.
 */
class FileHashes {
  private readonly recent = new Map<string, Promise<FileHash>>();
  constructor(private readonly maxBytes: number, private readonly onRead: (n: number) => void) {}

  get(file: string): Promise<FileHash> {
    let p = this.recent.get(file);
    if (!p) {
      p = this.read(file);
      this.recent.set(file, p);
      p.catch(() => this.recent.delete(file));
      if (this.recent.size > 4) this.recent.delete(this.recent.keys().next().value as string);
    }
    return p;
  }

  private async read(file: string): Promise<FileHash> {
    // Non-blocking open and fstat: a FIFO must fail here, not block the read; at most the checked size is read.
    const fh = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new MedsslError('unreadable', file, 'not a regular file');
      if (st.size > this.maxBytes) throw new MedsslError('too-large', file, `file is ${st.size} bytes (limit ${this.maxBytes})`);
      const buf = Buffer.allocUnsafeSlow(st.size);
      let n = 0;
      while (n < buf.length) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      const bytes = buf.subarray(0, n);
      this.onRead(bytes.length);
      // The stamp is the stat taken before reading: a write during the read makes the next stat differ.
      return { bytes, sha256: crypto.createHash('sha256').update(bytes).digest('hex'), size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
    } finally {
      await fh.close();
    }
  }
}
