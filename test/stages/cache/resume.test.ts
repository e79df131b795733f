import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../pipeline/core/config.js';
import { listInputs, preparationHash } from '../../../pipeline/compose/prepare.js';
import { preparation } from '../../support/prepare.js';
import { ingest } from '../../../stages/cache/ingest.js';
import { CacheStore } from '../../../stages/cache/store.js';
import type { SourceItem } from '../../../schemas/records.js';
import { snapshot, tempDir, writePneumoniaNpy } from './data.js';

describe('resuming', () => {
  it('re-reads every file by default, and with trusted file stamps only the files that changed', async () => {
    const dir = tempDir();
    const files = writePneumoniaNpy(dir, 20);
    const config = loadConfig(undefined);
    const real = preparation(config);
    let calls = 0;
    const prepare: typeof real = (failures) => { calls++; return real(failures); };
    const cache = path.join(dir, 'c');
    const run = async (trustFileStamps: boolean) => {
      const store = CacheStore.open(cache);
      try {
        return await ingest({ sources: listInputs([path.join(dir, 'pneumonia')]), prepare, store, normalizationHash: preparationHash(config), trustFileStamps });
      } finally {
        await store.close();
      }
    };
    const size = fs.statSync(files[0]).size;
    expect(await run(false)).toMatchObject({ images: 20, bytesRead: 20 * size });
    expect(await run(false)).toMatchObject({ images: 0, skipped: 20, bytesRead: 20 * size }); // hashed again
    expect(await run(true)).toMatchObject({ images: 0, skipped: 20, bytesRead: 0 }); // a stat per file
    expect(calls).toBe(20);

    // A file rewritten with other pixels (same size, later mtime) is read and prepared again; the rest is not read.
    const bytes = fs.readFileSync(files[3]);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(files[3], bytes);
    const later = new Date(fs.statSync(files[3]).mtimeMs + 5000);
    fs.utimesSync(files[3], later, later);
    expect(await run(true)).toMatchObject({ images: 1, skipped: 19, bytesRead: size });
    expect(calls).toBe(21);
    // The edited file's new records replace its old ones: the cache equals a fresh ingest of the current files.
    const fresh = path.join(dir, 'fresh');
    const store = CacheStore.open(fresh);
    await ingest({ sources: listInputs([path.join(dir, 'pneumonia')]), prepare: real, store, normalizationHash: preparationHash(config) });
    await store.close();
    const [now, expected] = await Promise.all([snapshot(cache), snapshot(fresh)]);
    expect(now.records).toEqual(expected.records);
    expect(now.markers).toEqual(expected.markers);
  });
});
