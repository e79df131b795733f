// NIfTI-1 / NIfTI-2 volumes (single .nii, .nii.gz, or .hdr/.img pairs, gzipped or not), read with nifti-reader-js
// for the header and by hand for the voxels: on-disk order kept, byte order made little endian, sizes checked
// against the bytes present before anything is allocated.

import * as nifti from 'nifti-reader-js';
import { MedsslError } from '../../pipeline/core/failures.js';
import type { Dtype, PixelArray } from '../../schemas/records.js';
import { BYTES, CTORS, typedCopy } from './pixels.js';

/** NIfTI datatype codes (nifti1.h) this reader supports, with components per voxel for the RGB types. */
const DATATYPES: Record<number, { dtype: Dtype; components: number; name: string }> = {
  2: { dtype: 'uint8', components: 1, name: 'UINT8' },
  4: { dtype: 'int16', components: 1, name: 'INT16' },
  8: { dtype: 'int32', components: 1, name: 'INT32' },
  16: { dtype: 'float32', components: 1, name: 'FLOAT32' },
  64: { dtype: 'float64', components: 1, name: 'FLOAT64' },
  128: { dtype: 'uint8', components: 3, name: 'RGB24' },
  256: { dtype: 'int8', components: 1, name: 'INT8' },
  512: { dtype: 'uint16', components: 1, name: 'UINT16' },
  768: { dtype: 'uint32', components: 1, name: 'UINT32' },
  2304: { dtype: 'uint8', components: 4, name: 'RGBA32' },
};
const UNSUPPORTED: Record<number, string> = { 1: 'BINARY', 32: 'COMPLEX64', 1024: 'INT64', 1280: 'UINT64', 1536: 'FLOAT128', 1792: 'COMPLEX128', 2048: 'COMPLEX256' };

export interface NiftiVolume {
  version: 1 | 2;
  /** Sizes of the data axes dim[1..dim[0]] (i fastest on disk). */
  dims: number[];
  dtype: Dtype;
  /** 1, or 3/4 for RGB24/RGBA32. */
  components: number;
  /** All voxels in on-disk order, little endian. */
  data: PixelArray;
  /** pixdim[1..7]. */
  pixdim: number[];
  /** scl_slope/scl_inter with NIfTI's rule: slope 0 or not finite means no scaling (1, 0). */
  rescale: { slope: number; intercept: number };
  /** Voxel (i, j, k) to RAS+ millimetres: sform if sform_code > 0, else qform if qform_code > 0, else pixdim scaling. */
  affine: number[][];
  datatypeCode: number;
  littleEndian: boolean;
}

/** 540 for a NIfTI-2 header (sizeof_hdr in either byte order), else 348. */
function headerSize(head: Uint8Array): number {
  const dv = new DataView(head.buffer, head.byteOffset, 4);
  return dv.getInt32(0, true) === 540 || dv.getInt32(0, false) === 540 ? 540 : 348;
}

/** True when the first bytes are a NIfTI-1/2 (or ANALYZE) header: sizeof_hdr 348 or 540 in either byte order. */
export function isNiftiHeader(head: Uint8Array): boolean {
  if (head.length < 4) return false;
  const dv = new DataView(head.buffer, head.byteOffset, 4);
  const le = dv.getInt32(0, true), be = dv.getInt32(0, false);
  return le === 348 || le === 540 || be === 348 || be === 540;
}

/**
 * Parses a NIfTI header and its voxels. `header` holds the .nii (or .hdr) bytes, already gunzipped; `image` the
 * .img bytes of a pair. `maxBytes` bounds the voxel data a header may claim.
 */
