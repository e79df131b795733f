// Counter-based random numbers (Philox4x32-10, Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
// A stream is a pure function of (seed, epoch, sample, crop, purpose): no state is shared between samples, so values
// are bit-identical whatever the number of workers, the order in which samples finish, or which process draws them.

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of a 32x32-bit product, exact in doubles by splitting into 16-bit halves. */
function mulhi(a: number, b: number): number {
  const aH = a >>> 16, aL = a & 0xffff, bH = b >>> 16, bL = b & 0xffff;
  const mid = aH * bL + aL * bH + ((aL * bL) >>> 16);
  return (aH * bH + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32-10 of counter (c0..c3) and key (k0, k1) into `out`, without allocating (the augment hot path). */
function philoxInto(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array): void {
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/** Philox4x32-10: one 128-bit block from a 128-bit counter and a 64-bit key. */
export function philox4x32(counter: readonly [number, number, number, number], key: readonly [number, number]): [number, number, number, number] {
  const out = new Uint32Array(4);
  philoxInto(counter[0] >>> 0, counter[1] >>> 0, counter[2] >>> 0, counter[3] >>> 0, key[0] >>> 0, key[1] >>> 0, out);
  return [out[0], out[1], out[2], out[3]];
}

/** 32-bit FNV-1a of a string (sample ids and purposes become counter words). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), 0x01000193);
    if (c > 0xff) h = Math.imul(h ^ (c >>> 8), 0x01000193);
  }
  return h >>> 0;
}

/** Where a random decision belongs. `sample` is the sample's stable id (or index), `purpose` names the decision. */
export interface RandomKey {
  epoch?: number;
  sample?: string | number;
  crop?: number;
  purpose: string;
}

/** A deterministic stream of random numbers for one (seed, key). */
export class RandomStream {
  private readonly key: [number, number];
  private readonly counter: [number, number, number, number];
  private readonly block = new Uint32Array(4);
  private used = 4;
  private index = 0;

  constructor(seed: number, where: RandomKey) {
    const sample = typeof where.sample === 'number' ? where.sample >>> 0 : hash32(where.sample ?? '');
    // The seed is the key; the decision's coordinates are the counter. The last word counts blocks.
    this.key = [seed >>> 0, (Math.floor(seed / 2 ** 32) ^ hash32(where.purpose)) >>> 0];
    this.counter = [(where.epoch ?? 0) >>> 0, sample, ((where.crop ?? 0) & 0xffff) | ((hash32(where.purpose) & 0xffff) << 16), 0];
  }

  /** Next uniform 32-bit unsigned integer. */
  nextUint32(): number {
    if (this.used === 4) {
      const c = this.counter;
      philoxInto(c[0], c[1], c[2], this.index++ >>> 0, this.key[0], this.key[1], this.block);
      this.used = 0;
    }
    return this.block[this.used++];
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextUint32() >>> 5, lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** True with probability p. */
  bernoulli(p: number): boolean {
    return this.uniform() < p;
  }

  /** Standard normal (Box-Muller; one draw per call keeps the stream position simple to reason about). */
  normal(): number {
    const u = 1 - this.uniform();
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /**
   * A seeded bijection of [0, n) evaluated one index at a time (IndexShuffle): the order of n records in O(1) memory,
   * where a Fisher-Yates array would hold 4n bytes (400 MB at 100 million). Draws its round keys from this stream.
   */
  indexShuffle(n: number): IndexShuffle {
    const keys = new Uint32Array(IndexShuffle.ROUNDS);
    for (let r = 0; r < keys.length; r++) keys[r] = this.nextUint32();
    return new IndexShuffle(n, keys);
  }

  /** Fisher-Yates shuffle of [0, n). */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i]; p[i] = p[j]; p[j] = t;
    }
    return p;
  }
}

/** Murmur3's 32-bit finalizer: every input bit flips about half the output bits (the Feistel round function). */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * A pseudo-random permutation of [0, n), n < 2^32, computed per index: at(i) is the i-th element. It is an
 * alternating (unbalanced) Feistel network on the smallest power of two >= n, split into a high half of
 * ceil(b/2) bits and a low half of floor(b/2) bits. Each round adds a keyed hash of one half to the other, modulo its
 * size, so every round, and the network, is invertible. Values >= n are walked through the network again (cycle
 * walking), which stays inside [0, n) because the network is a bijection of the larger domain; the domain is under
 * 2n, so fewer than 2 passes are needed on average. Eight rounds update each half four times, the count at which a
 * Feistel network with random round functions is a strong pseudo-random permutation (Luby-Rackoff).
 */
export class IndexShuffle implements Iterable<number> {
  static readonly ROUNDS = 8;
  private readonly hiBits: number;
  private readonly loBits: number;

  constructor(readonly length: number, private readonly keys: Uint32Array) {
    if (!Number.isInteger(length) || length < 0 || length > 0xffffffff) throw new RangeError(`index shuffle: size ${length} is not an integer in [0, 2^32)`);
    if (keys.length !== IndexShuffle.ROUNDS) throw new RangeError(`index shuffle: ${IndexShuffle.ROUNDS} round keys expected`);
    const bits = length <= 1 ? 0 : Math.ceil(Math.log2(length));
    this.hiBits = Math.ceil(bits / 2);
    this.loBits = bits - this.hiBits;
  }

  /** The element at position i (0 <= i < length). */
  at(i: number): number {
    if (!(i >= 0 && i < this.length) || !Number.isInteger(i)) throw new RangeError(`index shuffle: position ${i} out of range (size ${this.length})`);
    let x = i;
    do x = this.round(x); while (x >= this.length);
    return x;
  }

  *[Symbol.iterator](): Iterator<number> {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }

  /** One pass of the network over the power-of-two domain (halves of at most 16 bits: int32 arithmetic is exact). */
  private round(x: number): number {
    const { hiBits, loBits, keys } = this;
    const hiMask = (1 << hiBits) - 1, loMask = (1 << loBits) - 1;
    // Top bits of the hash (the best mixed ones); a half of 0 bits is masked to 0, whatever a shift by 32 gives.
    const hiShift = 32 - hiBits, loShift = 32 - loBits;
    let hi = x >>> loBits, lo = x & loMask;
    for (let r = 0; r < keys.length; r += 2) {
      hi = (hi + (mix32(lo ^ keys[r]) >>> hiShift)) & hiMask;
      lo = (lo + (mix32(hi ^ keys[r + 1]) >>> loShift)) & loMask;
    }
    return ((hi << loBits) | lo) >>> 0;
  }
}

/** The seeded source: `random(seed).stream({ epoch, sample, crop, purpose })`. */
export function random(seed: number) {
  return { seed, stream: (where: RandomKey) => new RandomStream(seed, where) };
}
export type RandomSource = ReturnType<typeof random>;
