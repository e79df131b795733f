// Backpressure for push-based RxJS: the source is pulled, not pushed.
//
// A Gate lets items into the pipeline only while fewer than `window` of them are in flight, and only while the
// consumer's queue is below its high-water mark. Items leave the flight when they reach a `settle(gate)` point
// (usually just before batching) or are turned into failure records. So memory between the source and the
// consumer is bounded by `window` items plus the consumer's queue, however slow the consumer is.
//
//   const gate = new Gate({ window: 32 });
//   const batches$ = gate.source(files).pipe(decode(), normalize(), settle(gate), toBatches(64));
//   for await (const batch of pull(batches$, { gate, highWaterMark: 2 })) await trainStep(batch);

import { Observable, type MonoTypeOperatorFunction, tap } from 'rxjs';

export interface GateOptions {
  /** Items allowed between the source and the settle point. */
  window: number;
}

export class Gate {
  readonly window: number;
  private emitted = 0;
  private settled = 0;
  private paused = false;
  private holds = 0;
  private wake: (() => void) | null = null;

  constructor(opts: GateOptions) {
    if (!(opts.window >= 1)) throw new RangeError('Gate window must be >= 1');
    this.window = opts.window;
  }

  /** Items let in (or admitted) and not yet settled. */
  get inFlight(): number {
    return this.emitted - this.settled;
  }

  private get open(): boolean {
    return !this.paused && this.holds === 0 && this.inFlight < this.window;
  }

  /**
   * Lets nothing in until the matching `unhold`. `decode({ gate })` holds the gate while a file's frame count is
   * unknown: otherwise the source would let further files in meanwhile, and each would later bring its extra frames
   * on top of a full window.
   */
  hold(): void {
    this.holds++;
  }

  unhold(): void {
    if (this.holds > 0) this.holds--;
    this.poke();
  }

  /**
   * Counts n more items in flight that did not come from the source: the extra frames of a multi-frame file or a
   * volume (`decode({ gate })` admits them as soon as the header tells how many). The source then waits for them.
   */
  admit(n: number): void {
    this.emitted += n;
  }

  /** Marks n items as done with (reached the settle point, failed, or were dropped on purpose). */
  release(n = 1): void {
    this.settled += n;
    this.poke();
  }

  /** The consumer's queue is full: stop letting items in (items already in flight continue). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.poke();
  }

  private poke(): void {
    if (this.open && this.wake) {
      const w = this.wake;
      this.wake = null;
      w();
    }
  }

  private waitOpen(): Promise<void> {
    return this.open ? Promise.resolve() : new Promise((resolve) => { this.wake = resolve; });
  }

  /** An Observable that pulls the next item from `items` only when the gate is open. */
  source<T>(items: Iterable<T> | AsyncIterable<T>): Observable<T> {
    return new Observable<T>((subscriber) => {
      let stopped = false;
      const it = Symbol.asyncIterator in items
        ? (items as AsyncIterable<T>)[Symbol.asyncIterator]()
        : (items as Iterable<T>)[Symbol.iterator]();
      (async () => {
        try {
          while (!stopped) {
            await this.waitOpen();
            if (stopped) break;
            const r = await it.next();
            if (r.done || stopped) break;
            this.emitted++;
            subscriber.next(r.value);
          }
          if (!stopped) subscriber.complete();
        } catch (e) {
          subscriber.error(e);
        }
      })();
      return () => {
        stopped = true;
        void it.return?.();
        this.poke();
      };
    });
  }
}

/** The settle point: each item passing here leaves the gate's flight. */
export function settle<T>(gate: Gate): MonoTypeOperatorFunction<T> {
  return tap(() => gate.release());
}

export interface PullOptions {
  /** Items the consumer may have waiting. */
  highWaterMark: number;
  /** Paused while the queue is at the high-water mark. */
  gate?: Gate;
}

/**
 * Consumes an Observable as an AsyncIterable with a bounded queue: the consumer takes items at its own pace, and
 * the gate stops the source while the queue is full. Ending the iteration early unsubscribes the pipeline.
 */
export async function* pull<T>(source: Observable<T>, opts: PullOptions): AsyncGenerator<T> {
  const queue: T[] = [];
  let done = false;
  let failure: { error: unknown } | null = null;
  let notify: (() => void) | null = null;
  const signal = () => {
    const n = notify;
    notify = null;
    n?.();
  };
  const subscription = source.subscribe({
    next: (v) => {
      queue.push(v);
      if (queue.length >= opts.highWaterMark) opts.gate?.pause();
      signal();
    },
    error: (e) => { failure = { error: e }; signal(); },
    complete: () => { done = true; signal(); },
  });
  try {
    for (;;) {
      if (queue.length > 0) {
        const v = queue.shift() as T;
        if (queue.length < opts.highWaterMark) opts.gate?.resume();
        yield v;
        continue;
      }
      if (failure) throw (failure as { error: unknown }).error;
      if (done) return;
      await new Promise<void>((resolve) => { notify = resolve; });
    }
  } finally {
    subscription.unsubscribe();
  }
}
