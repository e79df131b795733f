// The augment stage: NormalizedImage -> CropSet (multi-crop + intensity augmentations) on a pool of worker threads.
import os from 'node:os';
import { Piscina } from 'piscina';
import { Observable, type OperatorFunction } from 'rxjs';
import type { AugmentConfig } from '../../schemas/config.js';
import type { CropSet, NormalizedImage } from '../../schemas/records.js';
import { type FailureLog, toFailure } from '../../pipeline/core/failures.js';
import { workerEntry } from '../../pipeline/core/workers.js';
import type { AugmentResult, AugmentTask, AugmentWorkerData } from './augment.worker.js';
import type { CropBuffers } from './buffers.js';
import { cropPlan, cropSetOf, cropSetValues, cropsFrom } from './crops.js';

export { multiCrop, cropSet, randomResizedBox, cropPlan, drawIntensity, renderCrop, type CropBox, type IntensityParams } from './crops.js';

export interface AugmentOptions {
  failures: FailureLog;
  config: AugmentConfig;
  seed: number;
  epoch: number;
  /** Worker threads; default config.workers, and 0 means one per core. */
  workers?: number;
  /**
   * Give each image its pixel buffer back when its crops are done (default false: the buffer moves to a worker and
   * stays there, so `image.data` is detached afterwards). Returning it costs a second transfer, and the receiving
   * thread's garbage collector then tracks one more large buffer per image: about a third of the pool's
   * throughput in the bench.
   */
  retainInput?: boolean;
  /**
   * Buffers to write crop sets into, shared with the consumer that releases them (`toBatches({ buffers })`). Each
   * task takes an idle buffer, if one fits, to the worker and back, so the main thread receives no new large buffer
   * per set. Without it every set arrives in a fresh buffer.
   */
  buffers?: CropBuffers;
}

/**
 * Emits one CropSet per image, in arrival order (CropSet.sample = arrival index within the epoch), while up to
 * `workers` images are cropped in parallel. Crops depend only on (seed, epoch, image id, crop index), never on
 * the worker count or finishing order. An image that fails becomes a FailureRecord (stage 'augment') and its slot
 * is skipped; the others of its task go on (a crashed worker fails its whole task: up to 4 images that arrived
 * together). The pool starts on subscribe and is destroyed on complete, error or unsubscribe.
 *
 * The image's pixel buffer is transferred to the worker (not copied). By default it is not sent back: a stream
 * stage consumes its records, and `image.data` is detached once the image is taken. With `retainInput` it returns
 * with the crops, and `image.data` is valid again when the set is emitted. An image on a SharedArrayBuffer is read
 * in place (do not change it until its set is emitted); a view on a larger private buffer is copied first, so its
 * owner's buffer is never detached.
 */
