// The augment stage: NormalizedImage -> CropSet (multi-crop + intensity augmentations) on a pool of worker threads.
import os from 'node:os';
import { Piscina } from 'piscina';
import { Observable, type OperatorFunction } from 'rxjs';
import type { AugmentConfig } from '../../schemas/config.js';
import type { CropSet, NormalizedImage } from '../../schemas/records.js';
import { type FailureLog, toFailure } from '../../pipeline/failures.js';
import { workerScript } from '../../pipeline/workers.js';
import type { AugmentTask, AugmentWorkerData } from './augment.worker.js';

export { multiCrop, cropSet, randomResizedBox, cropPlan, drawIntensity, renderCrop, type CropBox, type IntensityParams } from './crops.js';

export interface AugmentOptions {
  failures: FailureLog;
  config: AugmentConfig;
  seed: number;
  epoch: number;
  /** Worker threads; default config.workers, and 0 means one per core. */
  workers?: number;
}

/**
 * Emits one CropSet per image, in arrival order (CropSet.sample = arrival index within the epoch), while up to
 * `workers` images are cropped in parallel. Crops depend only on (seed, epoch, image id, crop index), never on
 * the worker count or finishing order. An image that fails becomes a FailureRecord (stage 'augment') and its slot
 * is skipped. The pool starts on subscribe and is destroyed on complete, error or unsubscribe.
 *
 * The image's pixel buffer is transferred to the worker (not copied) and transferred back when its crops are
 * done, so `image.data` is unusable while the image is in flight and valid again afterwards.
 */
export function augment(opts: AugmentOptions): OperatorFunction<NormalizedImage, CropSet> {
  const threads = resolveWorkers(opts.workers ?? opts.config.workers);
  return (source$) => new Observable<CropSet>((subscriber) => {
    const script = workerScript('./augment.worker.js', import.meta.url);
    const workerData: AugmentWorkerData = { config: opts.config, seed: opts.seed };
    const pool = new Piscina({ filename: script.filename, execArgv: script.execArgv, minThreads: threads, maxThreads: threads, workerData, idleTimeout: 60_000 });
    const finished = new Map<number, CropSet | null>();
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

    const run = (image: NormalizedImage, sample: number) => {
      const data = ownedBuffer(image.data);
      const task: AugmentTask = { image: { ...image, data }, epoch: opts.epoch, sample };
      pool.run(task, { transferList: [data.buffer as ArrayBuffer] }).then(
        (r: { set?: CropSet; input?: Float32Array } | undefined) => {
          // The buffer came back: give the caller a usable image again.
          if (r?.input) image.data = r.input;
          if (!r?.set) throw new Error('augment worker returned no crop set');
          finished.set(sample, r.set);
        },
      ).catch(
        (e: unknown) => {
          if (closed) return;
          opts.failures.record(toFailure(e, image.sourceId, 'augment', image.id));
          finished.set(sample, null);
        },
      ).finally(() => { if (!closed) drain(); });
    };

    const subscription = source$.subscribe({
      next: (image) => run(image, arrived++),
      error: (e) => subscriber.error(e),
      complete: () => { inputDone = true; drain(); },
    });
    return () => {
      closed = true;
      subscription.unsubscribe();
      pool.destroy().catch(() => { /* tasks still queued are abandoned on purpose */ });
    };
  });
}

/** The worker count for a config value: 0 means one per core. */
export function resolveWorkers(n: number): number {
  return n > 0 ? n : Math.max(1, os.availableParallelism());
}

/**
 * A Float32Array that owns its whole ArrayBuffer, so transferring it moves only this image: views on a larger
 * (or shared) buffer, such as values read from the cache, are copied first.
 */
function ownedBuffer(data: Float32Array): Float32Array {
  const whole = data.byteOffset === 0 && data.buffer instanceof ArrayBuffer && data.buffer.byteLength === data.byteLength;
  return whole ? data : data.slice();
}
