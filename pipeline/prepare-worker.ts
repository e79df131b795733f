// Worker thread for `prepareInWorkers`: runs prepareSource off the main thread. Errors come back as data, because
// a MedsslError loses its code when cloned across threads.
import type { Config } from '../schemas/config.js';
import type { NormalizedImage, SourceItem } from '../schemas/records.js';
import { MedsslError } from './failures.js';
import { prepareSource } from './prepare.js';

export interface PrepareTask {
  item: SourceItem;
  bytes?: Uint8Array;
  config: Config;
}

export type PrepareResult = { images: NormalizedImage[] } | { error: { code: string; file: string; reason: string } };

let current: { key: string; run: ReturnType<typeof prepareSource> } | undefined;

export default async function prepareTask(task: PrepareTask): Promise<PrepareResult> {
  const key = JSON.stringify(task.config);
  if (current?.key !== key) current = { key, run: prepareSource(task.config) };
  try {
    const images: NormalizedImage[] = [];
    for await (const image of current.run(task.item, task.bytes)) images.push(image);
    return { images };
  } catch (e) {
    const error = e instanceof MedsslError
      ? { code: e.code, file: e.file, reason: e.message }
      : { code: 'internal', file: task.item.path, reason: (e as Error)?.message ?? String(e) };
    return { error };
  }
}