export function augment(opts: AugmentOptions): OperatorFunction<NormalizedImage, CropSet> {
  const threads = resolveWorkers(opts.workers ?? opts.config.workers);
  return (source$) => new Observable<CropSet>((subscriber) => {
    const workerData: AugmentWorkerData = { config: opts.config, seed: opts.seed };
    // recordTiming off: piscina would otherwise keep run- and wait-time histograms, main-thread work on every task.
    // Up to 4 tasks queued per worker: with one, a worker idles while its result travels back and the next task
    // travels out (a third of the time with one worker in the bench).
    const pool = new Piscina({ ...workerEntry('./augment.worker.js', import.meta.url), minThreads: threads, maxThreads: threads, workerData, idleTimeout: 60_000, recordTiming: false, concurrentTasksPerWorker: 4 });
    const plan = cropPlan(opts.config);
    const pixels = cropSetValues(opts.config, 1);
    const finished = new Map<number, CropSet | null>();
    const slots = new SharedSlots(4 * threads);
    let arrived = 0, emitted = 0, inputDone = false, closed = false;
    // A worker can still answer after the consumer left and the pool was destroyed; piscina reports that as an
    // 'error' event, which would crash the process without a listener. Before teardown a pool error ends the stream.
    pool.on('error', (e: unknown) => { if (!closed) subscriber.error(e); });

    const drain = () => {
      while (finished.has(emitted)) {
        const set = finished.get(emitted);
        finished.delete(emitted);
        emitted++;
        if (set) subscriber.next(set);
      }
      if (inputDone && emitted === arrived) subscriber.complete();
    };

    // Images that arrive in one turn of the event loop (setImmediate runs after it) travel to a worker together, and
    // their crops come back in one message: the main thread's cost per message (posting, waking, receiving) is
    // shared. A group is as large as leaves every worker two tasks of the most images the stage has held at once (with
    // one, a worker idles while its result travels back), up to MAX_GROUP. A source that yields one image per turn
    // still gets tasks of one.
    const pending: Array<{ image: NormalizedImage; sample: number }> = [];
    let scheduled = false, peak = 0;
    const groupSize = () => Math.max(1, Math.min(MAX_GROUP, Math.floor(peak / (2 * threads))));
    const flush = () => {
      scheduled = false;
      while (pending.length > 0 && !closed) dispatch(pending.splice(0, groupSize()));
    };
    const run = (image: NormalizedImage, sample: number) => {
      pending.push({ image, sample });
      peak = Math.max(peak, arrived - emitted);
      if (pending.length >= groupSize()) dispatch(pending.splice(0));
      else if (!scheduled) { scheduled = true; setImmediate(flush); }
    };

    const dispatch = (group: Array<{ image: NormalizedImage; sample: number }>) => {
      const transferList: ArrayBuffer[] = [];
      const taken: SharedArrayBuffer[] = [];
      const items = group.map(({ image }) => {
        // An image that owns its whole buffer moves to the worker. An image in shared memory is read there in place.
        // A view on someone else's private memory (a larger array, a reused read buffer) is copied into a shared
        // slot, reused once the worker is done with it: no allocation per image, and the owner's buffer is never
        // detached.
        const shared = image.data.buffer instanceof SharedArrayBuffer;
        const owned = !shared && ownsBuffer(image.data);
        const slot = owned || shared ? null : slots.take(image.data.byteLength);
        const data = slot ? new Float32Array(slot, 0, image.data.length) : image.data;
        if (slot) { data.set(image.data); taken.push(slot); }
        const output = opts.buffers?.take(4 * pixels * (image.channels / (image.renderings ?? 1)));
        if (owned) transferList.push(data.buffer as ArrayBuffer);
        if (output) transferList.push(output);
        return { image: { ...image, data }, retain: owned && (opts.retainInput ?? false), output };
      });
      const task: AugmentTask = { items, epoch: opts.epoch };
      const fail = (image: NormalizedImage, sample: number, e: unknown) => {
        opts.failures.record(toFailure(e, image.sourceId, 'augment', image.id));
        finished.set(sample, null);
      };
      pool.run(task, { transferList }).then(
        (results: AugmentResult[]) => {
          if (closed) return;
          group.forEach(({ image, sample }, i) => {
            const r = results[i];
            try {
              if (!r || 'error' in r) throw r ? r.error : new Error('augment worker returned no result');
              // The buffer came back: give the caller a usable image again.
              if (r.input) image.data = r.input;
              const channels = image.channels / (image.renderings ?? 1);
              const values = new Float32Array(r.buffer, 0, pixels * channels);
              finished.set(sample, cropSetOf(image, opts.epoch, sample, cropsFrom(values, r.params, plan, channels)));
            } catch (e) {
              fail(image, sample, e);
            }
          });
        },
        (e: unknown) => {
          if (!closed) for (const { image, sample } of group) fail(image, sample, e);
        },
      ).finally(() => {
        for (const slot of taken) slots.give(slot);
        if (!closed) drain();
      });
    };

    const subscription = source$.subscribe({
      next: (image) => run(image, arrived++),
      error: (e) => subscriber.error(e),
      complete: () => { inputDone = true; flush(); drain(); },
    });
    return () => {
      closed = true;
      subscription.unsubscribe();
      pool.destroy().catch(() => { /* tasks still queued are abandoned on purpose */ });
    };
  });
}

/**
 * Most images per worker task. In the bench, pairs brought the main thread's time per set from about 80 us to 50 us,
 * and fours to about 45 us. With the bench's window of 4 images per worker, fours left each worker one task, and it
 * idled while its result travelled back (workers busy 91% of the time, against 94% with pairs): hence groupSize.
 */
const MAX_GROUP = 4;

/** The worker count for a config value: 0 means one per core. */
export function resolveWorkers(n: number): number {
  return n > 0 ? n : Math.max(1, os.availableParallelism());
}

/** Whether the array spans its whole (non-shared) ArrayBuffer, so transferring it moves only this image. */
function ownsBuffer(data: Float32Array): boolean {
  return data.byteOffset === 0 && data.buffer instanceof ArrayBuffer && data.buffer.byteLength === data.byteLength;
}

/**
 * Shared buffers for images that arrive as views. A slot is taken for one task and given back when its result
 * arrives (the worker has copied the image out by then). At most `keep` free slots are kept; sizes follow the
 * images, rounded up to 64 KiB so slightly different sizes share slots.
 */
class SharedSlots {
  private readonly free: SharedArrayBuffer[] = [];
  constructor(private readonly keep: number) {}

  take(bytes: number): SharedArrayBuffer {
    const i = this.free.findIndex((slot) => slot.byteLength >= bytes);
    if (i >= 0) return this.free.splice(i, 1)[0];
    return new SharedArrayBuffer(Math.ceil(bytes / 65536) * 65536 || 65536);
  }

  give(slot: SharedArrayBuffer): void {
    this.free.push(slot);
    // Drop the smallest when too many are idle: they are the least likely to fit the next image.
    if (this.free.length > this.keep) this.free.sort((a, b) => a.byteLength - b.byteLength).shift();
  }
}
