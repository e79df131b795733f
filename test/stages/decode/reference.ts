// The reference decodes (pydicom 3 / imagecodecs / nibabel) as the decode tests read them: those of the fixture files
// (fixtures/corpus/reference, one for every DICOM and NIfTI file in fixtures/data and fixtures/corpus) or those of
// the whole corpus (../shared/data/reference, corpus tests only).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { readNpy } from '../../../stages/source/npy.js';
import type { PixelArray } from '../../../schemas/records.js';
import { fixture, sample, sharedData } from '../../shared.js';

export interface Reference {
  rel: string;
  file: string;
  json: Record<string, any>;
  /** The decoded array's summary (DICOM: top level; NIfTI: rawArray), or undefined for header-only or failed refs. */
  array?: { shape: number[]; dtype: string; sha256: string; sha256DiskOrder?: string };
  /** The gzip-compressed .npy of the stored values, where there is one. */
  npy?: string;
}

function reference(group: 'dicom' | 'nifti', rel: string, file: string, jsonFile: string): Reference {
  const json = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
  const array = group === 'dicom' ? (json.sha256 ? { shape: json.shape, dtype: json.dtype, sha256: json.sha256 } : undefined) : json.rawArray && json.ok ? json.rawArray : undefined;
  const npy = json.npy ? path.join(path.dirname(jsonFile), json.npy) : undefined;
  return { rel, file, json, array, npy };
}

const sortedFiles = (dir: string): string[] =>
  fs.readdirSync(dir).sort().flatMap((n) => {
    const p = path.join(dir, n);
    return fs.statSync(p).isDirectory() ? sortedFiles(p) : [p];
  });

/**
 * Every file of `group` in fixtures/data and fixtures/corpus with its reference (a missing reference is an error):
 * NIfTI .img data files are covered by their header's reference, SOURCES/LICENSES files are not images.
 */
export function fixtureReferences(group: 'dicom' | 'nifti'): Reference[] {
  const out: Reference[] = [];
  for (const root of ['data', 'corpus']) {
    const dir = fixture(path.join(root, group));
    if (!fs.existsSync(dir)) continue;
    for (const file of sortedFiles(dir)) {
      if (/\.(md|img|img\.gz)$/.test(file)) continue;
      const rel = path.relative(fixture(root), file).split(path.sep).join('/');
      out.push(reference(group, rel, file, sample(`reference/${rel}.json`)));
    }
  }
  return out.sort((a, b) => (a.rel < b.rel ? -1 : 1));
}

/** Every reference of the corpus's `group` with its file (corpus tests only, inside a test). */
export function corpusReferences(group: 'dicom' | 'nifti'): Reference[] {
  const root = sharedData('reference');
  return sortedFiles(path.join(root, group))
    .filter((p) => p.endsWith('.json'))
    .map((p) => {
      const rel = path.relative(root, p).slice(0, -'.json'.length).split(path.sep).join('/');
      return reference(group, rel, sharedData(rel), p);
    });
}

export function referenceArray(ref: Reference): PixelArray {
  if (!ref.npy || !fs.existsSync(ref.npy)) {
    throw new Error(`${ref.rel}: not bit-exact, and its reference values are not here to compare within the tolerance (the corpus suite has them)`);
  }
  return readNpy(zlib.gunzipSync(fs.readFileSync(ref.npy))).data;
}

export const sha256 = (a: PixelArray) => crypto.createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
