// The reference decodes of ../shared/data (pydicom 3 / imagecodecs / nibabel), as the corpus tests read them.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { readNpy } from '../../../stages/source/npy.js';
import type { PixelArray } from '../../../schemas/records.js';
import { sharedData } from '../../shared.js';

export interface Reference {
  rel: string;
  file: string;
  json: Record<string, any>;
  /** The decoded array's summary (DICOM: top level; NIfTI: rawArray), or undefined for header-only or failed refs. */
  array?: { shape: number[]; dtype: string; sha256: string; sha256DiskOrder?: string };
}

export function references(group: 'dicom' | 'nifti'): Reference[] {
  const root = sharedData(`reference/${group}`);
  const out: Reference[] = [];
  const walk = (dir: string) => {
    for (const n of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, n);
      if (fs.statSync(p).isDirectory()) walk(p);
      else if (n.endsWith('.json')) {
        const json = JSON.parse(fs.readFileSync(p, 'utf8'));
        const rel = path.relative(sharedData('reference'), p).slice(0, -'.json'.length);
        const array = group === 'dicom' ? (json.sha256 ? { shape: json.shape, dtype: json.dtype, sha256: json.sha256 } : undefined) : json.rawArray && json.ok ? json.rawArray : undefined;
        out.push({ rel, file: sharedData(rel), json, array });
      }
    }
  };
  walk(root);
  return out;
}

export function referenceArray(ref: Reference): PixelArray {
  const gz = fs.readFileSync(sharedData(`reference/${path.dirname(ref.rel)}/${ref.json.npy}`));
  return readNpy(zlib.gunzipSync(gz)).data;
}

export const sha256 = (a: PixelArray) => crypto.createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
