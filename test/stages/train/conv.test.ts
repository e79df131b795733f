import { describe, expect, it } from 'vitest';
import { tf } from '../../../pipeline/core/tensorflow.js';
import { conv2dSame, tapIndex } from '../../../stages/train/conv.js';
import type { Tensor, Tensor4D } from '@tensorflow/tfjs';

const maxRelDiff = (a: Float32Array, b: Float32Array) => {
  let scale = 0, diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return diff / scale;
};

describe('conv2dSame', () => {
  // Maps smaller than the kernel take the dense product; the others the direct convolution. Both must be TensorFlow's
  // conv2d 'same', forward and backward, including the odd padding pixel of stride 2.
  const cases: Array<[number, number, number, number]> = [[2, 2, 3, 1], [1, 1, 3, 1], [2, 3, 3, 1], [2, 2, 3, 2], [3, 1, 5, 2], [1, 2, 3, 2], [4, 4, 3, 1], [3, 3, 3, 2]];
  for (const [h, w, k, s] of cases) {
    it(`matches tf.conv2d 'same' on ${h}x${w} maps, ${k}x${k} kernel, stride ${s}`, () => {
      tf.tidy(() => {
        const x = tf.randomNormal([5, h, w, 6], 0, 1, 'float32', 1) as Tensor4D;
        const kernel = tf.randomNormal([k, k, 6, 7], 0, 1, 'float32', 2) as Tensor4D;
        const probe = tf.randomNormal([5, Math.ceil(h / s), Math.ceil(w / s), 7], 0, 1, 'float32', 3);
        const loss = (f: typeof conv2dSame) => (a: Tensor, b: Tensor) => tf.sum(tf.mul(f(a as Tensor4D, b as Tensor4D, s), probe));
        const ours = tf.grads(loss(conv2dSame))([x, kernel]);
        const theirs = tf.grads(loss((a, b, st) => tf.conv2d(a, b, st, 'same')))([x, kernel]);
        expect(conv2dSame(x, kernel, s).shape).toEqual(tf.conv2d(x, kernel, s, 'same').shape);
        expect(maxRelDiff(conv2dSame(x, kernel, s).dataSync() as Float32Array, tf.conv2d(x, kernel, s, 'same').dataSync() as Float32Array)).toBeLessThan(1e-5);
        expect(maxRelDiff(ours[0].dataSync() as Float32Array, theirs[0].dataSync() as Float32Array)).toBeLessThan(1e-5);
        expect(maxRelDiff(ours[1].dataSync() as Float32Array, theirs[1].dataSync() as Float32Array)).toBeLessThan(1e-5);
      });
    });
  }

  it('joins each output pixel to the inputs its kernel window covers, and to nothing else', () => {
    // 2x2 input, 3x3 kernel, stride 1: every input pixel is within every output pixel's window.
    const { index, oh, ow } = tapIndex(2, 2, 3, 3, 1);
    expect([oh, ow]).toEqual([2, 2]);
    expect([...index].filter((t) => t === 9)).toHaveLength(0);
    // Input (0,0) to output (0,0) is the centre tap; to output (1,1) the top-left tap.
    expect(index[0 * 4 + 0]).toBe(4);
    expect(index[0 * 4 + 3]).toBe(0);
    // 1x3 input, stride 2, 3x3 kernel: 1x2 outputs, one padding column on each side; output 1's window covers
    // input columns 1 and 2, not column 0.
    const t = tapIndex(1, 3, 3, 3, 2);
    expect([t.oh, t.ow]).toEqual([1, 2]);
    expect(t.index[0 * 2 + 1]).toBe(9);
  });
});
