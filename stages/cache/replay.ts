// Replay: a source stage that reads one cache, or several shard caches as one dataset, in a seeded epoch order.
// Records are found through each cache's ordinal index (ordinal-index.ts), so opening a dataset reads a few meta
// entries, not every key, and an epoch's order is a permutation computed per position (IndexShuffle), not an array:
// memory does not grow with the number of records (a union of caches keeps a few bits per record, union.ts). The
// order depends only on (records, seed, epoch): the same cache(s) and seed give bit-identical sequences whatever the
// number of reader threads, and shard caches replay exactly like the single cache they partition.
import type { Worker } from 'node:worker_threads';
import { Observable } from 'rxjs';
import type { NormalizedImage } from '../../schemas/records.js';
import { FailureLog } from '../../pipeline/core/failures.js';
import { startWorker } from '../../pipeline/core/workers.js';
import { type IndexShuffle, random } from '../../pipeline/core/random.js';
import { CACHE_SCHEMA_VERSION, CacheError, CacheStore, type IndexView, type RecordHeader, CorruptRecordError, readHeader } from './store.js';
import { type IndexMeta, SPLIT_GROUPS, type SplitGroup } from './ordinal-index.js';
import { BitSelect, FilteredSpace, GroupSpace, type Location, MergeMap, type RankSpace, UnionSpace, cacheOf, groupAt, ordinalOf } from './union.js';

export interface EpochOptions {
  seed: number;
  epoch: number;
  /** Threads reading and decoding records; 1 reads on the calling thread. The output is the same for any value. */
  readers?: number;
  /** Check each record's CRC-32 while reading (default true; about 3 GB/s). */
  verify?: boolean;
  /** With a FailureLog, corrupt records become failure records and are skipped; without, replay throws. */
  failures?: FailureLog;
  /** Records per request to a reader thread (default: about 4 MB of records, at least 1). */
  chunk?: number;
}

export interface DatasetOptions {
  /** Preparation hash to replay; may be omitted when the caches hold exactly one. */
  normalization?: string;
  /**
   * Split groups to replay ('none': records without a split), default all. Each group has its own ordinals in the
   * index, so this costs nothing at open, unlike `filter`.
   */
  splits?: readonly SplitGroup[];
  /**
   * Keeps records whose header passes (modality, label...). Applied once when the dataset is opened, by reading every
   * record's header (time proportional to the records) into a bitmap (one bit per record). Prefer `splits` for splits.
   */
  filter?: (header: RecordHeader) => boolean;
}

export interface ReplayOptions extends EpochOptions, DatasetOptions {
  /** Cache folders; several are read as their union (a record present in two is read once). */
  caches: string[];
}

/** How often (in records) an epoch checks that no rebuild has started writing the index it reads. */
const CHECK_EVERY = 4096;

/**
 * Random access to the records of one preparation across one or more caches. Record i is the i-th in canonical
 * order: split groups in SPLIT_GROUPS order, and within a group source keys, then frames (a union merges its caches
 * in that order and reads a record present in several from the first).
 */
export class CacheDataset {
  private constructor(
    readonly caches: string[],
    readonly normalization: string,
    private readonly stores: CacheStore[],
    private readonly views: IndexView[],
    private readonly space: RankSpace,
  ) {}

  private readers: ReaderPool | undefined;

  static open(caches: string[], opts: DatasetOptions = {}): CacheDataset {
    if (caches.length === 0) throw new RangeError('replay: no cache given');
    if (caches.length > 32768) throw new RangeError('replay: at most 32768 caches');
    const stores: CacheStore[] = [];
    try {
      for (const c of caches) stores.push(CacheStore.open(c, { readOnly: true }));
      const prep = opts.normalization ?? onlyPreparation(stores, caches);
      const views = stores.map((s) => s.openIndex(prep));
      const groups = selectGroups(opts.splits);
      let space: RankSpace;
      if (views.length === 1) {
        space = new GroupSpace(groups, views[0].counts);
      } else {
        // A union is merged once, here: one pass over the caches' index entries, a few bits kept per record.
        const maps = groups.map((g) => MergeMap.build(views.map((v) => v.keys(g)), views.map((v) => v.counts[g]), (c, reason) => {
          throw new CacheError(caches[c], `preparation ${prep}, split ${SPLIT_GROUPS[g]}: ${reason}`);
        }));
        space = new UnionSpace(groups, maps);
      }
      if (opts.filter) {
        const keep = opts.filter;
        const base = space;
        space = new FilteredSpace(base, BitSelect.build(base.size, (r) => {
          const loc = base.locate(r);
          const value = views[cacheOf(loc)].raw(groupAt(loc), ordinalOf(loc));
          if (value === undefined) return true; // kept, so that the epoch reports it
          let header: RecordHeader;
          try {
            header = readHeader(value);
          } catch {
            return true;
          }
          return keep(header);
        }));
      }
      return new CacheDataset(caches, prep, stores, views, space);
    } catch (e) {
      for (const s of stores) void s.close();
      throw e;
    }
  }

  get size(): number {
    return this.space.size;
  }

