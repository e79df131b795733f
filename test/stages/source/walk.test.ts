// Folder walks over hostile trees, built here from one fixture file: link cycles end, each (device, inode) is
// listed once, links out of the tree and FIFOs are reported instead of followed or opened, and a dangling link does
// not end the listing.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MedsslError } from '../../../pipeline/core/failures.js';
import type { SourceItem } from '../../../schemas/records.js';
import { decodeItem } from '../../../stages/decode/decode.js';
import { listSources } from '../../../stages/source/source.js';
import { fixture } from '../../shared.js';

const CT = fixture('data/dicom/pydicom/CT_small.dcm');
let root: string, tree: string, outside: string;

async function collect(inputs: string[], followLinks?: 'within' | 'all' | 'none'): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const item of listSources(inputs, { followLinks })) out.push(item);
  return out;
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-walk-'));
  tree = path.join(root, 'tree');
  outside = path.join(root, 'outside');
  fs.mkdirSync(path.join(tree, 'a', 'b'), { recursive: true });
  fs.mkdirSync(outside);
  fs.copyFileSync(CT, path.join(tree, 'a', 'one.dcm'));
  fs.copyFileSync(CT, path.join(tree, 'a', 'b', 'two.dcm'));
  fs.copyFileSync(CT, path.join(outside, 'far.dcm'));
  fs.symlinkSync('..', path.join(tree, 'a', 'b', 'up'));                 // a cycle: b/up -> a
  fs.symlinkSync(tree, path.join(tree, 'a', 'root-again'));             // a cycle through an absolute link
  fs.symlinkSync(path.join(tree, 'a', 'one.dcm'), path.join(tree, 'alias.dcm')); // a file reached twice
  fs.linkSync(path.join(tree, 'a', 'one.dcm'), path.join(tree, 'hard.dcm'));      // a hard link: same inode
  fs.symlinkSync(outside, path.join(tree, 'elsewhere'));                // out of the tree
  fs.symlinkSync(path.join(root, 'missing'), path.join(tree, 'dangling.dcm'));
  execFileSync('mkfifo', [path.join(tree, 'pipe.dcm')]);
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('folder walks', () => {
  it('end on link cycles and list each (device, inode) once', async () => {
    const t0 = performance.now();
    const items = await collect([tree]);
    expect(performance.now() - t0).toBeLessThan(5000);
    const read = items.filter((i) => !i.error);
    // one.dcm, alias.dcm and hard.dcm are one inode: listed once (the first in sorted order); two.dcm once.
    expect(read.map((i) => i.id).sort()).toEqual(['a/b/two.dcm', 'a/one.dcm']);
  });

  it('reports, by default, links out of the tree, FIFOs and dangling links instead of reading them', async () => {
    const items = await collect([tree]);
    const problems = Object.fromEntries(items.filter((i) => i.error).map((i) => [i.id, i.error!.reason]));
    expect(problems.elsewhere).toMatch(/outside the input folder/);
    expect(problems['pipe.dcm']).toMatch(/not a regular file \(a FIFO\)/);
    expect(problems['dangling.dcm']).toMatch(/cannot be read: ENOENT/);
    expect(items.some((i) => i.id.startsWith('elsewhere/'))).toBe(false);
  });

  it("follows every link with 'all' and none with 'none'", async () => {
    const all = await collect([tree], 'all');
    expect(all.filter((i) => !i.error).map((i) => i.id)).toContain('elsewhere/far.dcm');
    const none = await collect([tree], 'none');
    const reported = none.filter((i) => i.error).map((i) => i.id).sort();
    expect(reported).toEqual(['a/b/up', 'a/root-again', 'alias.dcm', 'dangling.dcm', 'elsewhere', 'pipe.dcm']);
    expect(none.find((i) => i.id === 'alias.dcm')?.error?.reason).toMatch(/not followed \(data.followLinks: none\)/);
  });

  it('never opens a FIFO: named, listed or decoded, it fails at once', async () => {
    const fifo = path.join(tree, 'pipe.dcm');
    await expect(collect([fifo])).rejects.toThrow(/not a regular file/);
    const t0 = performance.now();
    const failed = await (async () => {
      try {
        for await (const _ of decodeItem({ id: 'pipe.dcm', path: fifo }, undefined, {})) { /* nothing */ }
      } catch (e) {
        return e;
      }
    })();
    expect(failed).toBeInstanceOf(MedsslError);
    expect((failed as MedsslError).code).toBe('unreadable');
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
