// The encoder's convolution: TensorFlow's 'SAME' padding, no bias, NHWC.
//
// On feature maps smaller than the kernel (the 2 x 2 maps of ResNet-18's last stage on 56-64 px crops) a direct
// convolution spends most of its time on padding: oneDNN ran a 3x3 conv over [384, 2, 2, 512] forward and backward
// about 5 times slower than one dense matrix product of the same result (bench/train-profile.ts shows where a step's
// time goes). There the convolution is written as that product, y[n, (q, o)] = x[n, (c, p)] . W[(c, p), (q, o)],
// where W holds the kernel tap that joins input pixel p to output pixel q (zero where none does). W is itself a
// product, of a constant 0/1 tap selector and the kernel, so its gradient is one more small product (a gather's
// gradient, a segment sum, took a third of the time saved). The dense product does H x W / (kh x kw) of the direct
// convolution's arithmetic, so it is used only when that is below one. MEDSSL_DENSE_CONV=0 turns it off (the bench's
// `direct-conv` variant measures what it gives).
import type { Tensor, Tensor4D } from '@tensorflow/tfjs';
import { tf } from '../../pipeline/core/tensorflow.js';

/** conv2d(x [N, H, W, C], kernel [kh, kw, C, O], stride, 'same'): the dense product on maps smaller than the kernel. */
export function conv2dSame(x: Tensor4D, kernel: Tensor4D, stride: number): Tensor4D {
  const [n, h, w, c] = x.shape;
  const [kh, kw, , o] = kernel.shape;
  if (h * w >= kh * kw || process.env.MEDSSL_DENSE_CONV === '0') return tf.conv2d(x, kernel, stride, 'same');
  const { index, oh, ow } = tapIndex(h, w, kh, kw, stride);
  return tf.tidy(() => {
    const selector = tf.oneHot(tf.tensor1d(index, 'int32'), kh * kw + 1).slice([0, 0], [index.length, kh * kw]).reshape([1, index.length, kh * kw]);
    // [1, (p, q), taps] x [C, taps, O] -> [C, (p, q), O] = W[(c, p), (q, o)].
    const taps = tf.transpose(tf.reshape(kernel, [kh * kw, c, o]), [1, 0, 2]);
    const dense = tf.reshape(tf.matMul(tf.cast(selector, 'float32'), taps), [c * h * w, oh * ow * o]);
    const rows = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [n, c * h * w]);
    return tf.reshape(tf.matMul(rows, dense), [n, oh, ow, o]) as Tensor as Tensor4D;
  });
}

const tapIndexCache = new Map<string, { index: Int32Array; oh: number; ow: number }>();

/**
 * For each input pixel p and output pixel q (row-major, p major), the kernel tap joining them under 'SAME' padding
 * (TensorFlow's: out = ceil(in / stride), the odd padding pixel after), or kh * kw where none does.
 */
export function tapIndex(h: number, w: number, kh: number, kw: number, stride: number): { index: Int32Array; oh: number; ow: number } {
  const key = `${h},${w},${kh},${kw},${stride}`;
  let t = tapIndexCache.get(key);
  if (t) return t;
  const oh = Math.ceil(h / stride), ow = Math.ceil(w / stride);
  const top = Math.floor(Math.max((oh - 1) * stride + kh - h, 0) / 2);
  const left = Math.floor(Math.max((ow - 1) * stride + kw - w, 0) / 2);
  const index = new Int32Array(h * w * oh * ow).fill(kh * kw);
  for (let qy = 0; qy < oh; qy++) {
    for (let qx = 0; qx < ow; qx++) {
      for (let ky = 0; ky < kh; ky++) {
        for (let kx = 0; kx < kw; kx++) {
          const iy = qy * stride + ky - top, ix = qx * stride + kx - left;
          if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
          index[(iy * w + ix) * oh * ow + qy * ow + qx] = ky * kw + kx;
        }
      }
    }
  }
  t = { index, oh, ow };
  tapIndexCache.set(key, t);
  return t;
}
