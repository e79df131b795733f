import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { preparing } from '../../support/prepare.js';
import type { NormalizedImage, SourceItem } from '../../../schemas/records.js';
import { CACHE_SCHEMA_VERSION, CacheStore, CorruptRecordError, checkRecord, decodeRecord, encodeRecord } from '../../../stages/cache/store.js';
import { ingest } from '../../../stages/cache/ingest.js';
import { replay } from '../../../stages/cache/replay.js';
import { verifyCache } from '../../../stages/cache/verify.js';
import { FailureLog } from '../../../pipeline/core/failures.js';
import { random } from '../../../pipeline/core/random.js';
import { cli } from '../../shared.js';
import { tempDir, writePneumoniaNpy } from './data.js';

function image(id: string, h: number, w: number, c: number, fill: (i: number) => number, extra: Record<string, unknown> = {}): NormalizedImage {
  const data = new Float32Array(h * w * c);
  for (let i = 0; i < data.length; i++) data[i] = fill(i);
  return { id: `${id}#0`, sourceId: id, frame: 0, modality: 'CT', height: h, width: w, channels: c, data, spacing: [0.7, 0.7], normalization: 'prep0', patientKey: 'a1b2c3', label: [1], split: 'train', ...extra } as NormalizedImage;
}

describe('record codec', () => {
  it('round-trips header fields and pixels bit for bit, raw and compressed', () => {
    const s = random(1).stream({ purpose: 'codec' });
    const smooth = image('smooth', 64, 48, 3, (i) => Math.round((i % 48) / 4) / 12);
    // Random bit patterns (finite by construction: exponent bits kept below all-ones) do not compress.
    const noisy = image('noisy', 32, 32, 1, () => 0);
    const bits = new Uint32Array(noisy.data.buffer);
    for (let i = 0; i < bits.length; i++) bits[i] = s.nextUint32() & 0xbfffffff;
    for (const im of [smooth, noisy]) {
      for (const compression of [false, true]) {
        const back = decodeRecord(encodeRecord(im, { compression }));
        expect(back).toEqual(im);
        expect(Buffer.from(back.data.buffer).equals(Buffer.from(im.data.buffer))).toBe(true);
      }
    }
    // Compression is kept only where it pays: a smooth image shrinks, white noise is stored raw.
    expect(encodeRecord(smooth, { compression: true }).length).toBeLessThan(0.5 * encodeRecord(smooth).length);
    expect(encodeRecord(noisy, { compression: true }).length).toBe(encodeRecord(noisy).length);
  });

  it('detects a flipped bit anywhere in a record', () => {
    const value = encodeRecord(image('x', 16, 16, 1, (i) => i / 256));
    expect(checkRecord(value)).toBeNull();
    for (const at of [0, 5, 20, value.length - 100, value.length - 2]) {
      const bad = Buffer.from(value);
      bad[at] ^= 0x10;
      expect(checkRecord(bad)).not.toBeNull();
      expect(() => decodeRecord(bad, { key: 'k' })).toThrow(CorruptRecordError);
    }
  });

  it('keeps only whitelisted fields: names and dates given with an image never reach the cache file', async () => {
    const dir = tempDir();
    const phi = { patientName: 'DOE^JOHNATHAN', patientBirthDate: '19561231', studyDate: '20240229', accessionNumber: 'ACC99731', patientId: 'MRN-5551234' };
    const store = CacheStore.open(path.join(dir, 'c'));
    const items: SourceItem[] = [{ id: 'a.dcm', path: path.join(dir, 'a.dcm') }];
    fs.writeFileSync(items[0].path, 'stand-in bytes');
    await ingest({ sources: items, store, normalizationHash: 'prepA', prepare: preparing(() => [image('a.dcm', 8, 8, 1, () => 0.5, phi)]) });
    await store.close();
    const raw = fs.readFileSync(path.join(dir, 'c', 'data.mdb')).toString('latin1');
    for (const value of Object.values(phi)) expect(raw.includes(value)).toBe(false);
    expect(raw.includes('a1b2c3')).toBe(true); // the patient key is kept (patient-level splits)
    const [back] = await collect(replay({ caches: [path.join(dir, 'c')], seed: 0, epoch: 0 }));
    expect(back.normalization).toBe('prepA'); // records name the preparation they are keyed by
    expect(Object.keys(back).sort()).toEqual(['channels', 'data', 'frame', 'height', 'id', 'label', 'modality', 'normalization', 'patientKey', 'sourceId', 'spacing', 'split', 'width']);
  });
});

