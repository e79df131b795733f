// The layers of the code point down only: schemas (the records) <- pipeline/core (what stages share) <- stages <-
// pipeline/compose (ingest, pools, arms, the job) <- pipeline/app (the CLI). A reader, and this test, can tell a
// layer by its folder.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.(ts|mjs)$/.test(e.name) && !e.parentPath.includes('assembly'))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)));
}

/** Every relative module a file imports (static and dynamic), as a path from the repository root. */
function imports(file: string): string[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  return [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)]
    .map((m) => path.relative(root, path.resolve(path.dirname(path.join(root, file)), m[1])));
}

const layerOf = (p: string): string | null =>
  /^schemas\//.test(p) ? 'schemas'
    : /^pipeline\/core\//.test(p) ? 'core'
    : /^stages\//.test(p) ? 'stages'
      : /^pipeline\/compose\//.test(p) ? 'compose'
        : /^pipeline\/app\//.test(p) ? 'app'
          : /^pipeline\/index\./.test(p) ? 'api' : null;
const RANK: Record<string, number> = { schemas: 0, core: 1, stages: 2, compose: 3, app: 4, api: 4 };

describe('layers', () => {
  const files = [...sources('pipeline'), ...sources('stages'), ...sources('schemas')];

  it('every product file sits in a layer', () => {
    expect(files.filter((f) => layerOf(f) === null)).toEqual([]);
    expect(files.filter((f) => layerOf(f) === 'core').length).toBeGreaterThan(5);
  });

  it('imports only point down (the records import nothing of ours, the core no stage, stages no composition, composition no command)', () => {
    const upward: string[] = [];
    for (const f of files) {
      const from = layerOf(f)!;
      for (const target of imports(f)) {
        const to = layerOf(target);
        if (to === null || from === to) continue;
        if (RANK[to] > RANK[from]) upward.push(`${f} -> ${target}`);
      }
    }
    expect(upward).toEqual([]);
  });
});
