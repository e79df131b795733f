// The data bundled in fixtures/ (the main job's files and the tests' copies from the corpus): every file has its row in
// the SOURCES.md beside it, with its size and hash. fixtures.corpus.test.ts checks that each is a byte-for-byte copy.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture } from './shared.js';

/** The rows of a SOURCES.md: `<section>/<file>` -> bytes and sha256[:16], from every table with those columns. */
function sourceRows(file: string): Map<string, { bytes: number; sha: string }> {
  const rows = new Map<string, { bytes: number; sha: string }>();
  let section = '', cols: string[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const heading = /^## (\S+)\/$/.exec(line);
    if (heading) section = heading[1];
    if (!line.startsWith('| ') || line.startsWith('| ---')) continue;
    const cells = line.slice(2, -2).split(' | ');
    if (cells[0] === 'file') cols = cells;
    else if (cols.includes('bytes') && cols.includes('sha256[:16]')) {
      rows.set(`${section}/${cells[0]}`, { bytes: Number(cells[cols.indexOf('bytes')].replace(/,/g, '')), sha: cells[cols.indexOf('sha256[:16]')] });
    }
  }
  return rows;
}

/** Every file under `dir`, as paths relative to it. */
function bundled(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => fs.statSync(path.join(dir, f)).isFile()).map((f) => f.split(path.sep).join('/')).sort();
}

describe.each(['data', 'corpus'])('fixtures/%s', (dir) => {
  it('has a SOURCES.md row with the size and hash of every file', () => {
    const rows = sourceRows(fixture(`${dir}/SOURCES.md`));
    const files = bundled(fixture(dir)).filter((f) => !/^(SOURCES|LICENSES)\.md$/.test(f));
    expect(files.length).toBeGreaterThan(20);
    const wrong = files.filter((f) => {
      const bytes = fs.readFileSync(fixture(`${dir}/${f}`));
      const row = rows.get(f);
      return row?.bytes !== bytes.length || row.sha !== crypto.createHash('sha256').update(bytes).digest('hex').slice(0, 16);
    });
    expect(wrong).toEqual([]);
  });
});
