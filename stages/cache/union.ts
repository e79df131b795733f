// Rank spaces for replay: how rank r of a dataset (its records in canonical order, 0 <= r < size) finds its record,
// as a cache, a split group and an ordinal, without a list of keys. One cache needs only the group sizes; a union of
// caches keeps a merge map of a few bits per record; a header filter keeps one bit per record. See
// stages/cache/README.md, "Ordinal index".
import { compareRecordKeys } from './ordinal-index.js';

/**
 * A record's place packed in one number: (cache * 4 + group) * 2^32 + ordinal, exact in a double for every cache
 * index below 2^16. A number, not an object, so locating a record allocates nothing.
 */
export type Location = number;
const ORDINALS = 2 ** 32;
export const location = (cache: number, group: number, ordinal: number): Location => (cache * 4 + group) * ORDINALS + ordinal;
export const cacheOf = (loc: Location): number => Math.floor(loc / (4 * ORDINALS));
export const groupAt = (loc: Location): number => Math.floor(loc / ORDINALS) % 4;
export const ordinalOf = (loc: Location): number => loc % ORDINALS;

/** Ranks [0, size) of a dataset and where each one's record is. */
export interface RankSpace {
  readonly size: number;
  locate(rank: number): Location;
}

/** Sizes above this do not fit a 32-bit ordinal or the epoch permutation. */
export const MAX_RANKS = 0xffffffff;

/** The selected groups of one cache, one after the other. */
export class GroupSpace implements RankSpace {
  readonly size: number;
  private readonly starts: number[];

  constructor(private readonly groups: readonly number[], counts: readonly number[], private readonly cache = 0) {
    this.starts = [];
    let n = 0;
    for (const g of groups) {
      this.starts.push(n);
      n += counts[g];
    }
    if (n > MAX_RANKS) throw new RangeError(`${n} records: more than ${MAX_RANKS} in one dataset`);
    this.size = n;
  }

  locate(rank: number): Location {
    let i = this.groups.length - 1;
    while (i > 0 && rank < this.starts[i]) i--;
    return location(this.cache, this.groups[i], rank - this.starts[i]);
  }
}

/** The selected groups of a union of caches, each group a MergeMap, one group after the other. */
export class UnionSpace implements RankSpace {
  readonly size: number;
  private readonly starts: number[] = [];

  constructor(private readonly groups: readonly number[], private readonly maps: readonly MergeMap[]) {
    let n = 0;
    for (const m of maps) {
      this.starts.push(n);
      n += m.size;
    }
    if (n > MAX_RANKS) throw new RangeError(`${n} records: more than ${MAX_RANKS} in one dataset`);
    this.size = n;
  }

  locate(rank: number): Location {
    let i = this.groups.length - 1;
    while (i > 0 && rank < this.starts[i]) i--;
    const at = this.maps[i].locate(rank - this.starts[i]);
    return location(Math.floor(at / ORDINALS), this.groups[i], at % ORDINALS);
  }
}

/** The ranks of `base` that a filter kept, renumbered 0.. in the same order. */
export class FilteredSpace implements RankSpace {
  readonly size: number;
  constructor(private readonly base: RankSpace, private readonly kept: BitSelect) {
    this.size = kept.size;
  }

  locate(rank: number): Location {
    return this.base.locate(this.kept.select(rank));
  }
}

/**
 * One split group of a union of caches: the k-way merge of the caches' index entries in canonical order, as one
 * symbol per merged entry. Symbol c (< k) is a record taken from cache c; k + c is a record cache c also holds but an
 * earlier cache supplied (the same key: the same content, read once). Symbols take w bits, the smallest power of two
 * with 2^w >= 2k (2 bits for 2 caches, 4 for up to 8). Every B entries a checkpoint holds the records kept before it
 * and, per cache, the entries consumed before it, so finding rank r is a binary search over checkpoints and a scan of
 * at most B symbols. Memory per merged entry: w/8 bytes plus 4(k + 1)/B (k = 3, 100 million records: 56 MB).
 */
