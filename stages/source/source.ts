// The source stage: turns what the user points at (folders, files, manifests, MedMNIST .npz archives) into a
// deterministic stream of SourceItems. Formats are detected from magic bytes first and names second; nothing but
// the first bytes of a file is read here (an .npz is read whole, once, to list its images).

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { MedsslError } from '../../pipeline/core/failures.js';
import { type FollowLinks, walkFiles, fromHighland } from '../../pipeline/core/bridge.js';
import type { Format, SourceItem } from '../../schemas/records.js';
import { readNpz } from './npy.js';

export interface SourceOptions {
  /** Files larger than this are rejected (bytes); defaults to DataConfig.maxFileBytes. */
  maxFileBytes?: number;
  /** Symbolic links inside folders: follow those that stay inside the folder (default), all, or none. */
  followLinks?: FollowLinks;
}

/**
 * Lists the items under `inputs`, in order: each input in turn; folders walked depth first with sorted names.
 * Ids are paths relative to the input root (a folder's own path for folders, the file's directory for files,
 * the manifest's directory for manifest rows), so they are stable across machines. Throws MedsslError for an
 * input named explicitly that is missing or not a medical file; inside folders such files are skipped quietly.
 */
export async function* listSources(inputs: string[], opts: SourceOptions = {}): AsyncIterable<SourceItem> {
  const maxFileBytes = opts.maxFileBytes ?? 2 * 1024 ** 3;
  for (const input of inputs) {
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(input);
    } catch {
      throw new MedsslError('not-found', input, 'no such file or folder');
    }
    if (st.isDirectory()) {
      for await (const { path: file, problem } of fromHighland(walkFiles(input, { links: opts.followLinks }))) {
        const rel = toId(path.relative(path.resolve(input), file));
        if (problem) {
          yield { id: rel, path: file, error: { code: 'unreadable', reason: problem } };
          continue;
        }
        // A file that cannot be sniffed or expanded is still listed, whole: the decode stage then turns it into a
        // failure record, and the walk goes on (one bad file never ends a listing).
        let kind: Kind;
        try {
          kind = await sniff(file);
        } catch {
          yield { id: rel, path: file };
          continue;
        }
        if (kind === 'npy') {
          yield { id: rel, path: file, format: 'npy' };
          continue;
        }
        if (kind === undefined || kind === 'pair-image' || kind === 'manifest') continue;
        if (kind === 'npz') {
          let entries: SourceItem[];
          try {
            entries = [...npzItems(file, rel, maxFileBytes)];
          } catch {
            yield { id: rel, path: file, format: 'npz' };
            continue;
          }
          yield* entries;
        } else yield { id: rel, path: file, format: kind };
      }
      continue;
    }
    if (!st.isFile()) throw new MedsslError('unreadable', input, 'not a regular file or folder');
    const rel = toId(path.basename(input));
    const kind = await sniff(input);
    if (kind === 'manifest') yield* manifestItems(input, maxFileBytes);
    else if (kind === 'npz') yield* npzItems(input, rel, maxFileBytes);
    else if (kind === 'pair-image') throw new MedsslError('wrong-format', input, 'a NIfTI/ANALYZE .img file: name its .hdr instead');
    else if (kind === 'npy') yield { id: rel, path: input, format: 'npy' };
    else if (kind === undefined) throw new MedsslError('wrong-format', input, 'not a DICOM, NIfTI, .npz or manifest file');
    else yield { id: rel, path: input, format: kind };
  }
}

type Kind = Format | 'manifest' | 'pair-image' | 'npy' | undefined;

