// highland bridges Node streams into and out of RxJS. highland streams are lazy and pull-based, so a walk over a
// million files or an LMDB cursor produces an entry only when the Gate asks for one.

import fs from 'node:fs';
import path from 'node:path';
import _ from 'highland';
import { Observable } from 'rxjs';

/** How a walk treats symbolic links: follow those whose target lies inside the root, follow all, or none. */
export type FollowLinks = 'within' | 'all' | 'none';

/** A file a walk found, or an entry it did not read, with the reason (a link not followed, a FIFO, a socket). */
export interface WalkEntry {
  path: string;
  /** Set when the entry is not read: the source stage turns it into a failure record, so nothing is skipped silently. */
  problem?: string;
}

/**
 * Regular files under `root` (or `root` itself), depth first, names sorted so every run lists them in the same
 * order; hidden entries are skipped. Each (device, inode) is visited once, so a link cycle ends and a file reached
 * twice is listed once. Only regular files are listed: a FIFO, socket or device (which would block or never end a
 * read) and a link the `links` rule does not follow come out as entries with a `problem`. An entry that cannot be
 * stat'ed (a dangling link, a permission error) comes out too, for the reader to report, and the walk goes on.
 */
export function walkFiles(root: string, opts: { links?: FollowLinks } = {}): Highland.Stream<WalkEntry> {
  const links = opts.links ?? 'within';
  const top = path.resolve(root);
  const stack: string[] = [top];
  // Directories always; files only when they can be reached twice (hard links, or through a link).
  const visited = new Set<string>();
  let realTop: Promise<string> | undefined;
  const step = async (p: string): Promise<WalkEntry | undefined> => {
    let st: fs.Stats;
    let viaLink = false;
    try {
      st = await fs.promises.lstat(p);
      if (st.isSymbolicLink()) {
        viaLink = true;
        // The root itself was named by the user: always followed.
        if (p !== top && links === 'none') return { path: p, problem: 'a symbolic link, not followed (data.followLinks: none)' };
        st = await fs.promises.stat(p);
        if (p !== top && links === 'within') {
          const inside = await fs.promises.realpath(p);
          const base = await (realTop ??= fs.promises.realpath(top));
          if (inside !== base && !inside.startsWith(base + path.sep)) {
            return { path: p, problem: 'a symbolic link to outside the input folder, not followed (data.followLinks: within)' };
          }
        }
      }
    } catch (err) {
      return { path: p, problem: `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
    const id = `${st.dev}:${st.ino}`;
    if (st.isDirectory()) {
      if (visited.has(id)) return undefined; // a cycle, or a folder reached twice
      visited.add(id);
      let names: string[];
      try {
        names = await fs.promises.readdir(p);
      } catch (err) {
        return { path: p, problem: `folder cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
      }
      names.sort().reverse();
      for (const n of names) if (!n.startsWith('.')) stack.push(path.join(p, n));
      return undefined;
    }
    if (!st.isFile()) return { path: p, problem: `not a regular file (${kindOf(st)})` };
    if (viaLink || st.nlink > 1) {
      if (visited.has(id)) return undefined;
      visited.add(id);
    }
    return { path: p };
  };
  return _<WalkEntry>((push, next) => {
    const p = stack.pop();
    if (p === undefined) {
      push(null, _.nil);
      return;
    }
    step(p).then(
      (entry) => {
        if (entry) push(null, entry);
        next();
      },
      (err) => {
        push(err);
        next();
      },
    );
  });
}

function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a file';
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
