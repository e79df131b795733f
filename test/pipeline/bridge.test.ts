import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Observable, Subject, concat, from, map, tap, throwError } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { readJsonl, toHighland, writeJsonl } from '../../pipeline/core/bridge.js';
import { Gate, settle } from '../../pipeline/core/flow.js';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-bridge-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A sink that takes one value per turn of the event loop, far slower than the source. */
function slowSink(onValue: (v: number) => void): Writable {
  return new Writable({
    objectMode: true,
    highWaterMark: 2,
    write(v: number, _enc, done) {
      onValue(v);
      setImmediate(done);
    },
  });
}

describe('toHighland', () => {
  it('holds a gated source back while a slow consumer lags: values waiting stay bounded', async () => {
    const n = 3000;
    const gate = new Gate({ window: 4 });
    let produced = 0, consumed = 0, peak = 0;
    const source$ = gate.source(Array.from({ length: n }, (_, i) => i)).pipe(
      map((i) => i * 2),
      tap(() => produced++),
      settle(gate),
    );
    const seen: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const sink = slowSink((v) => {
        seen.push(v);
        consumed++;
        peak = Math.max(peak, produced - consumed);
      });
      sink.on('finish', resolve).on('error', reject);
      toHighland(source$, { gate, highWaterMark: 8 }).pipe(sink);
    });
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => i * 2));
    // The mark, the gate's window and the sink's own buffer; without backpressure this would be close to n.
    expect(peak).toBeLessThanOrEqual(8 + 4 + 2 + 1);
    expect(gate.inFlight).toBe(0);
  });

  it('keeps what a hot source emits before the first pull, and passes its error on after its values', async () => {
    const subject = new Subject<number>();
    const stream = toHighland(subject);
    subject.next(1);
    subject.next(2);
    subject.error(new Error('boom'));
    const got: number[] = [];
    const error = await new Promise<unknown>((resolve) => {
      stream.errors((e) => resolve(e)).each((v) => { got.push(v); }).done(() => resolve(undefined));
    });
    expect(got).toEqual([1, 2]);
    expect((error as Error)?.message).toBe('boom');
  });
});

describe('writeJsonl', () => {
  const values = Array.from({ length: 500 }, (_, i) => ({ type: 'step', step: i, loss: 1 / (i + 1), note: i % 7 ? undefined : 'é\n"' }));
  const expected = (vs: unknown[]) => vs.map((v) => `${JSON.stringify(v)}\n`).join('');

  it('writes one JSON line per value, appending by default and afresh with flags w', async () => {
    const file = path.join(tmp(), 'run', 'metrics.jsonl');
    expect(await writeJsonl(from(values), file)).toBe(values.length);
    expect(fs.readFileSync(file, 'utf8')).toBe(expected(values));
    await writeJsonl(from(values.slice(0, 3)), file);
    expect(fs.readFileSync(file, 'utf8')).toBe(expected([...values, ...values.slice(0, 3)]));
    await writeJsonl(from(values.slice(0, 2)), file, { flags: 'w' });
    expect(fs.readFileSync(file, 'utf8')).toBe(expected(values.slice(0, 2)));
  });

  it('has every line before an error on disk, complete, when its promise rejects', async () => {
    const file = path.join(tmp(), 'metrics.jsonl');
    const big = Array.from({ length: 20_000 }, (_, i) => ({ step: i, pad: 'x'.repeat(200) }));
    await expect(writeJsonl(concat(from(big), throwError(() => new Error('trainer failed'))), file)).rejects.toThrow('trainer failed');
    // Read at once, as a command that exits on the error would leave it.
    expect(fs.readFileSync(file, 'utf8')).toBe(expected(big));
    expect(readJsonl(file)).toHaveLength(big.length);
  });

  it('rejects when the file cannot be written, and lets go of the gate', async () => {
    const dir = tmp();
    const gate = new Gate({ window: 2 });
    const never = new Observable<number>((s) => { for (let i = 0; i < 100; i++) s.next(i); });
    fs.mkdirSync(path.join(dir, 'metrics.jsonl'));
    await expect(writeJsonl(never, path.join(dir, 'metrics.jsonl'), { gate, highWaterMark: 4 })).rejects.toThrow(/EISDIR/);
    expect(gate.inFlight).toBe(0);
    // Held while 100 values waited; open again once the writer gave up.
    const open = await Promise.race([
      new Promise<boolean>((resolve) => gate.source([1]).subscribe({ next: () => resolve(true) })),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 200)),
    ]);
    expect(open).toBe(true);
  });
});
