// `medssl cache verify` and `medssl cache stats`: read every record, check it, summarise.
import { CacheStore, checkRecord, readHeader, recordKey } from './store.js';
import type { FailureRecord } from '../../schemas/records.js';

export interface VerifyReport {
  /** Records stored (all preparations). */
  records: number;
  /** Bytes of stored values (headers, arrays, checksums). */
  bytes: number;
  /** Records whose layout or checksum is wrong, plus frames a done marker lists that are missing. */
  corrupt: number;
  /** Sources remembered as failed (undecodable input). */
  failures: number;
  schemaVersion: number;
}

export interface VerifyOptions {
  /** Called for each problem found (key and reason), e.g. to print them. */
  onCorrupt?: (key: string, reason: string) => void;
}

/** Reads every record of the cache at `path` and checks its checksum; `corrupt` is 0 for a sound cache. */
export async function verifyCache(path: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const store = CacheStore.open(path, { readOnly: true });
  try {
    const report: VerifyReport = { records: 0, bytes: 0, corrupt: 0, failures: 0, schemaVersion: store.schemaVersion };
    const bad = (key: string, reason: string) => { report.corrupt++; opts.onCorrupt?.(key, reason); };
    for (const key of store.recordKeys()) {
      const value = store.raw(key);
      if (value === undefined) continue;
      report.records++;
      report.bytes += value.length;
      const problem = checkRecord(value);
      if (problem) { bad(key, problem); continue; }
      try {
        readHeader(value);
      } catch (e) {
        bad(key, `unreadable header: ${(e as Error).message}`);
      }
    }
    for (const { prep, content, marker } of store.markers()) {
      if (marker.failure) report.failures++;
      for (const frame of marker.frames) {
        const key = recordKey(prep, content, frame);
        if (store.raw(key) === undefined) bad(key, 'listed by its source marker but missing');
      }
    }
    return report;
  } finally {
    await store.close();
  }
}

export interface CacheGroup {
  records: number;
  bytes: number;
}

export interface CacheStats {
  schemaVersion: number;
  records: number;
  bytes: number;
  sources: number;
  /** Per preparation hash: its stored configuration and record count. */
  preparations: Record<string, { records: number; config: unknown }>;
  byModality: Record<string, CacheGroup>;
  /** Per origin: the first component of the source id (the dataset folder, or the file at the input's top level). */
  bySource: Record<string, CacheGroup>;
  bySplit: Record<string, CacheGroup>;
  /** Remembered failures, per code, and the list of them. */
  failuresByCode: Record<string, number>;
  failures: FailureRecord[];
  /** Records not referenced by any done marker (left by a crash inside a very large source; rewritten by a rerun). */
  orphans: number;
}

/** Summarises the cache at `path` by modality, origin and split, with the remembered failures. */
export async function cacheStats(path: string): Promise<CacheStats> {
  const store = CacheStore.open(path, { readOnly: true });
  try {
    const preps = store.preparationHashes();
    const stats: CacheStats = {
      schemaVersion: store.schemaVersion, records: 0, bytes: 0, sources: 0, preparations: {}, byModality: {}, bySource: {}, bySplit: {},
      failuresByCode: {}, failures: [], orphans: store.orphanCount(),
    };
    const add = (groups: Record<string, CacheGroup>, name: string, bytes: number) => {
      const g = (groups[name] ??= { records: 0, bytes: 0 });
      g.records++;
      g.bytes += bytes;
    };
    for (const { prep, content, marker } of store.markers()) {
      stats.sources++;
      const p = (stats.preparations[prep] ??= { records: 0, config: preps.get(prep)?.config ?? null });
      if (marker.failure) {
        stats.failuresByCode[marker.failure.code] = (stats.failuresByCode[marker.failure.code] ?? 0) + 1;
        stats.failures.push({ kind: 'failure', file: marker.file, stage: marker.failure.stage, code: marker.failure.code, reason: marker.failure.reason, id: marker.id });
      }
      for (const frame of marker.frames) {
        const value = store.raw(recordKey(prep, content, frame));
        if (value === undefined || checkRecord(value)) continue;
        const h = readHeader(value);
        stats.records++;
        stats.bytes += value.length;
        p.records++;
        add(stats.byModality, h.modality, value.length);
        add(stats.bySource, originOf(h.sourceId), value.length);
        add(stats.bySplit, h.split ?? 'none', value.length);
      }
    }
    return stats;
  } finally {
    await store.close();
  }
}

/** `ds1/a/b.dcm` -> `ds1`; `pneumoniamnist.npz#train/3` -> `pneumoniamnist.npz`. */
export function originOf(sourceId: string): string {
  const file = sourceId.split('#')[0];
  return file.split('/')[0] || file;
}