/** Reads the first bytes of `file` and decides what it is (DICM at 128, sizeof_hdr, gzip, zip, names). */
export async function sniff(file: string): Promise<Kind> {
  const lower = file.toLowerCase();
  if (lower.endsWith('.csv') || lower.endsWith('.jsonl')) return 'manifest';
  if (lower.endsWith('.npy')) return 'npy';
  if (/\.img(\.gz)?$/.test(lower)) return 'pair-image';
  let head: Buffer;
  try {
    // Non-blocking, then checked: a FIFO put where a file was would otherwise block the open or the read forever.
    const fh = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      if (!(await fh.stat()).isFile()) throw new Error('not a regular file');
      head = Buffer.alloc(512);
      const { bytesRead } = await fh.read(head, 0, 512, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new MedsslError('unreadable', file, `cannot read: ${(err as Error).message}`);
  }
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return lower.endsWith('.npz') ? 'npz' : undefined;
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    // gzip: look inside the first bytes that inflate.
    let inner: Buffer;
    try {
      inner = zlib.gunzipSync(head, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    } catch {
      inner = Buffer.alloc(0);
    }
    return detectFormat(inner, lower.replace(/\.gz$/, '')) ?? (/\.(dcm|nii|hdr)\.gz$/.test(lower) ? formatFromName(lower) : undefined);
  }
  return detectFormat(head, lower);
}

/** Format from the first bytes (and the name, for DICOM files without preamble). */
export function detectFormat(head: Uint8Array, lowerName: string): Format | undefined {
  if (head.length >= 132 && head[128] === 0x44 && head[129] === 0x49 && head[130] === 0x43 && head[131] === 0x4d) return 'dicom';
  if (head.length >= 4) {
    const dv = new DataView(head.buffer, head.byteOffset, 4);
    const le = dv.getInt32(0, true), be = dv.getInt32(0, false);
    if (le === 348 || le === 540 || be === 348 || be === 540) return 'nifti';
  }
  if (looksLikeRawDicom(head)) return 'dicom';
  // A file named like a medical image that is not one is still listed, so the decode stage reports it.
  return formatFromName(lowerName);
}

/**
 * A dataset without preamble: the first tag is group 0002 or 0008 (either byte order), as no-meta files start, or a
 * command group length (0000,0000) UL, as some ACR-NEMA files do. Group lengths are never trusted (their value
 * may claim more than the file holds; pydicom ignores them too), only the element's own 4-byte length is checked.
 */
function looksLikeRawDicom(h: Uint8Array): boolean {
  if (h.length < 8) return false;
  if (h[0] === 0 && h[1] === 0 && h[2] === 0 && h[3] === 0) {
    const implicitUL = h[4] === 4 && h[5] === 0 && h[6] === 0 && h[7] === 0;
    const explicitUL = h[4] === 0x55 && h[5] === 0x4c && h[6] === 4 && h[7] === 0;
    return h.length >= 12 && (implicitUL || explicitUL);
  }
  const groupLE = h[0] | (h[1] << 8);
  const groupBE = (h[0] << 8) | h[1];
  const group = groupLE === 0x0002 || groupLE === 0x0008 ? groupLE : groupBE === 0x0002 || groupBE === 0x0008 ? groupBE : 0;
  if (!group) return false;
  const elemLE = h[2] | (h[3] << 8);
  const elemBE = (h[2] << 8) | h[3];
  // Elements of these groups are small numbers; text files fail here ("\x08\x00" is not how a README starts).
  return Math.min(elemLE, elemBE) < 0x1000;
}

function formatFromName(lower: string): Format | undefined {
  if (/\.dcm(\.gz)?$/.test(lower)) return 'dicom';
  if (/\.(nii|hdr)(\.gz)?$/.test(lower)) return 'nifti';
  return undefined;
}

const toId = (rel: string) => rel.split(path.sep).join('/');

/**
 * The DICOM modality of a MedMNIST dataset, from its file name (MedMNIST v2, Yang et al. 2023, Table 1), so
 * uni-modal clustering can tell a chest radiograph archive from a CT one. Unknown names give undefined ('OT').
 */
export function medmnistModality(file: string): string | undefined {
  const name = path.basename(file).toLowerCase().replace(/(_\d+)?\.npz$/, '');
  const table: Array<[RegExp, string]> = [
    [/^(chest|pneumonia)mnist$/, 'CR'],
    [/^organ[acs]mnist$|^(organ|nodule|fracture|adrenal)mnist3d$/, 'CT'],
    [/^vesselmnist3d$/, 'MR'],
    [/^breastmnist$/, 'US'],
    [/^octmnist$/, 'OPT'],
    [/^retinamnist$/, 'OP'],
    [/^dermamnist$/, 'XC'],
    [/^(path|blood|tissue)mnist$|^synapsemnist3d$/, 'SM'],
  ];
  return table.find(([re]) => re.test(name))?.[1];
}

/** One item per image of a MedMNIST-style .npz: `<split>_images` with `<split>_labels`. */
function* npzItems(file: string, rel: string, maxFileBytes: number): Generator<SourceItem> {
  const modality = medmnistModality(file);
  const size = fs.statSync(file).size;
  if (size > maxFileBytes) throw new MedsslError('too-large', file, `${size} bytes exceeds the ${maxFileBytes}-byte limit`);
  const arrays = readNpz(fs.readFileSync(file), file, maxFileBytes);
  let any = false;
  for (const split of ['train', 'val', 'test'] as const) {
    const images = arrays.get(`${split}_images`);
    if (!images) continue;
    any = true;
    const labels = arrays.get(`${split}_labels`);
    const n = images.shape[0] ?? 0;
    const perLabel = labels ? labels.data.length / Math.max(1, labels.shape[0] ?? 1) : 0;
    for (let i = 0; i < n; i++) {
      const entry = `${split}/${i}`;
      const item: SourceItem = { id: `${rel}#${entry}`, path: file, format: 'npz', entry, split, ...(modality ? { modality } : {}) };
      if (labels && labels.shape[0] === n) item.label = Array.from(labels.data.subarray(i * perLabel, (i + 1) * perLabel), Number);
      yield item;
    }
  }
  if (!any) throw new MedsslError('wrong-format', file, 'no <split>_images arrays (expected a MedMNIST-style .npz)');
}

/** Rows of a CSV (header row required) or JSONL manifest: path, label, patient_id/patientId, modality, split. */
function* manifestItems(file: string, maxFileBytes: number): Generator<SourceItem> {
  const dir = path.dirname(file);
  const text = fs.readFileSync(file, 'utf8');
  const rows = file.toLowerCase().endsWith('.jsonl') ? jsonlRows(text, file) : csvRows(text, file);
  for (const [n, row] of rows.entries()) {
    const where = `${file}:${n + 2}`;
    const p = row.path;
    if (typeof p !== 'string' || !p) throw new MedsslError('invalid-value', where, 'row has no path');
    const abs = path.resolve(dir, p);
    const rel = toId(path.isAbsolute(p) ? path.relative(dir, p) : path.normalize(p));
    const item: SourceItem = { id: rel, path: abs };
    const label = parseLabel(row.label, where);
    if (label) item.label = label;
    const patient = row.patient_id ?? row.patientId;
    if (patient !== undefined && patient !== '') item.patientId = String(patient);
    if (typeof row.modality === 'string' && row.modality) item.modality = row.modality.toUpperCase();
    if (row.split !== undefined && row.split !== '') {
      if (row.split !== 'train' && row.split !== 'val' && row.split !== 'test') throw new MedsslError('invalid-value', where, `split '${String(row.split)}' is not train, val or test`);
      item.split = row.split;
    }
    if (abs.toLowerCase().endsWith('.npz')) {
      for (const sub of npzItems(abs, rel, maxFileBytes)) yield { ...sub, ...(item.modality ? { modality: item.modality } : {}) };
      continue;
    }
    const fmt = formatFromName(abs.toLowerCase());
    if (fmt) item.format = fmt;
    yield item;
  }
}

function parseLabel(v: unknown, where: string): number[] | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  let value: unknown = v;
  if (typeof value === 'string' && value.trim().startsWith('[')) {
    try {
      value = JSON.parse(value) as unknown;
    } catch {
      throw new MedsslError('invalid-value', where, `label '${value}' is not a JSON array of numbers`);
    }
  }
  const list = Array.isArray(value) ? value : typeof value === 'number' ? [value] : String(value).split(/[;|\s]+/).filter(Boolean);
  const nums = list.map(Number);
  if (nums.some((x) => !Number.isFinite(x))) throw new MedsslError('invalid-value', where, `label '${String(v)}' is not a number or a list of numbers`);
  return nums;
}

function jsonlRows(text: string, file: string): Array<Record<string, unknown>> {
  return text.split('\n').map((l, i) => [l.trim(), i] as const).filter(([l]) => l).map(([l, i]) => {
    try {
      const v = JSON.parse(l) as unknown;
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
      return v as Record<string, unknown>;
    } catch (err) {
      throw new MedsslError('invalid-value', `${file}:${i + 1}`, `not a JSON object: ${(err as Error).message}`);
    }
  });
}

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and newlines. */
function csvRows(text: string, file: string): Array<Record<string, string>> {
  const records: string[][] = [];
  let field = '', row: string[] = [], quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; }
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field); field = '';
      if (row.some((f) => f !== '')) records.push(row);
      row = [];
    } else field += ch;
  }
  row.push(field);
  if (row.some((f) => f !== '')) records.push(row);
  if (!records.length) throw new MedsslError('invalid-value', file, 'empty manifest');
  const header = records[0].map((h) => h.trim());
  if (!header.includes('path')) throw new MedsslError('invalid-value', file, `manifest header has no 'path' column (got ${header.join(', ')})`);
  return records.slice(1).map((r) => Object.fromEntries(header.map((h, k) => [h, (r[k] ?? '').trim()])));
}
