// Crop-set buffers handed back for reuse. A crop set reaches the main thread as one large transferred buffer, and V8
// counts every such arrival against the main thread's garbage-collection limit: at hundreds of sets per second that
// means a full collection every few dozen sets. A buffer sent back to a worker and returned filled is not new memory
// to either heap, so once `toBatches` has copied a set into its batch, the set's buffer goes back to `augment` and
// carries the next image's crops.

import type { CropSet } from '../../schemas/records.js';

export class CropBuffers {
  private readonly free: ArrayBuffer[] = [];
  /** Buffers handed out for reuse so far (for tests and diagnostics). */
  reused = 0;

  /** @param keep how many idle buffers to hold at most (extra ones are left to the garbage collector). */
  constructor(private readonly keep = 256) {}

  /** A released buffer of at least `bytes`, or undefined when none is idle. */
  take(bytes: number): ArrayBuffer | undefined {
    const i = this.free.findIndex((buffer) => buffer.byteLength >= bytes);
    if (i < 0) return undefined;
    this.reused++;
    return this.free.splice(i, 1)[0];
  }

  /**
   * Takes back the buffer behind a crop set. The set's crops must not be read afterwards: the buffer will move to a
   * worker and be overwritten. Sets whose crops do not share one private buffer are ignored.
   */
  release(set: CropSet): void {
    const buffer = set.crops[0]?.data.buffer;
    if (!(buffer instanceof ArrayBuffer) || buffer.byteLength === 0) return;
    if (!set.crops.every((crop) => crop.data.buffer === buffer)) return;
    if (this.free.length < this.keep && !this.free.includes(buffer)) this.free.push(buffer);
  }

  /** Idle buffers (for tests and diagnostics). */
  get idle(): number {
    return this.free.length;
  }
}