export class MergeMap {
  private constructor(
    readonly size: number,
    private readonly caches: number,
    private readonly bits: number,
    private readonly words: Uint32Array,
    private readonly blockSize: number,
    private readonly blockKept: Uint32Array,
    private readonly blockConsumed: Uint32Array,
  ) {}

  /**
   * Merges `sequences` (each cache's record keys of this group, in canonical order, strictly increasing; `counts`
   * their lengths). Calls `damaged(cache, reason)`, which throws, when a sequence is out of order or not as long as its
   * count says.
   */
  static build(sequences: Array<Iterable<Uint8Array>>, counts: readonly number[], damaged: (cache: number, reason: string) => never): MergeMap {
    const k = sequences.length;
    if (k < 1 || k > 32768) throw new RangeError(`a union of 1 to 32768 caches, not ${k}`);
    const total = counts.reduce((a, b) => a + b, 0);
    if (total > MAX_RANKS) throw new RangeError(`${total} records: more than ${MAX_RANKS} in one split of a union`);
    let bits = 1;
    while (2 ** bits < 2 * k) bits *= 2;
    const perWord = 32 / bits;
    const blockSize = Math.max(256, 2 ** Math.ceil(Math.log2(4 * k)));
    const blocks = Math.ceil(total / blockSize) + 1;
    const words = new Uint32Array(Math.ceil(total / perWord));
    const blockKept = new Uint32Array(blocks);
    const blockConsumed = new Uint32Array(blocks * k);
    const consumed = new Uint32Array(k);

    const iterators = sequences.map((s) => s[Symbol.iterator]());
    const heads: Array<Uint8Array | undefined> = iterators.map((it) => next(it));
    // A binary heap of cache indices by (head key, cache index): equal keys come out lowest cache first.
    const less = (a: number, b: number) => {
      const c = compareRecordKeys(heads[a] as Uint8Array, heads[b] as Uint8Array);
      return c < 0 || (c === 0 && a < b);
    };
    const heap: number[] = [];
    const push = (c: number) => {
      let i = heap.push(c) - 1;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (!less(heap[i], heap[parent])) break;
        [heap[i], heap[parent]] = [heap[parent], heap[i]];
        i = parent;
      }
    };
    const pop = (): number => {
      const top = heap[0];
      const last = heap.pop() as number;
      if (heap.length > 0) {
        heap[0] = last;
        let i = 0;
        for (;;) {
          const l = 2 * i + 1, r = l + 1;
          let m = i;
          if (l < heap.length && less(heap[l], heap[m])) m = l;
          if (r < heap.length && less(heap[r], heap[m])) m = r;
          if (m === i) break;
          [heap[i], heap[m]] = [heap[m], heap[i]];
          i = m;
        }
      }
      return top;
    };
    for (let c = 0; c < k; c++) if (heads[c] !== undefined) push(c);

