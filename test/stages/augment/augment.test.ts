import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { firstValueFrom, from, toArray, take } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { AugmentConfig } from '../../../schemas/config.js';
import type { CropSet } from '../../../schemas/records.js';
import { FailureLog } from '../../../pipeline/core/failures.js';
import { Gate, settle } from '../../../pipeline/core/flow.js';
import { random } from '../../../pipeline/core/random.js';
import { augment, cropSet } from '../../../stages/augment/augment.js';
import { CropBuffers } from '../../../stages/augment/buffers.js';
import { projectRoot } from '../../shared.js';
import { testImage } from './helpers.js';

const config = AugmentConfig.parse({ global: { count: 2, size: 28, scale: [0.4, 1] }, local: { count: 3, size: 14, scale: [0.05, 0.4] }, gamma: { p: 0.8 }, noise: { p: 0.8 } });
const images = () => Array.from({ length: 12 }, (_, i) => testImage(`img-${i}`, 40 + (i % 3) * 7, 36, 1));
const bytes = (sets: CropSet[]) => sets.map((s) => [s.id, s.sample, ...s.crops.map((c) => Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength).toString('base64'))]);

async function run(workers: number, input = images(), failures = new FailureLog()) {
  return firstValueFrom(from(input).pipe(augment({ failures, config, seed: 11, epoch: 3, workers }), toArray()));
}

