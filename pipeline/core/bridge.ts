// The one place Node streams meet the RxJS stages, through highland, whose streams are lazy and pull-based. Into
// the stages: a folder walk is a highland stream pulled one path at a time (fromHighland) by Gate.source. Out of
// them: every JSON-lines file (metrics.jsonl) is written by writeJsonl, which takes a value from the stages only when
// the file stream has room, and holds the run's gate while values wait, so a slow disk slows the source instead of
// filling memory.

import fs from 'node:fs';
import path from 'node:path';
import _ from 'highland';
import type { Observable, Subscription } from 'rxjs';
import type { Gate } from './flow.js';

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

export interface ToHighlandOptions {
  /** Values that may wait for the consumer before the gate is held (default 16). */
  highWaterMark?: number;
  /**
   * The gate the source's items come through (Gate.source): held while `highWaterMark` values wait, so no new item
   * enters the pipeline until the consumer catches up. A push source cannot be paused otherwise.
   */
  gate?: Gate;
}

/**
 * An Observable as a highland stream that hands on one value each time its consumer asks for one (a `pipe` into a
 * file stream asks again only once the file has taken the last). It subscribes at once, so a hot source (a Subject)
 * loses nothing before the first pull. Values the consumer has not taken wait in a queue; at `highWaterMark` the
 * gate is held until the queue drops below it again, which bounds the queue by the mark plus what was already in
 * flight behind the gate. An error is passed on after the values before it, then the stream ends.
 */
export function toHighland<T>(source: Observable<T>, opts: ToHighlandOptions = {}): Highland.Stream<T> {
  return boundedStream(source, opts).stream;
}

/** toHighland's stream with a stop() that unsubscribes the source and lets go of the gate. */
function boundedStream<T>(source: Observable<T>, opts: ToHighlandOptions): { stream: Highland.Stream<T>; stop: () => void } {
  const mark = Math.max(1, Math.floor(opts.highWaterMark ?? 16));
  const queue: T[] = [];
  let end: { failed: boolean; error?: unknown } | undefined;
  let wake: (() => void) | undefined;
  let held = false;
  const hold = (on: boolean) => {
    if (!opts.gate || on === held) return;
    held = on;
    if (on) opts.gate.hold();
    else opts.gate.unhold();
  };
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const subscription: Subscription = source.subscribe({
    next: (v) => {
      queue.push(v);
      if (queue.length >= mark) hold(true);
      poke();
    },
    error: (e) => { end = { failed: true, error: e }; poke(); },
    complete: () => { end = { failed: false }; poke(); },
  });
  const stream = _<T>((push, next) => {
    const give = () => {
      if (queue.length > 0) {
        push(null, queue.shift() as T);
        if (queue.length < mark) hold(false);
        next();
      } else if (end) {
        hold(false);
        if (end.failed) push(end.error as Error);
        push(null, _.nil);
      } else {
        wake = give;
      }
    };
    give();
  });
  const stop = () => {
    subscription.unsubscribe();
    queue.length = 0;
    hold(false);
  };
  return { stream, stop };
}

export interface JsonlOptions extends ToHighlandOptions {
  /** 'a' appends (a resumed run's metrics), 'w' starts the file afresh (default 'a'). */
  flags?: 'a' | 'w';
}

/**
 * Writes each value as one JSON line, through highland into a file stream: the next line is taken only once the file
 * has room (see toHighland for how that holds back a push source). Resolves with the line count once the file is
 * closed. When the source errors, every line before the error is written and the file closed before the promise
 * rejects with that error, so a process that exits right after leaves only complete lines on disk.
 */
export function writeJsonl<T>(source: Observable<T>, file: string, opts: JsonlOptions = {}): Promise<number> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let count = 0;
  let failure: { error: unknown } | undefined;
  return new Promise((resolve, reject) => {
    const out = fs.createWriteStream(file, { flags: opts.flags ?? 'a' });
    const values = boundedStream(source, opts);
    out.on('error', (e) => {
      values.stop();
      reject(e);
    });
    out.on('close', () => (failure ? reject(failure.error) : resolve(count)));
    values.stream
      .map((v) => {
        count++;
        return `${JSON.stringify(v)}\n`;
      })
      // The source's error is kept for the promise; the stream then ends, and the file with it, after the lines before.
      .errors((e) => { failure ??= { error: e }; })
      .pipe(out);
  });
}

/** Reads a JSON-lines file (skipping blank lines). */
export function readJsonl<T = unknown>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);
}
