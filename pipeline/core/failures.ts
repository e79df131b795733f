// The failure side channel. A stage never errors its stream for a bad item: it turns the item into a
// FailureRecord, hands it to the FailureLog it was given, and goes on with the next item.

import { Observable, type OperatorFunction, Subject, concatMap, mergeMap, EMPTY, from, defer, catchError } from 'rxjs';
import { type FailureCode, type FailureRecord, FAILURE_CODES } from '../../schemas/records.js';
import type { Gate } from './flow.js';

/** An error that knows which FailureRecord it becomes. Stages throw these for bad input. */
export class MedsslError extends Error {
  constructor(readonly code: FailureCode, readonly file: string, reason: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = 'MedsslError';
  }

  /** `medssl: FILE: reason`, the one line the command line prints. */
  get line(): string {
    return `${this.file}: ${this.message}`;
  }
}

/** An error as plain data, for a worker thread's reply: a MedsslError loses its class, and its code, when cloned. */
export interface ErrorData { code: FailureCode; file: string; reason: string }

/** What a worker sends back for anything it caught while processing `file`. */
export function errorData(e: unknown, file: string): ErrorData {
  return e instanceof MedsslError
    ? { code: e.code, file: e.file, reason: e.message }
    : { code: 'internal', file, reason: (e as Error)?.message ?? String(e) };
}

/** The MedsslError a worker's ErrorData stands for, thrown again on the calling thread. */
export function fromErrorData(d: ErrorData): MedsslError {
  return new MedsslError(d.code, d.file, d.reason);
}

/** Turns anything thrown while processing `file` into a FailureRecord. */
export function toFailure(error: unknown, file: string, stage: string, id?: string): FailureRecord {
  if (error instanceof MedsslError) {
    return { kind: 'failure', file: error.file || file, stage, code: error.code, reason: error.message, ...(id ? { id } : {}) };
  }
  const code = (error as { code?: string })?.code;
  const known = typeof code === 'string' && (FAILURE_CODES as readonly string[]).includes(code) ? (code as FailureCode) : undefined;
  const fsCode = code === 'ENOENT' ? 'not-found' : code === 'EACCES' || code === 'EISDIR' ? 'unreadable' : undefined;
  const message = error instanceof Error ? error.message : String(error);
  return { kind: 'failure', file, stage, code: known ?? fsCode ?? 'internal', reason: oneLine(message), ...(id ? { id } : {}) };
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 500);

/** Collects failure records: an Observable for live consumers, a list for reports, and optional gate release. */
export class FailureLog {
  private readonly subject = new Subject<FailureRecord>();
  readonly records: FailureRecord[] = [];
  /** Live failures (a hot stream; subscribe before running the pipeline, e.g. to write failures.jsonl). */
  readonly failures$: Observable<FailureRecord> = this.subject.asObservable();

  /** @param gate released once per failure, so failed items leave the flight. */
  constructor(private readonly gate?: Gate) {}

  record(f: FailureRecord): void {
    this.records.push(f);
    this.subject.next(f);
    this.gate?.release();
  }

  complete(): void {
    this.subject.complete();
  }

  /** Failures per code, for summaries. */
  summary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const f of this.records) out[f.code] = (out[f.code] ?? 0) + 1;
    return out;
  }
}

export interface GuardOptions<In> {
  stage: string;
  failures: FailureLog;
  /** The file an input came from, for the record. */
  fileOf: (item: In) => string;
  idOf?: (item: In) => string | undefined;
  /** Items processed at once (async work only). 1 keeps input order. */
  concurrency?: number;
}

/**
 * The stage contract in one operator: applies `fn` to each item; `fn` may return a value, a promise, an iterable
 * or an Observable of outputs (one item may become many, e.g. the frames of a file). Anything thrown or errored for
 * an item becomes a FailureRecord on `failures` and the stream goes on. With concurrency > 1 outputs keep input order
 * only per item, not across items; stages that need order use concurrency 1 or re-order by key.
 */
export function guard<In, Out>(
  fn: (item: In) => Out | Promise<Out> | Iterable<Out> | AsyncIterable<Out> | Observable<Out>,
  opts: GuardOptions<In>,
): OperatorFunction<In, Out> {
  const one = (item: In): Observable<Out> =>
    defer(() => {
      const r = fn(item);
      if (r instanceof Observable) return r;
      if (r instanceof Promise) return from(r);
      if (r != null && typeof r === 'object' && (Symbol.iterator in r || Symbol.asyncIterator in r) && !ArrayBuffer.isView(r)) {
        return from(r as Iterable<Out> | AsyncIterable<Out>);
      }
      return from([r as Out]);
    }).pipe(
      catchError((e) => {
        opts.failures.record(toFailure(e, safe(() => opts.fileOf(item), '?'), opts.stage, safe(() => opts.idOf?.(item), undefined)));
        return EMPTY;
      }),
    );
  const concurrency = opts.concurrency ?? 1;
  return concurrency === 1 ? concatMap(one) : mergeMap(one, concurrency);
}

function safe<T>(f: () => T, fallback: T): T {
  try {
    return f();
  } catch {
    return fallback;
  }
}
