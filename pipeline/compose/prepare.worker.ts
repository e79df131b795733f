// Worker thread of prepareThreads: runs prepareImages, the same decode -> normalize chain as the calling thread, on
// one source, and sends its images (their pixels moved, not copied) and failures back. One trip per source: a
// source's frames never cross threads between decode and normalize.
import { workerData } from 'node:worker_threads';
import { from, lastValueFrom, toArray } from 'rxjs';
import type { Config } from '../../schemas/config.js';
import type { FailureRecord, NormalizedImage, SourceInput } from '../../schemas/records.js';
import { FailureLog } from '../core/failures.js';
import { moving, ownBuffer } from '../core/workers.js';
import { prepareImages } from './prepare.js';

export interface PrepareTask {
  input: SourceInput;
}

/** The pool's config arrives once, as workerData (a config per task would be a new object, and new keys, each time). */
const config = (workerData as { config: Config }).config;

export interface PrepareResult {
  images: NormalizedImage[];
  failures: FailureRecord[];
}

export default async function prepareTask(task: PrepareTask): Promise<PrepareResult> {
  const failures = new FailureLog();
  const images = await lastValueFrom(from([task.input]).pipe(prepareImages(config, { failures }), toArray()));
  // An image may view a larger buffer (a volume): moving the view would move, and detach, all of it.
  for (const image of images) image.data = ownBuffer(image.data);
  return moving({ images, failures: failures.records }, images.map((i) => i.data.buffer));
}
