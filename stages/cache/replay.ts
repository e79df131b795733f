// Replay: a source stage that reads one cache, or several shard caches as one dataset, in a seeded epoch order.
// The order is a Philox permutation of the sorted record keys, so it depends only on (records, seed, epoch): the same
// cache(s) and seed give bit-identical sequences whatever the number of reader threads, and shard caches replay
// exactly like the single cache they partition.
import { Worker } from 'node:worker_threads';
import { Observable } from 'rxjs';
import type { NormalizedImage } from '../../schemas/records.js';
import { FailureLog } from '../../pipeline/failures.js';
import { random } from '../../pipeline/random.js';
import { CACHE_SCHEMA_VERSION, CacheStore, type RecordHeader, CorruptRecordError, recordKey, readHeader } from './store.js';

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
  /** Keeps records whose header passes (modality, split, label...); applied once when the dataset is opened. */
  filter?: (header: RecordHeader) => boolean;
}

export interface ReplayOptions extends EpochOptions, DatasetOptions {
  /** Cache folders; several are read as their union (a record present in two is read once). */
  caches: string[];
}

/** Random access to the records of one preparation across one or more caches, in sorted key order. */
export class CacheDataset {
  private constructor(
    readonly caches: string[],
    readonly normalization: string,
    private readonly stores: CacheStore[],
    /** Sorted record keys and, per key, the index of the cache holding it. */
    readonly keys: string[],
    readonly owners: Uint16Array,
  ) {}

  private readers: ReaderPool | undefined;

  static open(caches: string[], opts: DatasetOptions = {}): CacheDataset {
    if (caches.length === 0) throw new RangeError('replay: no cache given');
    if (caches.length > 65535) throw new RangeError('replay: at most 65535 caches');
    const stores = caches.map((c) => CacheStore.open(c, { readOnly: true }));
    try {
      const prep = opts.normalization ?? onlyPreparation(stores, caches);
      const owner = new Map<string, number>();
      stores.forEach((store, s) => {
        for (const { content, marker } of store.markers(prep)) {
          for (const frame of marker.frames) {
            const key = recordKey(prep, content, frame);
            if (!owner.has(key)) owner.set(key, s);
          }
        }
      });
      let keys = [...owner.keys()].sort();
      if (opts.filter) {
        const keep = opts.filter;
        keys = keys.filter((k) => {
          const value = stores[owner.get(k) as number].raw(k);
          return value !== undefined && keep(readHeader(value));
        });
      }
      const owners = Uint16Array.from(keys, (k) => owner.get(k) as number);
      return new CacheDataset(caches, prep, stores, keys, owners);
    } catch (e) {
      for (const s of stores) void s.close();
      throw e;
    }
  }

  get size(): number {
    return this.keys.length;
  }

  /** The i-th record in key order, decoded into its own Float32Array (one copy out of the memory map). */
  get(i: number, verify = true): NormalizedImage {
    const key = this.keys[i];
    if (key === undefined) throw new RangeError(`record ${i} out of range (size ${this.size})`);
    const image = this.stores[this.owners[i]].image(key, verify);
    if (!image) throw new CorruptRecordError(key, 'listed by its source marker but missing');
    return image;
  }

  /** Bytes of the i-th stored record (header, array and checksum), without decoding. */
  storedBytes(i: number): number {
    return this.stores[this.owners[i]].raw(this.keys[i])?.length ?? 0;
  }

  /** The epoch's order: a Fisher-Yates permutation drawn from random(seed).stream({ epoch, purpose: 'replay-order' }). */
  order(seed: number, epoch: number): Uint32Array {
    return random(seed).stream({ epoch, purpose: 'replay-order' }).permutation(this.size);
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
      for (let i = 0; i < order.length; i++) {
        const image = readOne(this, order[i], verify, opts.failures);
        if (image) yield image;
      }
      return;
    }
    if (this.readers && this.readers.size !== readers) {
      await this.readers.close();
      this.readers = undefined;
    }
    this.readers ??= new ReaderPool(this.caches, readers);
    const chunk = opts.chunk ?? Math.max(1, Math.floor(4e6 / Math.max(this.size ? this.storedBytes(order[0]) : 1, 1)));
    yield* this.readers.read(this, order, verify, chunk, opts.failures);
  }

  async close(): Promise<void> {
    await this.readers?.close();
    await Promise.all(this.stores.map((s) => s.close()));
  }
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

