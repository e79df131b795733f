// Reader thread for replay(): opens the caches read-only (LMDB allows many concurrent readers) and the same indexes
// as its dataset, decodes the records it is asked for and transfers their arrays back, so each array is copied once,
// out of the memory map.
import { parentPort, workerData } from 'node:worker_threads';
import { CacheError, CacheStore, CorruptRecordError } from './store.js';
import { cacheOf, groupAt, ordinalOf } from './union.js';
import type { ReadReply, ReadRequest, ReaderData } from './replay.js';

const data = workerData as ReaderData;
const stores = data.caches.map((c) => CacheStore.open(c, { readOnly: true }));
const views = stores.map((s, c) => s.indexView(data.indexes[c].prep, data.indexes[c].meta, data.indexes[c].writes));

parentPort?.on('message', (req: ReadRequest | { close: true }) => {
  // Closing is a message, not terminate(): a thread killed inside an LMDB call makes the addon throw into a dying
  // isolate, which aborts the whole process. Requests are handled in order, so every read before it completes first.
  if ('close' in req) {
    void Promise.all(stores.map((s) => s.close())).finally(() => parentPort?.close());
    return;
  }
  try {
    const images: Extract<ReadReply, { images: unknown }>['images'] = [];
    const transfer: ArrayBuffer[] = [];
    for (const loc of req.locations) {
      const cache = cacheOf(loc);
      try {
        const image = views[cache].image(groupAt(loc), ordinalOf(loc), req.verify);
        images.push(image);
        transfer.push(image.data.buffer as ArrayBuffer);
      } catch (e) {
        if (!(e instanceof CorruptRecordError)) throw e;
        images.push({ corrupt: e.reason, key: e.key, cache });
      }
    }
    parentPort?.postMessage({ id: req.id, images } satisfies ReadReply, transfer);
  } catch (e) {
    const file = e instanceof CacheError ? e.file : undefined;
    const error = e instanceof CacheError ? e.reason : ((e as Error)?.message ?? String(e));
    parentPort?.postMessage({ id: req.id, error, ...(file !== undefined ? { file } : {}) } satisfies ReadReply);
  }
});
