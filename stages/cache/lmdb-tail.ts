// Whether an LMDB data file can be mapped safely: LMDB maps the file up to its last page, and touching a mapped page
// past the end of the file kills the process with SIGBUS, which no error handler sees. A sound file can still end
// before its last page: LMDB does not write pages freed in the transaction that allocated them, and lists them as free.
// So when the file is short, this reads the free list (with plain reads, never through a map) and accepts the file
// only when every missing page is on it. The layout read is that of the LMDB bundled with the lmdb package (64-bit
// page numbers, 24-byte page headers, free lists with runs of pages).
// These reads hold no LMDB read transaction, so a writer committing meanwhile may reuse the free list's pages: a short
// file checked during a concurrent ingest may be misjudged (opening it again reads the new state).
import fs from 'node:fs';

const PAGE_HEADER = 24;
const NODE_HEADER = 8;
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const P_META = 0x08;
const F_BIGDATA = 0x01;
const MDB_MAGIC = 0xbeefc0de;
/** Offsets in a meta page: the free database's record (MDB_db: page size first, root at +40), last page, txn id. */
const META_FREE_DB = PAGE_HEADER + 4 + 4 + 8 + 8;
const DB_ROOT = 40;
const META_LAST_PAGE = META_FREE_DB + 2 * 48;
const META_TXNID = META_LAST_PAGE + 8;
const NO_PAGE = 0xffffffffffffffffn;

/** Why the data file `file` cannot be mapped safely (it is cut short, or not an LMDB file), or null when it can. */
export function dataFileProblem(file: string): string | null {
  const size = fs.statSync(file).size;
  if (size === 0) return 'empty: no LMDB meta pages';
  const fd = fs.openSync(file, 'r');
  try {
    const read = (offset: number, length: number): Buffer => {
      const out = Buffer.alloc(length);
      fs.readSync(fd, out, 0, length, offset);
      return out;
    };
    const first = read(0, Math.min(size, 4096));
    if (first.length < META_TXNID + 8 || first.readUInt32LE(PAGE_HEADER) !== MDB_MAGIC) return 'not an LMDB data file';
    const pageSize = first.readUInt32LE(META_FREE_DB);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return `an impossible page size (${pageSize})`;
    if (size % pageSize !== 0) return `truncated: ${size} bytes is not a whole number of ${pageSize}-byte pages`;
    if (size < 2 * pageSize) return 'truncated: its second meta page is missing';
    const pages = size / pageSize;
    const page = (pgno: number, count = 1): Buffer => {
      if (pgno + count > pages) throw new Missing(pgno);
      return read(pgno * pageSize, count * pageSize);
    };
    // LMDB reads the meta page of the last committed transaction: so does this.
    const metas = [page(0), page(1)].filter((p) => (p.readUInt16LE(18) & P_META) !== 0 && p.readUInt32LE(PAGE_HEADER) === MDB_MAGIC);
    if (metas.length === 0) return 'no valid meta page';
    const meta = metas.reduce((a, b) => (b.readBigUInt64LE(META_TXNID) > a.readBigUInt64LE(META_TXNID) ? b : a));
    const lastPage = Number(meta.readBigUInt64LE(META_LAST_PAGE));
    if (pages > lastPage) return null;
    const root = meta.readBigUInt64LE(META_FREE_DB + DB_ROOT);
    const runs: Array<[number, number]> = [];
    if (root !== NO_PAGE) collectFree(Number(root), page, runs, 0);
    const gap = firstUncovered(runs, pages, lastPage);
    return gap === null ? null : `truncated: it ends at page ${pages}, but page ${gap} is in use (its last page is ${lastPage})`;
  } catch (e) {
    if (e instanceof Missing) return `truncated: page ${e.pgno} of its free list is past the end of the file`;
    return `its free list does not read (${(e as Error).message})`;
  } finally {
    fs.closeSync(fd);
  }
}

class Missing extends Error {
  constructor(readonly pgno: number) {
    super(`page ${pgno} missing`);
  }
}

/** Adds the runs of free pages ([first, end)) listed in the free-list tree under page `pgno` to `runs`. */
function collectFree(pgno: number, page: (pgno: number, count?: number) => Buffer, runs: Array<[number, number]>, depth: number): void {
  if (depth > 32) throw new Error('free list deeper than 32 levels');
  const p = page(pgno);
  const flags = p.readUInt16LE(18);
  const count = p.readUInt16LE(20) >> 1;
  for (let i = 0; i < count; i++) {
    const node = PAGE_HEADER + p.readUInt16LE(PAGE_HEADER + 2 * i);
    const lo = p.readUInt16LE(node), hi = p.readUInt16LE(node + 2), nodeFlags = p.readUInt16LE(node + 4), keySize = p.readUInt16LE(node + 6);
    if (flags & P_BRANCH) {
      collectFree(lo + hi * 2 ** 16 + nodeFlags * 2 ** 32, page, runs, depth + 1);
    } else if (flags & P_LEAF) {
      const dataSize = lo + hi * 2 ** 16;
      const at = node + NODE_HEADER + keySize;
      const ids = nodeFlags & F_BIGDATA
        ? page(Number(p.readBigUInt64LE(at)), Math.ceil((PAGE_HEADER + dataSize) / p.length)).subarray(PAGE_HEADER, PAGE_HEADER + dataSize)
        : p.subarray(at, at + dataSize);
      // An ID list: its length, then that many entries: a page number; 0, an empty slot; or -n followed by the first
      // page of a run of n pages.
      const n = Number(ids.readBigUInt64LE(0));
      if (8 * (n + 1) > ids.length) throw new Error('a free-list entry longer than its node');
      for (let j = 1; j <= n; j++) {
        const entry = ids.readBigInt64LE(8 * j);
        if (entry > 0n) runs.push([Number(entry), Number(entry) + 1]);
        else if (entry < 0n && j < n) {
          const start = Number(ids.readBigInt64LE(8 * ++j));
          runs.push([start, start + Number(-entry)]);
        }
      }
    } else {
      throw new Error(`page ${pgno} is not a branch or leaf page`);
    }
  }
}

/** The first page of [from, to] that no run covers, or null. */
function firstUncovered(runs: Array<[number, number]>, from: number, to: number): number | null {
  runs.sort((a, b) => a[0] - b[0]);
  let next = from;
  for (const [start, end] of runs) {
    if (start > next) break;
    if (end > next) next = end;
    if (next > to) return null;
  }
  return next > to ? null : next;
}