function readOne(dataset: CacheDataset, i: number, verify: boolean, failures?: FailureLog): NormalizedImage | undefined {
  try {
    return dataset.get(i, verify);
  } catch (e) {
    if (!failures || !(e instanceof CorruptRecordError)) throw e;
    failures.record({ kind: 'failure', file: dataset.caches[dataset.owners[i]], stage: 'replay', code: 'corrupt', reason: e.message, id: dataset.keys[i] });
    return undefined;
  }
}

/** A request to a reader thread: records as [cache index, key]. */
export interface ReadRequest {
  id: number;
  records: Array<[number, string]>;
  verify: boolean;
}
export type ReadReply = { id: number; images: Array<NormalizedImage | { corrupt: string; key: string; cache: number }> } | { id: number; error: string };

/** Reader threads, each with the caches open read-only, answering ReadRequests in the order they were sent. */
class ReaderPool {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, { resolve: (r: ReadReply) => void; reject: (e: unknown) => void }>();
  private nextId = 0;

  constructor(caches: string[], readonly size: number) {
    this.workers = Array.from({ length: size }, () => startWorker('./replay-reader.js', { caches }));
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

  async *read(dataset: CacheDataset, order: Uint32Array, verify: boolean, chunk: number, failures?: FailureLog): AsyncGenerator<NormalizedImage> {
    const chunks = Math.ceil(order.length / chunk);
    const inFlight: Array<Promise<ReadReply>> = [];
    let next = 0;
    if (this.broken) throw this.broken;
    const send = (j: number): Promise<ReadReply> => {
      const records: Array<[number, string]> = [];
      for (let p = j * chunk; p < Math.min(order.length, (j + 1) * chunk); p++) records.push([dataset.owners[order[p]], dataset.keys[order[p]]]);
      const id = this.nextId++;
      if (this.broken) return Promise.reject(this.broken);
      const promise = new Promise<ReadReply>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
      promise.catch(() => {}); // observed when awaited in order below
      this.workers[j % this.size].postMessage({ id, records, verify } satisfies ReadRequest);
      return promise;
    };
    try {
      while (next < Math.min(chunks, 2 * this.size)) inFlight.push(send(next++));
      for (let j = 0; j < chunks; j++) {
        const reply = await (inFlight.shift() as Promise<ReadReply>);
        if (next < chunks) inFlight.push(send(next++));
        if ('error' in reply) throw new Error(`replay reader: ${reply.error}`);
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

/**
 * Starts a worker module next to this file. From the compiled .js it is a plain worker; from the .ts sources (tests)
 * a small bootstrap registers tsx first, because `--import tsx` in a Worker's execArgv does not reach the worker's
 * module loader on Node 20.
 */
function startWorker(relative: string, workerData: unknown): Worker {
  const fromTs = import.meta.url.endsWith('.ts');
  const url = new URL(relative.replace(/\.js$/, fromTs ? '.ts' : '.js'), import.meta.url);
  if (!fromTs) return new Worker(url, { workerData });
  const boot = `import('tsx/esm/api').then((api) => { api.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

function onlyPreparation(stores: CacheStore[], caches: string[]): string {
  const all = new Set<string>();
  for (const s of stores) for (const p of s.preparationHashes().keys()) all.add(p);
  if (all.size === 1) return [...all][0];
  if (all.size === 0) throw new RangeError(`replay: ${caches.join(', ')}: no ingested records (of cache schema v${CACHE_SCHEMA_VERSION}) in these caches`);
  throw new RangeError(`replay: the caches hold ${all.size} preparations (${[...all].join(', ')}): choose one with normalization`);
}


