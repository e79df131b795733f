import { concatMap, delay, map, of, tap, toArray, firstValueFrom } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { FailureLog, guard } from '../../pipeline/core/failures.js';
import { Gate, pull, settle } from '../../pipeline/core/flow.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('backpressure', () => {
  it('a slow consumer keeps the pipeline bounded', async () => {
    let produced = 0;
    function* numbers() {
      for (let i = 0; i < 400; i++) {
        produced++;
        yield i;
      }
    }
    const gate = new Gate({ window: 8 });
    const stage$ = gate.source(numbers()).pipe(
      concatMap((x) => of(x * 2).pipe(delay(0))), // an async stage
      settle(gate),
    );
    let maxAhead = 0;
    let consumed = 0;
    for await (const v of pull(stage$, { gate, highWaterMark: 4 })) {
      expect(v).toBe(consumed * 2);
      consumed++;
      maxAhead = Math.max(maxAhead, produced - consumed);
      if (consumed % 50 === 0) await sleep(5); // a slow trainer step now and then
      else await sleep(0);
    }
    expect(consumed).toBe(400);
    // produced - consumed <= window + queue (+1 for the item being handed over)
    expect(maxAhead).toBeLessThanOrEqual(8 + 4 + 1);
  });

  it('admitted items (the frames of a volume) count in the flight, so expansion does not widen the window', async () => {
    const gate = new Gate({ window: 4 });
    let alive = 0, peak = 0;
    const volumes$ = gate.source(Array.from({ length: 30 }, (_, i) => i)).pipe(
      concatMap((v) => {
        gate.admit(9); // each volume becomes 10 slices
        return of(...Array.from({ length: 10 }, (_, s) => `${v}/${s}`)).pipe(delay(0));
      }),
      tap(() => { peak = Math.max(peak, ++alive); }),
      settle(gate),
    );
    let n = 0;
    for await (const _ of pull(volumes$, { gate, highWaterMark: 2 })) {
      alive--;
      n++;
      await sleep(1);
    }
    expect(n).toBe(300);
    expect(gate.inFlight).toBe(0);
    expect(peak).toBeLessThanOrEqual(4 + 10 + 2);
  });

  it('a held gate lets nothing in until every hold is released', async () => {
    const gate = new Gate({ window: 10 });
    const seen: number[] = [];
    gate.hold();
    gate.hold();
    const sub = gate.source([1, 2, 3]).subscribe((v) => seen.push(v));
    await sleep(5);
    gate.unhold();
    await sleep(5);
    expect(seen).toEqual([]);
    gate.unhold();
    await sleep(5);
    expect(seen).toEqual([1, 2, 3]);
    sub.unsubscribe();
  });

  it('without a consumer the source stops at the window', async () => {
    let produced = 0;
    const gate = new Gate({ window: 5 });
    const sub = gate.source((function* () { for (;;) { produced++; yield produced; } })()).subscribe();
    await sleep(50);
    sub.unsubscribe();
    expect(produced).toBeLessThanOrEqual(6);
  });

  it('ending the iteration early unsubscribes the source', async () => {
    let produced = 0;
    const gate = new Gate({ window: 4 });
    const src$ = gate.source((function* () { for (let i = 0; i < 1e6; i++) { produced++; yield i; } })()).pipe(settle(gate));
    for await (const v of pull(src$, { gate, highWaterMark: 2 })) if (v === 10) break;
    await sleep(20);
    expect(produced).toBeLessThan(30);
  });
});

describe('failure records', () => {
  it('a throwing item becomes a record and the rest flow on', async () => {
    const failures = new FailureLog();
    const out = await firstValueFrom(
      of('a.dcm', 'bad.dcm', 'c.dcm', 'worse.dcm', 'e.dcm').pipe(
        guard(
          (f: string) => {
            if (f === 'bad.dcm') throw new Error('truncated header');
            if (f === 'worse.dcm') return Promise.reject(Object.assign(new Error('gone'), { code: 'ENOENT' }));
            return [f.toUpperCase(), `${f}#1`];
          },
          { stage: 'decode', failures, fileOf: (f) => f },
        ),
        toArray(),
      ),
    );
    expect(out).toEqual(['A.DCM', 'a.dcm#1', 'C.DCM', 'c.dcm#1', 'E.DCM', 'e.dcm#1']);
    expect(failures.records).toEqual([
      { kind: 'failure', file: 'bad.dcm', stage: 'decode', code: 'internal', reason: 'truncated header' },
      { kind: 'failure', file: 'worse.dcm', stage: 'decode', code: 'not-found', reason: 'gone' },
    ]);
  });

  it('failures release the gate so the window does not shrink', async () => {
    const gate = new Gate({ window: 2 });
    const failures = new FailureLog(gate);
    const src$ = gate.source(Array.from({ length: 20 }, (_, i) => i)).pipe(
      guard((x: number) => { if (x % 2) throw new Error('odd'); return x; }, { stage: 't', failures, fileOf: String }),
      settle(gate),
      map((x) => x),
    );
    const got: number[] = [];
    for await (const v of pull(src$, { gate, highWaterMark: 1 })) got.push(v);
    expect(got).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    expect(failures.summary()).toEqual({ internal: 10 });
  });
});