  /** Where record i is: its cache, split group and ordinal (union.ts Location). */
  locate(i: number): Location {
    if (!(i >= 0 && i < this.size) || !Number.isInteger(i)) throw new RangeError(`record ${i} out of range (size ${this.size})`);
    return this.space.locate(i);
  }

  /** The i-th record in canonical order, decoded into its own Float32Array (one copy out of the memory map). */
  get(i: number, verify = true): NormalizedImage {
    const loc = this.locate(i);
    return this.views[cacheOf(loc)].image(groupAt(loc), ordinalOf(loc), verify);
  }

  /** The i-th record's header (modality, split, label...) without its pixels; undefined when it cannot be read. */
  header(i: number): RecordHeader | undefined {
    const loc = this.locate(i);
    const value = this.views[cacheOf(loc)].raw(groupAt(loc), ordinalOf(loc));
    if (value === undefined) return undefined;
    try {
      return readHeader(value);
    } catch {
      return undefined;
    }
  }

  /** Bytes of the i-th stored record (header, array and checksum), without decoding. */
  storedBytes(i: number): number {
    const loc = this.locate(i);
    return this.views[cacheOf(loc)].raw(groupAt(loc), ordinalOf(loc))?.length ?? 0;
  }

  /**
   * The epoch's order: position p of the epoch reads record order.at(p), a Feistel permutation keyed by
   * random(seed).stream({ epoch, purpose: 'replay-order' }) (pipeline/core/random.ts IndexShuffle). Iterable.
   */
  order(seed: number, epoch: number): IndexShuffle {
    return random(seed).stream({ epoch, purpose: 'replay-order' }).indexShuffle(this.size);
  }

  /**
   * One epoch in its seeded order. Images arrive in order; with readers > 1, worker threads (kept for the next
   * epochs until close) read up to 2 * readers chunks ahead and transfer their arrays, not copy them.
   */
  async *epoch(opts: EpochOptions): AsyncGenerator<NormalizedImage> {
    const order = this.order(opts.seed, opts.epoch);
    const readers = Math.max(1, Math.floor(opts.readers ?? 1));
    const verify = opts.verify ?? true;
    if (readers === 1) {
      for (let p = 0; p < order.length; p++) {
        if (p % CHECK_EVERY === CHECK_EVERY - 1) this.assertIntact();
        const image = this.readOne(this.space.locate(order.at(p)), verify, opts.failures);
        if (image) yield image;
      }
      this.assertIntact();
      return;
    }
    if (this.readers && this.readers.size !== readers) {
      await this.readers.close();
      this.readers = undefined;
    }
    this.readers ??= new ReaderPool(this.caches, this.views.map((v) => ({ prep: v.prep, meta: v.meta, writes: v.writes })), readers);
    const chunk = opts.chunk ?? Math.max(1, Math.floor(4e6 / Math.max(this.size ? this.storedBytes(order.at(0)) : 1, 1)));
    yield* this.readers.read(this, order, verify, chunk, opts.failures);
  }

  /** Throws when a rebuild has started writing an index this dataset reads (an ingest into a cache being replayed). */
  assertIntact(): void {
    this.views.forEach((v, c) => {
      if (!v.intact()) {
        throw new CacheError(this.caches[c], 'its index was rebuilt while this dataset read it (an ingest wrote to the cache): open the dataset again');
      }
    });
  }

  async close(): Promise<void> {
    await this.readers?.close();
    await Promise.all(this.stores.map((s) => s.close()));
  }

  private readOne(loc: Location, verify: boolean, failures?: FailureLog): NormalizedImage | undefined {
    const view = this.views[cacheOf(loc)];
    try {
      return view.image(groupAt(loc), ordinalOf(loc), verify);
    } catch (e) {
      if (!failures || !(e instanceof CorruptRecordError)) throw e;
      failures.record({ kind: 'failure', file: this.caches[cacheOf(loc)], stage: 'replay', code: 'corrupt', reason: e.message, id: e.key });
      return undefined;
    }
  }
}

/** Group codes of the chosen splits, in SPLIT_GROUPS order (default all). */
function selectGroups(splits: readonly SplitGroup[] | undefined): number[] {
  if (splits === undefined) return SPLIT_GROUPS.map((_, g) => g);
  for (const s of splits) if (!SPLIT_GROUPS.includes(s)) throw new RangeError(`replay: split ${JSON.stringify(s)} is not one of ${SPLIT_GROUPS.join(', ')}`);
  return SPLIT_GROUPS.flatMap((s, g) => (splits.includes(s) ? [g] : []));
}

/**
 * One epoch of the cached dataset in its seeded order, as an AsyncIterable (pull it through Gate.source for
 * backpressure: `gate.source(replay(opts))`). For several epochs, open a CacheDataset once and call epoch() on it.
 */
export async function* replay(opts: ReplayOptions): AsyncGenerator<NormalizedImage> {
  const dataset = CacheDataset.open(opts.caches, opts);
  try {
    yield* dataset.epoch(opts);
  } finally {
    await dataset.close();
  }
}

