// Reader thread for replay(): opens the caches read-only (LMDB allows many concurrent readers), decodes the records
// it is asked for and transfers their arrays back, so each array is copied once, out of the memory map.
import { parentPort, workerData } from 'node:worker_threads';
import { CacheStore, CorruptRecordError } from './store.js';
import type { ReadReply, ReadRequest } from './replay.js';

const stores = (workerData as { caches: string[] }).caches.map((c) => CacheStore.open(c, { readOnly: true }));

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
    for (const [cache, key] of req.records) {
      try {
        const image = stores[cache].image(key, req.verify);
        if (!image) throw new CorruptRecordError(key, 'listed by its source marker but missing');
        images.push(image);
        transfer.push(image.data.buffer as ArrayBuffer);
      } catch (e) {
        if (!(e instanceof CorruptRecordError)) throw e;
        images.push({ corrupt: e.reason, key, cache });
      }
    }
    parentPort?.postMessage({ id: req.id, images } satisfies ReadReply, transfer);
  } catch (e) {
    parentPort?.postMessage({ id: req.id, error: (e as Error)?.message ?? String(e) } satisfies ReadReply);
  }
});