describe('cache verify', () => {
  it('reads a cache killed before its first commit as empty and sound, not as an internal error', async () => {
    const dir = tempDir();
    // What an ingest leaves when killed right after opening the environment: data.mdb, no database in it yet.
    const { open } = await import('lmdb');
    const env = open({ path: dir, maxDbs: 8 });
    await env.close();
    expect(fs.existsSync(path.join(dir, 'data.mdb'))).toBe(true);
    const report = await verifyCache(dir);
    expect(report).toMatchObject({ records: 0, corrupt: 0, failures: 0, schemaVersion: CACHE_SCHEMA_VERSION });
  });

  it('reports a byte flipped in a stored value inside the LMDB file, and replay refuses the record', async () => {
    const dir = tempDir();
    const cache = path.join(dir, 'c');
    writePneumoniaNpy(dir, 40);
    execFileSync(process.execPath, [cli, 'ingest', path.join(dir, 'pneumonia'), '--cache', cache], { stdio: 'pipe' });
    const clean = JSON.parse(execFileSync(process.execPath, [cli, 'cache', 'verify', cache, '--json'], { encoding: 'utf8' }));
    expect(clean).toMatchObject({ records: 40, corrupt: 0, failures: 0, schemaVersion: CACHE_SCHEMA_VERSION });
    expect(clean.bytes).toBeGreaterThan(40 * 784 * 4);

    // Find one record's pixel bytes in the file and flip one byte in the middle of its array.
    const store = CacheStore.open(cache, { readOnly: true });
    const key = [...store.recordKeys()][17];
    const value = store.raw(key, false)!;
    await store.close();
    const file = path.join(cache, 'data.mdb');
    const bytes = fs.readFileSync(file);
    const at = bytes.indexOf(value);
    expect(at).toBeGreaterThan(0);
    expect(bytes.indexOf(value, at + 1)).toBe(-1);
    bytes[at + value.length - 1000] ^= 0x01;
    fs.writeFileSync(file, bytes);

    const r = spawnSync(process.execPath, [cli, 'cache', 'verify', cache, '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ records: 40, corrupt: 1, bytes: clean.bytes });
    expect(r.stderr).toContain(key);
    expect(r.stderr).toContain('checksum mismatch');
    expect((await verifyCache(cache)).corrupt).toBe(1);

    await expect(collect(replay({ caches: [cache], seed: 1, epoch: 0 }))).rejects.toThrow(/checksum mismatch/);
    const failures = new FailureLog();
    const survivors = await collect(replay({ caches: [cache], seed: 1, epoch: 0, failures, readers: 2 }));
    expect(survivors).toHaveLength(39);
    expect(failures.records).toEqual([expect.objectContaining({ code: 'corrupt', stage: 'replay', id: key })]);
  });
});

describe('sources larger than one transaction', () => {
  it('stay invisible until their marker lands; an interrupted one leaves orphans that a rerun completes', async () => {
    const dir = tempDir();
    const cache = path.join(dir, 'c');
    const item: SourceItem = { id: 'vol.npy', path: path.join(dir, 'vol.npy') };
    fs.writeFileSync(item.path, 'stand-in bytes');
    const frame = (f: number) => ({ ...image('vol.npy', 64, 64, 1, (i) => ((i * (f + 1)) % 97) / 97), id: `vol.npy#${f}`, frame: f });
    const store = CacheStore.open(cache);
    // 16 KiB records, at most ~40 KiB per transaction: frames are flushed in several transactions before the marker.
    // The preparation dies (a non-input error) after 7 frames: some records are written, no marker.
    function* dies() {
      for (let f = 0; f < 7; f++) yield frame(f);
      throw new Error('worker lost');
    }
    const failures = new FailureLog();
    await ingest({ sources: [item], store, normalizationHash: 'prep0', prepare: preparing(() => dies()), maxTransactionBytes: 40_000, failures });
    expect(failures.records).toEqual([expect.objectContaining({ code: 'internal' })]);
    await store.close();
    expect(await verifyCache(cache)).toMatchObject({ records: 6, corrupt: 0, failures: 0 });
    const { cacheStats } = await import('../../../stages/cache/verify.js');
    expect((await cacheStats(cache)).orphans).toBe(6);
    await expect(collect(replay({ caches: [cache], seed: 0, epoch: 0 }))).rejects.toThrow(/no ingested records/);
    await expect(collect(replay({ caches: [cache], seed: 0, epoch: 0, normalization: 'prep0' }))).resolves.toHaveLength(0);

    const again = CacheStore.open(cache);
    const s = await ingest({ sources: [item], store: again, normalizationHash: 'prep0', prepare: preparing(() => Array.from({ length: 10 }, (_, f) => frame(f))), maxTransactionBytes: 40_000 });
    await again.close();
    expect(s.images).toBe(10);
    expect((await cacheStats(cache)).orphans).toBe(0);
    const back = await collect(replay({ caches: [cache], seed: 0, epoch: 0 }));
    expect(back.map((im) => im.frame).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(back.find((im) => im.frame === 9)!.data).toEqual(frame(9).data);
  });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('cache folders', () => {
  it('a folder name with a dot is still a folder (lmdb would otherwise make it a file)', async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cache-')), 'cache.v1');
    const store = CacheStore.open(dir);
    await store.close();
    expect(fs.statSync(dir).isDirectory()).toBe(true);
    expect(fs.existsSync(path.join(dir, 'data.mdb'))).toBe(true);
  });
});
