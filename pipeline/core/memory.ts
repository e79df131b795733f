// Large typed arrays that are written in full right after allocation.

/**
 * A Float32Array on its own uninitialized ArrayBuffer (every value must be written by the caller): skipping the
 * zero fill of `new Float32Array(n)` saves a pass over memory. Its own buffer (not Buffer's shared pool), so it can
 * be transferred between threads.
 */
export function uninitializedFloat32(count: number): Float32Array {
  const bytes = Buffer.allocUnsafeSlow(count * 4);
  return new Float32Array(bytes.buffer, bytes.byteOffset, count);
}
