// The ordinal index: the layout of its keys and the canonical order it numbers records in. Replay addresses record
// i of a split group by a fixed-width key (one LMDB get), so opening a cache reads a few meta entries instead of every
// record key, and an epoch's order is a permutation of ordinals computed per position (pipeline/core/random.ts
// IndexShuffle), never an array. See stages/cache/README.md, "Ordinal index".

/**
 * Split groups, in the order a dataset over several of them concatenates them. Each has its own run of ordinals, so
 * choosing splits (pre-training leaves val and test out) costs nothing at open.
 */
export const SPLIT_GROUPS = ['train', 'val', 'test', 'none'] as const;
export type SplitGroup = (typeof SPLIT_GROUPS)[number];

/** The group of a record's split (undefined: 'none'). */
export function groupOf(split: string | undefined): number {
  const g = split === undefined ? 3 : SPLIT_GROUPS.indexOf(split as SplitGroup);
  if (g < 0 || split === 'none') throw new RangeError(`split ${JSON.stringify(split)} is not train, val or test`);
  return g;
}

/** Bumped whenever the index layout changes: an index of another version is refused and rebuilt, never misread. */
export const INDEX_VERSION = 1;

/**
 * What the meta database says about one preparation's index. Two slots alternate: a rebuild writes the slot not in
 * use and then switches `slot` in one transaction, so a reader never sees a half-written index.
 */
export interface IndexMeta {
  version: number;
  slot: 0 | 1;
  /** The preparation's generation (bumped by every committed source) the index was built from. */
  generation: number;
  /** Records per group, in SPLIT_GROUPS order. */
  counts: number[];
}

/** Records per group are numbered with 32-bit ordinals. */
export const MAX_ORDINAL = 0xffffffff;

/**
 * `<prep> 0x00 <slot> <group>`: the prefix of one group's entries in one slot. The entry's key is the prefix plus
 * the ordinal as 4 bytes big-endian, so LMDB's byte order is ordinal order and a key's width is fixed.
 */
export function indexPrefix(prep: string, slot: number, group: number): Buffer {
  if (prep.includes('\0')) throw new RangeError('a preparation hash cannot contain NUL');
  const p = Buffer.from(prep, 'utf8');
  const out = Buffer.alloc(p.length + 3);
  p.copy(out, 0);
  out[p.length + 1] = slot;
  out[p.length + 2] = group;
  return out;
}

/** The prefix followed by `ordinal` (4 bytes big-endian): a new buffer. */
export function indexKey(prefix: Uint8Array, ordinal: number): Buffer {
  const out = Buffer.alloc(prefix.length + 4);
  out.set(prefix, 0);
  out.writeUInt32BE(ordinal, prefix.length);
  return out;
}

const SLASH = 0x2f;

/**
 * The canonical order of record keys (`<source key>/<frame>`): by source key bytes (the order of the done markers in
 * LMDB), then by frame number. Plain byte order would differ when one content key extends another with a character
 * below '/' (`a#x/1-b` sorts before `a#x/1/000000`), and past 999999 frames, where the padding runs out.
 */
export function compareRecordKeys(a: Uint8Array, b: Uint8Array): number {
  const sa = a.lastIndexOf(SLASH), sb = b.lastIndexOf(SLASH);
  const source = Buffer.compare(a.subarray(0, sa), b.subarray(0, sb));
  if (source !== 0) return source;
  return frameOf(a, sa) - frameOf(b, sb);
}

function frameOf(key: Uint8Array, slash: number): number {
  let n = 0;
  for (let i = slash + 1; i < key.length; i++) n = n * 10 + (key[i] - 48);
  return n;
}
