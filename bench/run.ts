// `npm run bench [-- name-filter ...]`: runs every bench/*.bench.ts and prints one JSON line per result on stdout.
// Progress and notes go to stderr, so `npm run bench --silent > results.jsonl` is machine-readable.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Benchmark } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ext = import.meta.url.endsWith('.ts') ? '.bench.ts' : '.bench.js';
const filters = process.argv.slice(2);
const files = fs.readdirSync(here).filter((f) => f.endsWith(ext)).sort();

let failed = 0;
for (const file of files) {
  const mod = (await import(pathToFileURL(path.join(here, file)).href)) as { benchmarks: Benchmark[] };
  for (const bench of mod.benchmarks) {
    if (filters.length && !filters.some((f) => bench.name.includes(f) || file.includes(f))) continue;
    process.stderr.write(`bench: ${bench.name} ...\n`);
    try {
      for (const r of await bench.run()) process.stdout.write(`${JSON.stringify(r)}\n`);
    } catch (e) {
      failed++;
      process.stderr.write(`bench: ${bench.name} failed: ${(e as Error).stack}\n`);
    }
  }
}
process.exitCode = failed ? 1 : 0;
