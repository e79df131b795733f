// highland bridges Node streams into and out of RxJS. highland streams are lazy and pull-based, so a walk over a
// million files or an LMDB cursor produces an entry only when the Gate asks for one.

import fs from 'node:fs';
import path from 'node:path';
import _ from 'highland';
import { Observable } from 'rxjs';

/** Files under `root` (or `root` itself), depth first, names sorted so every run lists them in the same order. */
export function walkFiles(root: string): Highland.Stream<string> {
  const stack: string[] = [path.resolve(root)];
  return _<string>((push, next) => {
    const dir = stack.pop();
    if (dir === undefined) {
      push(null, _.nil);
      return;
    }
    fs.promises.stat(dir).then(
      async (st) => {
        if (!st.isDirectory()) {
          push(null, dir);
          return next();
        }
        const names = (await fs.promises.readdir(dir)).sort().reverse();
        for (const n of names) if (!n.startsWith('.')) stack.push(path.join(dir, n));
        next();
      },
      (err) => {
        push(err);
        next();
      },
    );
  });
}

/** Pulls a highland stream one value at a time (for Gate.source). */
export async function* fromHighland<T>(stream: Highland.Stream<T>): AsyncGenerator<T> {
  for (;;) {
    const value = await new Promise<T | typeof _.nil>((resolve, reject) => {
      stream.pull((err, x) => (err ? reject(err) : resolve(x as T | typeof _.nil)));
    });
    if (_.isNil(value)) return;
    yield value as T;
  }
}

/** An Observable as a highland stream (values buffered by highland until the consumer pulls). */
export function toHighland<T>(source: Observable<T>): Highland.Stream<T> {
  return _<T>((push) => {
    source.subscribe({
      next: (v) => push(null, v),
      error: (e) => { push(e); push(null, _.nil); },
      complete: () => push(null, _.nil),
    });
  });
}

/** Writes each value as one JSON line, respecting the file stream's backpressure. Resolves with the line count. */
export function writeJsonl<T>(source: Observable<T>, file: string): Promise<number> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let count = 0;
  return new Promise((resolve, reject) => {
    const out = fs.createWriteStream(file, { flags: 'a' });
    out.on('error', reject);
    out.on('finish', () => resolve(count));
    toHighland(source)
      .map((v) => {
        count++;
        return `${JSON.stringify(v)}\n`;
      })
      .stopOnError(reject)
      .pipe(out);
  });
}

/** Reads a JSON-lines file (skipping blank lines). */
export function readJsonl<T = unknown>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);
}
