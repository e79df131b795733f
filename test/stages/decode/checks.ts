// Checks the default decode tests run on the fixture files and the corpus tests on the whole corpus.
import path from 'node:path';
import { expect } from 'vitest';
import { FailureLog, MedsslError } from '../../../pipeline/core/failures.js';
import { Gate, pull, settle } from '../../../pipeline/core/flow.js';
import { decode, decodeFile } from '../../../stages/decode/decode.js';
import { listSources } from '../../../stages/source/source.js';
import { type Reference, referenceArray, sha256 } from './reference.js';

/** Max |difference| allowed for lossy codestreams (JPEG DCT / irreversible J2K), in stored units; see README. */
const LOSSY_TOLERANCE: Record<string, number> = {};
const DEFAULT_LOSSY = { maxAbs: 1, meanAbs: 0.05 };

/**
 * Files the reference tool could not decode but medssl does (README: "Files read after all"), each mapped to the
 * reference its result must equal: pydicom stops before the pixel data of this file, a tolerant parser does not,
 * and the pixels are those of the intact file it was cut from.
 */
export const READ_AFTER_ALL: Record<string, string> = {
  'dicom/pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm': 'dicom/pydicom-data/emri_small_jpeg_2k_lossless.dcm',
};

/** Files the reference decodes that medssl rejects on purpose (README: "Unsupported"). */
const UNSUPPORTED = new Set<string>([]);

async function tryDecode(file: string) {
  try {
    return { out: await decodeFile(file) };
  } catch (err) {
    return { err };
  }
}

/** Lossy files seen, and those that matched the reference bit for bit. */
export interface LossyCount { seen: number; exact: number }

/**
 * One file against its reference: bit-exact where the reference expects an exact decode, within the lossy tolerance
 * of stages/decode/README.md otherwise, and a clean one-line MedsslError for every file the reference could not
 * decode (or decoded header-only). `refs` are the other references of the group (for READ_AFTER_ALL).
 */
export async function checkReference(ref: Reference, refs: Reference[], group: 'dicom' | 'nifti', lossy: LossyCount): Promise<void> {
  const { out, err } = await tryDecode(ref.file);
  if (!ref.array) {
    const twin = READ_AFTER_ALL[ref.rel];
    if (twin) {
      expect(err).toBeUndefined();
      expect(sha256(out!.data)).toBe(refs.find((r) => r.rel === twin)?.array?.sha256);
      return;
    }
    expect(err, 'expected a clean MedsslError').toBeInstanceOf(MedsslError);
    expect((err as MedsslError).message).not.toMatch(/\n/);
    return;
  }
  if (UNSUPPORTED.has(ref.rel)) {
    expect(err).toBeInstanceOf(MedsslError);
    expect((err as MedsslError).code).toBe('unsupported');
    return;
  }
  if (err) throw err;
  const { data, shape } = out!;
  const expectedShape = group === 'nifti' ? [...ref.array.shape.slice(0, ref.json.shape.length)].reverse().concat(ref.array.shape.slice(ref.json.shape.length)) : ref.array.shape;
  expect(shape).toEqual(expectedShape);
  expect(out!.meta.dtype ?? dtypeName(data)).toBe(ref.array.dtype);
  const exact = group === 'nifti' || ref.json.exactDecodeExpected !== false;
  const digest = sha256(data);
  if (exact) {
    expect(digest).toBe(group === 'nifti' ? ref.array.sha256DiskOrder : ref.array.sha256);
    return;
  }
  lossy.seen++;
  if (digest === ref.array.sha256) {
    lossy.exact++;
    return;
  }
  const want = referenceArray(ref);
  expect(want.length).toBe(data.length);
  let max = 0, sum = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(Number(data[i]) - Number(want[i]));
    sum += d;
    if (d > max) max = d;
  }
  const tol = LOSSY_TOLERANCE[ref.rel] ?? DEFAULT_LOSSY.maxAbs;
  expect(max, `max |diff| (mean ${sum / want.length})`).toBeLessThanOrEqual(tol);
  expect(sum / want.length).toBeLessThanOrEqual(DEFAULT_LOSSY.meanAbs * Math.max(1, tol / DEFAULT_LOSSY.maxAbs));
}

function dtypeName(a: unknown): string {
  return (a as object).constructor.name.replace('Array', '').toLowerCase();
}

/**
 * The streaming path over the folders `roots`, as the pipeline runs it (listSources -> Gate -> decode): every file
 * with a reference array yields exactly its frames (DICOM frames, NIfTI slices along k), every other file one failure
 * record; nothing else is lost or duplicated, and the gate's flight stays within the window plus one file's frames.
 */
export async function checkSourceToDecode(roots: string[], refs: Reference[]): Promise<void> {
  const gate = new Gate({ window: 8 });
  const failures = new FailureLog(gate);
  const frames = new Map<string, number>();
  // decode admits the extra frames of each file into the gate's flight; failures release theirs.
  const images$ = gate.source(listSources(roots)).pipe(decode({ failures, gate }), settle(gate));
  let peak = 0;
  for await (const img of pull(images$, { gate, highWaterMark: 4 })) {
    frames.set(img.path, (frames.get(img.path) ?? 0) + 1);
    expect(img.data.length).toBe(img.rows * img.cols * img.samples);
    peak = Math.max(peak, gate.inFlight);
  }
  // Every frame let in was accounted for, and the flight never exceeded the window plus one file's frames.
  expect(gate.inFlight).toBe(0);
  expect(peak).toBeLessThanOrEqual(8 + Math.max(...frames.values()));
  const expected = new Map<string, number>();
  const bad = new Set<string>();
  for (const ref of refs) {
    if (ref.array) {
      const shape = ref.json.shape as number[] | undefined;
      expected.set(ref.file, ref.rel.startsWith('dicom') ? ref.array.shape[0] : (shape ?? []).slice(2).reduce((a, d) => a * d, 1));
    } else bad.add(ref.file);
  }
  // The files medssl reads although pydicom does not (see checkReference): the frames of their intact twin.
  for (const [rel, twin] of Object.entries(READ_AFTER_ALL)) {
    const ref = refs.find((r) => r.rel === rel);
    if (!ref) continue;
    bad.delete(ref.file);
    expected.set(ref.file, refs.find((r) => r.rel === twin)!.array!.shape[0]);
  }
  expect(Object.fromEntries(frames)).toEqual(Object.fromEntries(expected));
  expect(new Set(failures.records.map((f) => path.resolve(f.file)))).toEqual(new Set([...bad].map((f) => path.resolve(f))));
  expect(failures.records).toHaveLength(bad.size);
  expect(failures.records.every((f) => f.stage === 'decode')).toBe(true);
}
