// The one way medssl starts a worker thread, for raw threads (`startWorker`) and piscina pools (spread
// `workerEntry(...)` into the pool's options) alike, from the compiled dist/ and from the TypeScript sources.
//
// From dist/ a thread runs the module's .js file as it is. From the sources (vitest, tsx) it runs ts-worker.mjs,
// which registers tsx in that thread and then imports the module's .ts file, named in the thread's argv: tsx's
// loader does not reach a worker started on a .ts file, nor through `--import tsx` in execArgv, on Node 20. The
// module's own workerData reaches it untouched either way.
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

/** What a thread runs: `filename`, with `argv` naming the TypeScript module when it runs from the sources. */
export interface WorkerEntry {
  filename: string;
  argv: string[];
}

/**
 * The worker module `relative` (written with its .js name, as imports are) next to the module at `from` (pass
 * import.meta.url): its .js from dist/, its .ts through the tsx bootstrap from the sources.
 */
export function workerEntry(relative: string, from: string): WorkerEntry {
  const fromTs = from.endsWith('.ts');
  const url = new URL(relative.replace(/\.(ts|js)$/, fromTs ? '.ts' : '.js'), from);
  if (!fromTs) return { filename: fileURLToPath(url), argv: [] };
  return { filename: fileURLToPath(new URL('./ts-worker.mjs', import.meta.url)), argv: [url.href] };
}

/** A worker thread running the module `relative` next to `from` (see workerEntry). */
export function startWorker(relative: string, from: string, options: Omit<WorkerOptions, 'argv' | 'eval'> = {}): Worker {
  const entry = workerEntry(relative, from);
  return new Worker(entry.filename, { ...options, argv: entry.argv });
}

/**
 * The array itself when it views the whole of an ArrayBuffer, else a copy that does: what crosses to another thread.
 * Transferring a view moves (detaches) its whole buffer, and cloning one copies the whole buffer, so an array that
 * views a larger buffer (a file, a volume) is cut out first.
 */
export function ownBuffer<T extends ArrayBufferView>(data: T): T {
  if (data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) return data;
  // A Buffer's slice() is a view, not a copy.
  if (Buffer.isBuffer(data)) return new Uint8Array(data) as unknown as T;
  return (data as unknown as { slice(): T }).slice();
}

/**
 * A worker's reply whose `buffers` piscina moves to the caller instead of copying (Piscina.move on a transferable
 * wrapper: piscina moves only the top-level value of a reply). Each buffer is listed once.
 */
export async function moving<T>(value: T, buffers: Iterable<ArrayBufferLike>): Promise<T> {
  const { Piscina } = await import('piscina');
  return Piscina.move({ [Piscina.transferableSymbol]: [...new Set(buffers)], [Piscina.valueSymbol]: value } as never) as T;
}
