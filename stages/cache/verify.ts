// `medssl cache verify`, `medssl cache stats` and `medssl cache index`: read every record, check it, summarise;
// (re)build the ordinal index.
import { CacheStore, checkRecord, readHeader, recordKey } from './store.js';
import { SPLIT_GROUPS, type SplitGroup } from './ordinal-index.js';
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
  /**
   * Called for a preparation whose index is missing or out of date (not corruption: an ingest stopped before
   * indexing, or a cache from before the index; `medssl cache index` or a rerun of the ingest rebuilds it).
   */
  onIndex?: (preparation: string, reason: string) => void;
}

/**
 * Reads every record of the cache at `path` and checks its checksum, checks that every marker's frames are there,
 * and that each current index lists exactly the records of its preparation in canonical order; `corrupt` is 0 for a
 * sound cache.
 */
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
    const preparations = new Set<string>();
    for (const { prep, content, marker } of store.markers()) {
      preparations.add(prep);
      if (marker.failure) report.failures++;
      for (const frame of marker.frames) {
        const key = recordKey(prep, content, frame);
        if (store.raw(key) === undefined) bad(key, 'listed by its source marker but missing');
      }
    }
    for (const prep of preparations) {
      const state = store.indexState(prep);
      if (state.state === 'current') checkIndex(store, prep, bad);
      else opts.onIndex?.(prep, state.reason);
    }
    return report;
  } finally {
    await store.close();
  }
}

/**
 * Compares the current index of `prep` with the canonical order its markers give, entry by entry (one group's
 * entries and one page of markers in memory at a time). Reports the first difference per split.
 */
function checkIndex(store: CacheStore, prep: string, bad: (key: string, reason: string) => void): void {
  const view = store.openIndex(prep);
  const entries = SPLIT_GROUPS.map((_, g) => view.keys(g)[Symbol.iterator]());
  const seen = SPLIT_GROUPS.map(() => 0);
  const wrong = SPLIT_GROUPS.map(() => false);
  const where = (g: number, ordinal: number) => `index ${prep}/${SPLIT_GROUPS[g]}/${ordinal}`;
  for (const { key, group } of store.canonical(prep)) {
    const ordinal = seen[group]++;
    if (wrong[group]) continue;
    let entry: IteratorResult<Buffer>;
    try {
      entry = entries[group].next();
    } catch (e) {
      bad(where(group, ordinal), (e as Error).message);
      wrong[group] = true;
      continue;
    }
    if (entry.done) {
      bad(where(group, ordinal), `missing: the index lists ${view.counts[group]} records of split ${SPLIT_GROUPS[group]}`);
      wrong[group] = true;
    } else if (entry.value.toString('utf8') !== key) {
      bad(where(group, ordinal), `lists ${entry.value.toString('utf8')} where the markers give ${key}`);
      wrong[group] = true;
    }
  }
  SPLIT_GROUPS.forEach((name, g) => {
    if (!wrong[g] && seen[g] !== view.counts[g]) bad(`index ${prep}/${name}`, `counts ${view.counts[g]} records, the markers list ${seen[g]}`);
  });
}

export interface IndexSummary {
  preparation: string;
  /** Records per split group. */
  counts: Record<SplitGroup, number>;
  seconds: number;
}

/** (Re)builds the ordinal index of every preparation in the cache at `path` (which must not be read-only). */
export async function indexCache(path: string): Promise<IndexSummary[]> {
  const store = CacheStore.open(path);
  try {
    const out: IndexSummary[] = [];
    for (const prep of store.preparationHashes().keys()) {
      const t0 = performance.now();
      const meta = await store.buildIndex(prep);
      const counts = Object.fromEntries(SPLIT_GROUPS.map((name, g) => [name, meta.counts[g]])) as Record<SplitGroup, number>;
      out.push({ preparation: prep, counts, seconds: (performance.now() - t0) / 1000 });
    }
    return out;
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