/** replay() as an Observable (cold: each subscription replays the epoch). */
export function replay$(opts: ReplayOptions): Observable<NormalizedImage> {
  return new Observable<NormalizedImage>((subscriber) => {
    const it = replay(opts)[Symbol.asyncIterator]();
    let stopped = false;
    (async () => {
      try {
        for (;;) {
          const r = await it.next();
          if (r.done || stopped) break;
          subscriber.next(r.value);
        }
        subscriber.complete();
      } catch (e) {
        subscriber.error(e);
      }
    })();
    return () => {
      stopped = true;
      void it.return?.(undefined);
    };
  });
}

/** What a reader thread opens: the caches, and the very index (slot and count of rebuilds) the dataset reads. */
export interface ReaderData {
  caches: string[];
  indexes: Array<{ prep: string; meta: IndexMeta; writes: number }>;
}

/** A request to a reader thread: the records' locations (union.ts), in epoch order. */
export interface ReadRequest {
  id: number;
  locations: Float64Array;
  verify: boolean;
}
export type ReadReply =
  | { id: number; images: Array<NormalizedImage | { corrupt: string; key: string; cache: number }> }
  | { id: number; error: string; file?: string };

/** Reader threads, each with the caches open read-only, answering ReadRequests in the order they were sent. */
class ReaderPool {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, { resolve: (r: ReadReply) => void; reject: (e: unknown) => void }>();
  private nextId = 0;

  constructor(caches: string[], indexes: ReaderData['indexes'], readonly size: number) {
    this.workers = Array.from({ length: size }, () => startWorker('./replay-reader.js', import.meta.url, { workerData: { caches, indexes } satisfies ReaderData }));
    for (const w of this.workers) {
      w.on('message', (r: ReadReply) => { this.waiting.get(r.id)?.resolve(r); this.waiting.delete(r.id); });
      const fail = (e: unknown) => {
        // A dead reader would leave its requests unanswered: fail them and every later epoch, never hang.
        this.broken ??= e instanceof Error ? e : new Error(String(e));
        for (const p of this.waiting.values()) p.reject(this.broken);
        this.waiting.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => { if (!this.closing) fail(new Error(`replay reader exited with code ${code}`)); });
    }
  }

  private broken: Error | undefined;
  private closing = false;

  async *read(dataset: CacheDataset, order: IndexShuffle, verify: boolean, chunk: number, failures?: FailureLog): AsyncGenerator<NormalizedImage> {
    const chunks = Math.ceil(order.length / chunk);
    const inFlight: Array<Promise<ReadReply>> = [];
    let next = 0;
    if (this.broken) throw this.broken;
    const send = (j: number): Promise<ReadReply> => {
      const from = j * chunk, to = Math.min(order.length, (j + 1) * chunk);
      const locations = new Float64Array(to - from);
      for (let p = from; p < to; p++) locations[p - from] = dataset.locate(order.at(p));
      const id = this.nextId++;
      if (this.broken) return Promise.reject(this.broken);
      const promise = new Promise<ReadReply>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
      promise.catch(() => {}); // observed when awaited in order below
      this.workers[j % this.size].postMessage({ id, locations, verify } satisfies ReadRequest, [locations.buffer]);
      return promise;
    };
    try {
      while (next < Math.min(chunks, 2 * this.size)) inFlight.push(send(next++));
      for (let j = 0; j < chunks; j++) {
        const reply = await (inFlight.shift() as Promise<ReadReply>);
        if (next < chunks) inFlight.push(send(next++));
        if ('error' in reply) throw reply.file !== undefined ? new CacheError(reply.file, reply.error) : new Error(`replay reader: ${reply.error}`);
        // Checked after the chunk was read: a rebuild that started before any of its reads is seen here.
        dataset.assertIntact();
        for (const image of reply.images) {
          if ('corrupt' in image) {
            if (!failures) throw new CorruptRecordError(image.key, image.corrupt);
            failures.record({ kind: 'failure', file: dataset.caches[image.cache], stage: 'replay', code: 'corrupt', reason: `cache record ${image.key}: ${image.corrupt}`, id: image.key });
          } else {
            yield image;
          }
        }
      }
    } finally {
      // Drain what is still in flight (an epoch left early), so the next epoch starts from quiet readers.
      await Promise.allSettled(inFlight);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    // Ask each reader to close its environments and exit (see replay-reader.ts); terminate only one that hangs.
    await Promise.all(this.workers.map(async (w) => {
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      w.postMessage({ close: true });
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), 10_000); });
      if ((await Promise.race([exited, late])) === 'late') await w.terminate();
      clearTimeout(timer);
    }));
  }
}

function onlyPreparation(stores: CacheStore[], caches: string[]): string {
  const all = new Set<string>();
  for (const s of stores) for (const p of s.preparationHashes().keys()) all.add(p);
  if (all.size === 1) return [...all][0];
  if (all.size === 0) throw new RangeError(`replay: ${caches.join(', ')}: no ingested records (of cache schema v${CACHE_SCHEMA_VERSION}) in these caches`);
  throw new RangeError(`replay: the caches hold ${all.size} preparations (${[...all].join(', ')}): choose one with normalization`);
}


