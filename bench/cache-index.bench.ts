// A cache far larger than its reader's memory: 2 million 28x28 records (float32, about 3.4 KB stored each), opened
// and replayed for one epoch through the ordinal index, against the replay before it (every record key listed,
// sorted and held in memory with a Fisher-Yates order: the peer), on the same cache, in alternating rounds. Each
// measurement runs in a child process of its own, so its memory figures are its own: RSS after opening, peak RSS
// during the epoch (sampled every 65,536 records), both split into anonymous memory (the process's own: heap,
// buffers, indexes) and file pages (the cache's memory map, which the kernel shares and drops at will), and the
// replay rate. The synthetic cache is built once, through the store's own writer, and kept for the next runs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Benchmark, BenchResult } from './harness.js';
import { CACHE_SCHEMA_VERSION, CacheStore, encodeRecord, recordKey } from '../stages/cache/store.js';
import { CacheDataset } from '../stages/cache/replay.js';
import { random } from '../pipeline/core/random.js';

const here = fileURLToPath(import.meta.url);
const RECORDS = 2_000_000;
const ROUNDS = 2;
const PREP = 'bench-index';
/** Kept between runs (about 9 GB); the build marker names what it holds. */
const CACHE = path.join(os.tmpdir(), `medssl-bench-cache-index-${RECORDS}`);
const BUILT = path.join(CACHE, 'built.json');
const BUILD_VERSION = 1;

const result = (name: string, unit: string, value: number, config: Record<string, unknown>): BenchResult => ({ name, unit, value, config });

/**
 * Builds the synthetic cache unless the kept one is complete (one 28x28 source per record, ingest-like keys), then
 * (re)builds its index, timed: that is measured on every run.
 */