export function readNifti(header: Uint8Array, image: Uint8Array | undefined, file: string, maxBytes: number): NiftiVolume {
  if (!isNiftiHeader(header)) throw new MedsslError('wrong-format', file, 'not a NIfTI file (sizeof_hdr is not 348 or 540)');
  // nifti-reader-js wants an ArrayBuffer: copy the header alone (348 or 540 bytes), never the volume behind it.
  // Extensions are not read (nothing here uses them), so a hostile extension size costs nothing either.
  const headerBytes = headerSize(header);
  const ab = header.buffer.slice(header.byteOffset, header.byteOffset + Math.min(header.byteLength, headerBytes)) as ArrayBuffer;
  if (!nifti.isNIFTI(ab, true)) {
    const size = header.length < 348 ? 'truncated' : 'unsupported';
    throw new MedsslError(size, file, size === 'truncated' ? 'file ends inside the NIfTI header' : 'ANALYZE 7.5 headers (no NIfTI magic) are not supported');
  }
  let h: nifti.NIFTI1 | nifti.NIFTI2;
  try {
    h = nifti.readHeader(ab, true);
  } catch (err) {
    throw new MedsslError('corrupt', file, `NIfTI header does not parse: ${(err as Error).message}`);
  }
  const version = h instanceof nifti.NIFTI2 ? 2 : 1;
  const ndim = h.dims[0];
  if (!Number.isInteger(ndim) || ndim < 1 || ndim > 7) throw new MedsslError('corrupt', file, `dim[0] is ${ndim}, expected 1 to 7`);
  const dims = h.dims.slice(1, ndim + 1);
  if (dims.some((d) => !Number.isInteger(d) || d < 1)) throw new MedsslError('corrupt', file, `dimensions [${dims.join(', ')}] are not all positive integers`);
  const type = DATATYPES[h.datatypeCode];
  if (!type) {
    const name = UNSUPPORTED[h.datatypeCode];
    throw new MedsslError(name ? 'unsupported' : 'corrupt', file, name ? `NIfTI datatype ${name} is not supported` : `unknown NIfTI datatype ${h.datatypeCode}`);
  }
  const voxels = dims.reduce((a, d) => a * d, 1);
  const bytes = voxels * type.components * BYTES[type.dtype];
  if (!Number.isSafeInteger(bytes) || bytes > maxBytes) {
    throw new MedsslError('too-large', file, `dimensions [${dims.join(', ')}] of ${type.name} claim ${bytes} bytes (limit ${maxBytes})`);
  }
  const source = image ?? header;
  const offset = image ? Math.max(0, Math.floor(h.vox_offset)) : Math.floor(h.vox_offset);
  if (!Number.isFinite(offset) || offset < 0 || (!image && offset < (version === 2 ? 540 : 348))) {
    throw new MedsslError('corrupt', file, `vox_offset ${h.vox_offset} is invalid`);
  }
  if (offset + bytes > source.length) {
    throw new MedsslError('truncated', file, `voxel data needs ${bytes} bytes from offset ${offset}, the file has ${Math.max(0, source.length - offset)}`);
  }
  const raw = source.subarray(offset, offset + bytes);
  // Little-endian voxels at an aligned offset (vox_offset 352 is) are a view on the file's bytes, not a copy, so a
  // volume costs its file once. RGB components are bytes: no swapping, one element per component.
  const size = BYTES[type.dtype];
  const data = type.components > 1 ? raw
    : (h.littleEndian || size === 1) && raw.byteOffset % size === 0 ? new CTORS[type.dtype](raw.buffer as ArrayBuffer, raw.byteOffset, raw.length / size)
    : typedCopy(raw, type.dtype, !h.littleEndian);
  const slope = h.scl_slope;
  const inter = h.scl_inter;
  const scaled = Number.isFinite(slope) && slope !== 0;
  const pixdim = h.pixDims.slice(1, 8);
  return {
    version, dims, dtype: type.dtype, components: type.components, data, pixdim,
    rescale: scaled ? { slope, intercept: Number.isFinite(inter) ? inter : 0 } : { slope: 1, intercept: 0 },
    affine: affineOf(h, pixdim), datatypeCode: h.datatypeCode, littleEndian: h.littleEndian,
  };
}

/** NIfTI-1 section "3D IMAGE (VOLUME) ORIENTATION AND LOCATION IN SPACE": methods 3 (sform), 2 (qform), 1. */
function affineOf(h: nifti.NIFTI1 | nifti.NIFTI2, pixdim: number[]): number[][] {
  if (h.sform_code > 0) return h.affine.map((r) => r.slice(0, 4)).slice(0, 3).concat([[0, 0, 0, 1]]);
  const [dx, dy, dz] = [pixdim[0] || 1, pixdim[1] || 1, pixdim[2] || 1];
  if (h.qform_code > 0) {
    const b = h.quatern_b, c = h.quatern_c, d = h.quatern_d;
    const a = Math.sqrt(Math.max(0, 1 - (b * b + c * c + d * d)));
    const qfac = h.pixDims[0] < 0 ? -1 : 1;
    const R = [
      [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
      [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
      [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ];
    const off = [h.qoffset_x, h.qoffset_y, h.qoffset_z];
    return [0, 1, 2].map((r) => [R[r][0] * dx, R[r][1] * dy, R[r][2] * dz * qfac, off[r]]).concat([[0, 0, 0, 1]]);
  }
  return [[dx, 0, 0, 0], [0, dy, 0, 0], [0, 0, dz, 0], [0, 0, 0, 1]];
}

export interface VolumeSlice {
  rows: number;
  cols: number;
  data: PixelArray;
  /** Voxel index of the slice's first pixel and the voxel axes along a row (cols) and down a column (rows). */
  origin: [number, number, number];
  colAxis: number;
  rowAxis: number;
}

/**
 * 2-D slices of a volume whose first three axes are (i, j, k) with i fastest, cut perpendicular to `axis`. The
 * remaining in-plane axes give cols (the lower axis) and rows (the higher); axes 4..7 are iterated outermost, so
 * frame = t * n[axis] + s.
 */
export function* sliceVolume(data: PixelArray, dims: number[], components: number, axis: 0 | 1 | 2): Generator<VolumeSlice> {
  const n = [dims[0] ?? 1, dims[1] ?? 1, dims[2] ?? 1];
  const outer = dims.slice(3).reduce((a, d) => a * d, 1);
  const [lo, hi] = ([0, 1, 2].filter((a) => a !== axis) as number[]);
  const stride = [components, n[0] * components, n[0] * n[1] * components];
  const volume = n[0] * n[1] * n[2] * components;
  const rows = n[hi], cols = n[lo];
  const Ctor = data.constructor as new (len: number) => PixelArray;
  for (let t = 0; t < outer; t++) {
    for (let s = 0; s < n[axis]; s++) {
      const base = t * volume + s * stride[axis];
      let out: PixelArray;
      if (axis === 2) out = data.slice(base, base + rows * cols * components) as PixelArray;
      else {
        out = new Ctor(rows * cols * components);
        const rs = stride[hi], cs = stride[lo];
        let o = 0;
        for (let r = 0; r < rows; r++) {
          const rowBase = base + r * rs;
          for (let c = 0; c < cols; c++) {
            const src = rowBase + c * cs;
            for (let k = 0; k < components; k++) out[o++] = data[src + k];
          }
        }
      }
      const origin: [number, number, number] = [0, 0, 0];
      origin[axis] = s;
      yield { rows, cols, data: out, origin, colAxis: lo, rowAxis: hi };
    }
  }
}

export { CTORS };