    let kept = 0;
    let last: Uint8Array | undefined;
    for (let j = 0; j < total; j++) {
      if (j % blockSize === 0) {
        blockKept[j / blockSize] = kept;
        blockConsumed.set(consumed, (j / blockSize) * k);
      }
      if (heap.length === 0) damaged(consumedShort(consumed, counts), 'its index has fewer entries than its count');
      const c = pop();
      const key = heads[c] as Uint8Array;
      const duplicate = last !== undefined && compareRecordKeys(key, last) === 0;
      if (!duplicate) {
        last = key;
        kept++;
      }
      const symbol = duplicate ? k + c : c;
      words[Math.floor(j / perWord)] |= symbol << ((j % perWord) * bits);
      consumed[c]++;
      const following = next(iterators[c]);
      if (following !== undefined) {
        if (compareRecordKeys(following, key) <= 0) damaged(c, `its index is out of order at entry ${consumed[c]}`);
        if (consumed[c] >= counts[c]) damaged(c, `its index has more entries than its count (${counts[c]})`);
        heads[c] = following;
        push(c);
      } else {
        if (consumed[c] !== counts[c]) damaged(c, `its index ends after ${consumed[c]} of ${counts[c]} entries`);
        heads[c] = undefined;
      }
    }
    blockKept[blocks - 1] = kept;
    return new MergeMap(kept, k, bits, words, blockSize, blockKept, blockConsumed);
  }

  /** Bytes held (symbols and checkpoints). */
  get bytes(): number {
    return this.words.byteLength + this.blockKept.byteLength + this.blockConsumed.byteLength;
  }

  /** The cache and ordinal of kept record r, packed as cache * 2^32 + ordinal. */
  locate(r: number): number {
    if (!(r >= 0 && r < this.size)) throw new RangeError(`rank ${r} out of range (size ${this.size})`);
    const { blockKept, blockSize, caches: k } = this;
    // The last checkpoint with at most r records kept before it: its block holds record r.
    let lo = 0, hi = blockKept.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (blockKept[mid] <= r) lo = mid;
      else hi = mid - 1;
    }
    const start = lo * blockSize;
    let need = r - blockKept[lo];
    let j = start;
    let symbol = this.symbol(j);
    for (;;) {
      if (symbol < k) {
        if (need === 0) break;
        need--;
      }
      symbol = this.symbol(++j);
    }
    let ordinal = this.blockConsumed[lo * k + symbol];
    for (let i = start; i < j; i++) if (this.symbol(i) % k === symbol) ordinal++;
    return symbol * ORDINALS + ordinal;
  }

  private symbol(j: number): number {
    const perWord = 32 / this.bits;
    return (this.words[Math.floor(j / perWord)] >>> ((j % perWord) * this.bits)) & (2 ** this.bits - 1);
  }
}

function next(it: Iterator<Uint8Array>): Uint8Array | undefined {
  const r = it.next();
  return r.done ? undefined : r.value;
}

/** The first cache that has consumed fewer entries than its count (the one whose index ended early). */
function consumedShort(consumed: Uint32Array, counts: readonly number[]): number {
  const c = counts.findIndex((n, i) => consumed[i] < n);
  return c < 0 ? 0 : c;
}

/**
 * A bitmap over [0, length) with select: the position of the i-th set bit in a binary search over per-512-bit
 * counts and a scan of at most 16 words. length/8 + length/128 bytes (100 million: 13 MB).
 */
export class BitSelect {
  readonly size: number;
  private readonly superRank: Uint32Array;

  private constructor(private readonly words: Uint32Array) {
    this.superRank = new Uint32Array(Math.ceil(words.length / 16) + 1);
    let n = 0;
    for (let w = 0; w < words.length; w++) {
      if (w % 16 === 0) this.superRank[w / 16] = n;
      n += popcount(words[w]);
    }
    this.superRank[this.superRank.length - 1] = n;
    this.size = n;
  }

  /** Sets bit i for every i in [0, length) where keep(i). */
  static build(length: number, keep: (i: number) => boolean): BitSelect {
    const words = new Uint32Array(Math.ceil(length / 32));
    for (let i = 0; i < length; i++) if (keep(i)) words[i >>> 5] |= 1 << (i & 31);
    return new BitSelect(words);
  }

  /** The position of set bit i (0 <= i < size). */
  select(i: number): number {
    if (!(i >= 0 && i < this.size)) throw new RangeError(`rank ${i} out of range (size ${this.size})`);
    const { superRank, words } = this;
    let lo = 0, hi = superRank.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (superRank[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    let need = i - superRank[lo];
    for (let w = lo * 16; ; w++) {
      let x = words[w];
      const c = popcount(x);
      if (need < c) {
        for (; need > 0; need--) x &= x - 1;
        return w * 32 + (31 - Math.clz32(x & -x));
      }
      need -= c;
    }
  }
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}
