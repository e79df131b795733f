// The embedding queue (SwAV section 4, "small batches"): the last `length` embeddings of each assigned crop, so
// Sinkhorn's equipartition runs over more samples than one batch holds. It stores embeddings, not scores: every
// step they are re-scored against the current prototypes. It is used only once full (a partly zero queue would
// put fake samples into the equipartition).
import type { Tensor2D } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';

export class EmbeddingQueue {
  /** One [length, D] block per assigned crop, newest first. */
  blocks: Tensor2D[];
  /** Rows written so far (saturates at length). */
  filled = 0;

  constructor(readonly length: number, readonly dim: number, readonly crops: number) {
    this.blocks = Array.from({ length: crops }, () => tf.zeros([length, dim]) as Tensor2D);
  }

  get full(): boolean {
    return this.filled >= this.length;
  }

  /**
   * Pushes one [B, D] block of (detached) embeddings per assigned crop; the oldest rows fall off. The fill count moves
   * with `advance` (the trainer calls it once per step, whether the step ran eagerly or as a graph).
   */
  push(embeddings: Tensor2D[]): void {
    const b = embeddings[0].shape[0];
    if (b > this.length) throw new RangeError(`queue length ${this.length} is shorter than the batch (${b})`);
    this.blocks = this.blocks.map((old, i) => {
      const next = tf.tidy(() => tf.concat([embeddings[i], tf.slice(old, [0, 0], [this.length - b, this.dim])], 0) as Tensor2D);
      old.dispose();
      return tf.keep(next);
    });
  }

  /** Counts `rows` more embeddings written (saturates at length). */
  advance(rows: number): void {
    this.filled = Math.min(this.length, this.filled + rows);
  }

  /** Scores [length, K] of every stored embedding against prototypes C [D, K], one per assigned crop. */
  scores(prototypes: Tensor2D): Tensor2D[] {
    return this.blocks.map((q) => tf.matMul(q, prototypes) as Tensor2D);
  }

  dispose(): void {
    for (const q of this.blocks) q.dispose();
  }
}