describe('augment operator', () => {
  it('gives bit-identical crop sets, in arrival order, for 1 and 2 workers and the pure function', async () => {
    const one = await run(1);
    const two = await run(2);
    const inline = images().map((img, i) => cropSet(img, config, random(11), 3, i));
    expect(one.map((s) => s.id)).toEqual(images().map((i) => i.id));
    expect(one.map((s) => s.sample)).toEqual([...Array(12).keys()]);
    expect(bytes(two)).toEqual(bytes(one));
    expect(bytes(inline)).toEqual(bytes(one));
    expect(two.map((s) => s.crops.map((c) => c.params))).toEqual(inline.map((s) => s.crops.map((c) => c.params)));
  });

  it('consumes owned buffers, gives them back with retainInput, and never detaches a shared buffer', async () => {
    const consumed = images();
    const sets = await run(2, consumed);
    expect(sets).toHaveLength(12);
    consumed.forEach((img) => expect(img.data.byteLength).toBe(0));
    const input = images();
    const before = input.map((i) => i.data.slice());
    await firstValueFrom(from(input).pipe(augment({ failures: new FailureLog(), config, seed: 11, epoch: 3, workers: 2, retainInput: true }), toArray()));
    input.forEach((img, i) => expect(img.data).toEqual(before[i]));
    // A view on a larger buffer (as a cache read returns) is copied, not detached.
    const big = new Float32Array(40 * 36 * 2);
    const view = testImage('view', 40, 36);
    big.set(view.data, 40 * 36);
    const img = { ...view, data: big.subarray(40 * 36) };
    await run(1, [img]);
    expect(big.byteLength).toBe(40 * 36 * 2 * 4);
    expect(img.data.byteLength).toBe(40 * 36 * 4);
    // An image in shared memory is read in place: still attached, and its crops are the pure function's.
    const sharedImage = { ...view, data: new Float32Array(new SharedArrayBuffer(view.data.byteLength)) };
    sharedImage.data.set(view.data);
    const [set] = await run(2, [sharedImage]);
    expect(sharedImage.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Array.from(sharedImage.data)).toEqual(Array.from(view.data));
    expect(bytes([set])).toEqual(bytes([cropSet(view, config, random(11), 3, 0)]));
  });

  it('reuses released crop buffers: the same bytes as fresh ones, and few buffers in all', async () => {
    const buffers = new CropBuffers();
    const input = Array.from({ length: 40 }, (_, i) => testImage(`img-${i}`, 40 + (i % 3) * 7, 36, 1));
    const inline = input.map((img, i) => bytes([cropSet(img, config, random(11), 3, i)])[0]);
    const got: unknown[] = [];
    // A gate of 4 lets an image in only when a set has left, and each set is released as toBatches would, so
    // buffers can cycle: most tasks should carry a reused one.
    // One idle buffer larger than a set needs, recognisable by its size when a set comes back in it.
    const marked = 4 * (2 * 28 * 28 + 3 * 14 * 14) + 4096;
    buffers.release({ crops: [{ data: new Float32Array(marked / 4) }] } as unknown as CropSet);
    const sizes = new Set<number>();
    const gate = new Gate({ window: 4 });
    await new Promise<void>((resolve, reject) => {
      gate.source(input).pipe(augment({ failures: new FailureLog(), config, seed: 11, epoch: 3, workers: 2, buffers }), settle(gate)).subscribe({
        next: (set) => { got.push(bytes([set])[0]); sizes.add(set.crops[0].data.buffer.byteLength); buffers.release(set); },
        error: reject,
        complete: resolve,
      });
    });
    expect(got).toEqual(inline);
    expect(buffers.reused).toBeGreaterThanOrEqual(input.length / 2);
    expect(sizes).toContain(marked);
  });

  it('turns a bad image into a failure record and goes on with the others', async () => {
    const failures = new FailureLog();
    const input = images().slice(0, 4);
    input[1] = testImage('bad', 20, 20, 2, { renderings: 3 });
    const sets = await run(2, input, failures);
    expect(sets.map((s) => s.id)).toEqual(['img-0', 'img-2', 'img-3']);
    expect(failures.records).toHaveLength(1);
    expect(failures.records[0]).toMatchObject({ stage: 'augment', id: 'bad', file: 'bad' });
  });

  it('stops cleanly when the consumer unsubscribes early', async () => {
    const sets = await firstValueFrom(from(images()).pipe(augment({ failures: new FailureLog(), config, seed: 1, epoch: 0, workers: 2 }), take(2), toArray()));
    expect(sets).toHaveLength(2);
  });

  it('a consumer that leaves while workers are busy does not crash the process', async () => {
    // Late worker replies after the pool is destroyed must be ignored, not raised as an unhandled 'error' event.
    const script = `
      import { from, lastValueFrom, take, toArray } from 'rxjs';
      import { augment } from './dist/stages/augment/augment.js';
      import { FailureLog } from './dist/pipeline/core/failures.js';
      import { AugmentConfig } from './dist/schemas/config.js';
      const config = AugmentConfig.parse({ global: { count: 2, size: 96, scale: [0.5, 1] }, local: { count: 6, size: 48, scale: [0.1, 0.3] } });
      const image = (i) => ({ id: 'a' + i, sourceId: 'a', frame: i, modality: 'OT', height: 256, width: 256, channels: 1, data: new Float32Array(65536).fill(0.5), spacing: null, normalization: 'x' });
      for (let round = 0; round < 3; round++) {
        const sets = await lastValueFrom(from(Array.from({ length: 64 }, (_, i) => image(i))).pipe(augment({ failures: new FailureLog(), config, seed: round, epoch: 0, workers: 2 }), take(2), toArray()));
        const until = Date.now() + 200; while (Date.now() < until); // keep the main thread busy while replies arrive
        await new Promise((r) => setTimeout(r, 200));
        if (sets.length !== 2) process.exit(3);
      }
      console.log('ok');
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: projectRoot, timeout: 60_000 });
    expect(stdout.trim()).toBe('ok');
  });

  it('closes its pool: a process that runs the stage exits on its own', async () => {
    const script = `
      import { from, lastValueFrom } from 'rxjs';
      import { augment } from './dist/stages/augment/augment.js';
      import { FailureLog } from './dist/pipeline/core/failures.js';
      import { AugmentConfig } from './dist/schemas/config.js';
      const config = AugmentConfig.parse({ global: { count: 1, size: 16, scale: [0.5, 1] }, local: { count: 1, size: 8, scale: [0.1, 0.3] } });
      const img = { id: 'a', sourceId: 'a', frame: 0, modality: 'OT', height: 32, width: 32, channels: 1, data: new Float32Array(1024).fill(0.5), spacing: null, normalization: 'x' };
      const set = await lastValueFrom(from([img]).pipe(augment({ failures: new FailureLog(), config, seed: 0, epoch: 0, workers: 2 })));
      console.log(set.crops.length);
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: projectRoot, timeout: 30_000 });
    expect(stdout.trim()).toBe('2');
    expect(path.isAbsolute(projectRoot)).toBe(true);
  });
});
