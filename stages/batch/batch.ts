// The batch stage: CropSet -> Batch, stacking crop v of every set into view v. Between augment and train; it hands
// each set's buffer back to augment's pool (CropBuffers) once stacked.
import { Observable, type OperatorFunction } from 'rxjs';
import type { Batch, CropSet } from '../../schemas/records.js';
import type { CropBuffers } from '../augment/buffers.js';

export interface BatchOptions {
  batchSize: number;
  /** Label columns; 0 (default) omits labels. Sets without a label get a zero row and labelMask 0. */
  numLabels?: number;
  /** Drop a final batch smaller than batchSize (at the end of an epoch or of the stream). Default false. */
  dropLast?: boolean;
  /**
   * 'none' (default): batches in arrival order. 'modality': batches for uni-modal clustering, equal shares of each
   * modality seen so far (see composeStratified).
   */
  stratify?: 'none' | 'modality';
  /** 'modality' only: sets buffered before a batch is emitted anyway, with what is there. Default 4 x batchSize. */
  maxBuffered?: number;
  /**
   * Where to hand back each set's buffer once its batch is stacked (or the set dropped), for `augment` to reuse: the
   * same CropBuffers given to `augment({ buffers })`. Only for sets nothing else reads afterwards.
   */
  buffers?: CropBuffers;
}

/**
 * Groups crop sets into batches of `batchSize`. A batch never spans two epochs: when the epoch changes, the sets
 * buffered so far are emitted first (or dropped with dropLast). `step` counts the batches of one subscription from 0.
 * Errors if the sets of a batch have different crop layouts (sizes, kinds or channels), which is a config mistake.
 */
export function toBatches(opts: BatchOptions): OperatorFunction<CropSet, Batch> {
  if (!(Number.isInteger(opts.batchSize) && opts.batchSize > 0)) throw new RangeError(`batchSize must be a positive integer, got ${opts.batchSize}`);
  const numLabels = opts.numLabels ?? 0;
  const stratified = opts.stratify === 'modality';
  const maxBuffered = opts.maxBuffered ?? 4 * opts.batchSize;
  return (source$) => new Observable<Batch>((subscriber) => {
    let step = 0;
    let epoch: number | null = null;
    const buffer: CropSet[] = [];
    const strata = new Map<string, CropSet[]>();
    let buffered = 0, rotation = 0;

    const emit = (sets: CropSet[]) => {
      if (sets.length > 0 && !(opts.dropLast && sets.length < opts.batchSize)) {
        try {
          subscriber.next(stackBatch(sets, step++, numLabels));
        } catch (e) {
          subscriber.error(e);
        }
      }
      // The batch holds copies: the sets' buffers can carry new crops.
      if (opts.buffers) for (const set of sets) opts.buffers.release(set);
    };
    const flush = () => {
      if (stratified) {
        while (buffered > 0) {
          const sets = composeStratified(strata, opts.batchSize, rotation++, true);
          buffered -= sets.length;
          emit(sets);
        }
      } else {
        emit(buffer.splice(0));
      }
    };

    return source$.subscribe({
      next: (set) => {
        if (epoch !== null && set.epoch !== epoch) flush();
        epoch = set.epoch;
        if (!stratified) {
          buffer.push(set);
          if (buffer.length === opts.batchSize) emit(buffer.splice(0));
          return;
        }
        let queue = strata.get(set.modality);
        if (!queue) strata.set(set.modality, (queue = []));
        queue.push(set);
        buffered++;
        const share = Math.ceil(opts.batchSize / strata.size);
        const ready = [...strata.values()].every((q) => q.length >= share);
        if ((ready && buffered >= opts.batchSize) || buffered >= maxBuffered) {
          const sets = composeStratified(strata, opts.batchSize, rotation++, false);
          buffered -= sets.length;
          emit(sets);
        }
      },
      error: (e) => subscriber.error(e),
      complete: () => { flush(); subscriber.complete(); },
    });
  });
}

/**
 * One stratified batch: modalities in order of first appearance, rotated by `rotation` so the remainder of
 * batchSize / modalities goes to each modality in turn; round-robin one set per modality until the batch is full
 * (a modality with an empty queue is skipped, its places go to the others). Rows are grouped by modality in the
 * batch, so each modality is one contiguous block. Takes sets out of `strata`.
 */
export function composeStratified(strata: Map<string, CropSet[]>, batchSize: number, rotation: number, partial: boolean): CropSet[] {
  const names = [...strata.keys()];
  const order = names.map((_, i) => names[(i + rotation) % names.length]);
  const take = new Map<string, number>(names.map((n) => [n, 0]));
  let total = 0;
  for (let progress = true; total < batchSize && progress;) {
    progress = false;
    for (const name of order) {
      if (total === batchSize) break;
      if ((take.get(name) as number) < (strata.get(name) as CropSet[]).length) {
        take.set(name, (take.get(name) as number) + 1);
        total++;
        progress = true;
      }
    }
  }
  if (!partial && total < batchSize) return [];
  const out: CropSet[] = [];
  for (const name of names) out.push(...(strata.get(name) as CropSet[]).splice(0, take.get(name)));
  return out;
}

/** Stacks sets into a Batch: views[v].data = concat of crop v of every set, labels and mask per row. */
export function stackBatch(sets: CropSet[], step: number, numLabels: number): Batch {
  const first = sets[0];
  const views = first.crops.map((crop, v) => {
    const per = crop.size * crop.size * crop.channels;
    const data = new Float32Array(sets.length * per);
    sets.forEach((set, row) => {
      const c = set.crops[v];
      if (!c || c.size !== crop.size || c.channels !== crop.channels || c.kind !== crop.kind || set.crops.length !== first.crops.length) {
        throw new RangeError(`crop set ${set.id} has a different crop layout from ${first.id} (view ${v})`);
      }
      data.set(c.data, row * per);
    });
    return { kind: crop.kind, size: crop.size, channels: crop.channels, data };
  });
  const batch: Batch = {
    epoch: first.epoch, step, ids: sets.map((s) => s.id), modalities: sets.map((s) => s.modality), views, numLabels,
  };
  if (numLabels > 0) {
    const labels = new Float32Array(sets.length * numLabels);
    const labelMask = new Uint8Array(sets.length);
    sets.forEach((s, row) => {
      if (!s.label) return;
      if (s.label.length !== numLabels) throw new RangeError(`crop set ${s.id} has ${s.label.length} labels, expected ${numLabels}`);
      labels.set(s.label, row * numLabels);
      labelMask[row] = 1;
    });
    batch.labels = labels;
    batch.labelMask = labelMask;
  }
  return batch;
}