async function ensureCache(): Promise<{ buildS?: number; indexS: number }> {
  const built = fs.existsSync(BUILT) ? JSON.parse(fs.readFileSync(BUILT, 'utf8')) as { version: number } : undefined;
  if (built?.version === BUILD_VERSION) {
    process.stderr.write(`bench: reusing the synthetic cache at ${CACHE}\n`);
    return { indexS: await timeIndexBuild() };
  }
  fs.rmSync(CACHE, { recursive: true, force: true });
  process.stderr.write(`bench: building ${RECORDS} records at ${CACHE} (about ${Math.round((RECORDS * 4.5e3) / 1e9)} GB, kept for later runs)\n`);
  const store = CacheStore.open(CACHE);
  const t0 = performance.now();
  const data = new Float32Array(28 * 28);
  const info = { schemaVersion: CACHE_SCHEMA_VERSION, config: { bench: 'cache/index' } };
  let pending: Array<Promise<void>> = [];
  for (let i = 0; i < RECORDS; i++) {
    // Distinct pixels per record, cheap to make: a ramp shifted by the record number.
    for (let j = 0; j < data.length; j++) data[j] = ((i + j * 7) % 251) / 250;
    const id = `synthetic.npz#train/${i}`;
    const value = encodeRecord({ id: `${id}#0`, sourceId: id, frame: 0, modality: 'OT', height: 28, width: 28, channels: 1, data, spacing: null, label: [i % 2], split: 'train', normalization: PREP });
    // Content keys as ingest makes them (SHA-256 hex of the container, plus the entry), in no particular order.
    const content = `${hex64(i)}#train/${i}`;
    pending.push(store.commitSource(PREP, content, { id, file: 'synthetic.npz', frames: [0], bytes: 784, split: 'train' }, [0], [value], i === 0 ? info : undefined));
    // lmdb batches the queued commits into large transactions; waiting every 20,000 bounds the encoded bytes held.
    if (pending.length === 20_000) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await Promise.all(pending);
  await store.close();
  const buildS = (performance.now() - t0) / 1000;
  fs.writeFileSync(BUILT, JSON.stringify({ version: BUILD_VERSION, records: RECORDS, buildS }));
  return { buildS, indexS: await timeIndexBuild() };
}

/** Seconds to build the index from the done markers (what an ingest does when it finishes). */
async function timeIndexBuild(): Promise<number> {
  const store = CacheStore.open(CACHE);
  try {
    const t0 = performance.now();
    await store.buildIndex(PREP);
    return (performance.now() - t0) / 1000;
  } finally {
    await store.close();
  }
}

/** 64 hex digits from a number, well spread (a stand-in for a SHA-256). */
function hex64(i: number): string {
  const s = random(1).stream({ sample: i, purpose: 'bench/content' });
  let out = '';
  for (let k = 0; k < 8; k++) out += s.nextUint32().toString(16).padStart(8, '0');
  return out;
}

// ---- measured in a child process -------------------------------------------------------------------------------

interface Memory {
  rss: number;
  anon: number;
  file: number;
}

/** Resident memory in MB: total, anonymous, file-backed (/proc/self/status). */
function memory(): Memory {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const mb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  return { rss: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') };
}

const peak = (a: Memory, b: Memory): Memory => ({ rss: Math.max(a.rss, b.rss), anon: Math.max(a.anon, b.anon), file: Math.max(a.file, b.file) });

interface Measurement {
  mode: 'index' | 'keys-in-memory';
  records: number;
  openS: number;
  afterOpen: Memory;
  peakEpoch: Memory;
  recordsPerS: number;
  /** CPU time (user + system) per record during the epoch: steadier than the rate on a busy machine. */
  cpuUsPerRecord: number;
}

/** Opens the cache, then replays one epoch (seed 1, epoch 0, 1 reader, checksums verified). */
async function measure(mode: Measurement['mode']): Promise<Measurement> {
  const t0 = performance.now();
  const reader = mode === 'index' ? indexReader() : keysInMemoryReader();
  const openS = (performance.now() - t0) / 1000;
  const afterOpen = memory();
  let top = afterOpen;
  let n = 0;
  const t1 = performance.now();
  const cpu0 = process.cpuUsage();
  for await (const image of reader.epoch()) {
    if (image.width !== 28) throw new Error('unexpected record');
    if (++n % 65_536 === 0) top = peak(top, memory());
  }
  const recordsPerS = n / ((performance.now() - t1) / 1000);
  const cpu = process.cpuUsage(cpu0);
  top = peak(top, memory());
  await reader.close();
  return { mode, records: n, openS, afterOpen, peakEpoch: top, recordsPerS, cpuUsPerRecord: (cpu.user + cpu.system) / n };
}

interface Reader {
  epoch(): AsyncIterable<{ width: number }>;
  close(): Promise<void>;
}

function indexReader(): Reader {
  const dataset = CacheDataset.open([CACHE]);
  return { epoch: () => dataset.epoch({ seed: 1, epoch: 0 }), close: () => dataset.close() };
}

/**
 * The peer: replay as it was before the ordinal index. Open lists every done marker, maps each record key to its
 * cache, sorts the keys and keeps them; an epoch is a Fisher-Yates permutation of them, read by key. Records are
 * decoded by the same code as the indexed replay, so the two differ only in how they find records.
 */
function keysInMemoryReader(): Reader {
  const store = CacheStore.open(CACHE, { readOnly: true });
  const owner = new Map<string, number>();
  for (const { content, marker } of store.markers(PREP)) for (const frame of marker.frames) owner.set(recordKey(PREP, content, frame), 0);
  const keys = [...owner.keys()].sort();
  const owners = Uint16Array.from(keys, (k) => owner.get(k) as number);
  owner.clear();
  return {
    async *epoch() {
      const order = random(1).stream({ epoch: 0, purpose: 'replay-order' }).permutation(keys.length);
      for (let i = 0; i < order.length; i++) {
        if (owners[order[i]] !== 0) throw new Error('one cache');
        const image = store.image(keys[order[i]], true);
        if (!image) throw new Error(`missing ${keys[order[i]]}`);
        yield image;
      }
    },
    close: () => store.close(),
  };
}

function inChild(mode: Measurement['mode']): Measurement {
  const out = execFileSync(process.execPath, [...process.execArgv, here, '--child', mode], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').pop() as string) as Measurement;
}

export const benchmarks: Benchmark[] = [
  {
    name: 'cache/index',
    async run() {
      const built = await ensureCache();
      const runs: Measurement[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        for (const mode of ['keys-in-memory', 'index'] as const) {
          const m = inChild(mode);
          process.stderr.write(`bench: cache/index round ${round + 1} ${mode}: open ${m.openS.toFixed(2)} s, RSS ${m.afterOpen.rss.toFixed(0)} MB ` +
            `(anon ${m.afterOpen.anon.toFixed(0)}), epoch peak ${m.peakEpoch.rss.toFixed(0)} MB (anon ${m.peakEpoch.anon.toFixed(0)}), ${m.recordsPerS.toFixed(0)} records/s, ` +
            `${m.cpuUsPerRecord.toFixed(2)} us CPU per record\n`);
          runs.push(m);
        }
      }
      const cfg = { records: RECORDS, recordBytes: 784 * 4, readers: 1, verify: true, rounds: ROUNDS };
      const out: BenchResult[] = [];
      if (built.buildS !== undefined) out.push(result('cache/index/build', 'records/s', RECORDS / built.buildS, cfg));
      out.push(result('cache/index/build-index', 'records/s', RECORDS / built.indexS, cfg));
      for (const mode of ['index', 'keys-in-memory'] as const) {
        const mine = runs.filter((r) => r.mode === mode);
        const name = mode === 'index' ? 'cache/index' : 'cache/index/keys-in-memory';
        const rates = mine.map((r) => r.recordsPerS);
        const c = { ...cfg, mode };
        out.push(result(`${name}/open`, 's', Math.min(...mine.map((r) => r.openS)), c));
        out.push(result(`${name}/rss-after-open`, 'MB', Math.max(...mine.map((r) => r.afterOpen.rss)), { ...c, anonMB: Math.max(...mine.map((r) => r.afterOpen.anon)), fileMB: Math.max(...mine.map((r) => r.afterOpen.file)) }));
        out.push(result(`${name}/anon-rss-peak-epoch`, 'MB', Math.max(...mine.map((r) => r.peakEpoch.anon)), { ...c, target: 300 }));
        out.push(result(`${name}/rss-peak-epoch`, 'MB', Math.max(...mine.map((r) => r.peakEpoch.rss)), { ...c, fileMB: Math.max(...mine.map((r) => r.peakEpoch.file)) }));
        out.push(result(`${name}/replay`, 'records/s', Math.max(...rates), { ...c, perRound: rates.map(Math.round), target: mode === 'index' ? 110_000 : undefined }));
        out.push(result(`${name}/replay-cpu`, 'us/record', Math.min(...mine.map((r) => r.cpuUsPerRecord)), { ...c, perRound: mine.map((r) => Number(r.cpuUsPerRecord.toFixed(2))) }));
      }
      return out;
    },
  },
];

if (process.argv[1] === here && process.argv.includes('--child')) {
  const mode = process.argv[process.argv.indexOf('--child') + 1] as Measurement['mode'];
  process.stdout.write(`${JSON.stringify(await measure(mode))}\n`);
}
