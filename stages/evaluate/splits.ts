// Label-fraction subsets of a training set: stratified by label, nested, seeded, at patient level.
//
// Every stratum (one label combination) is shuffled once per seed with the counter-based source; a fraction f keeps
// the first round(f * size) groups of each stratum's shuffle. Because all fractions cut the same shuffle, the 10%
// subset is inside the 25% subset, which is inside the 50% subset (nested), and the class balance of every subset
// follows the full set's (stratified). With patient keys the shuffled units are patients, so a patient's images are
// all in or all out; a patient's stratum is the label combination of its first image.
import { random } from '../../pipeline/core/random.js';

export interface FractionOptions {
  /** Fractions in (0, 1]. */
  fractions: number[];
  seed: number;
  /** Labels per task; row-major [n, tasks]. */
  tasks?: number;
  /** One key per sample; samples sharing a key move together. */
  patients?: ArrayLike<string | number>;
  /** The random stream's purpose: another purpose gives an independent shuffle (default 'label-fraction'). */
  purpose?: string;
}

/** Indices (ascending) of the training samples kept at each fraction. Every stratum keeps at least one group. */
export function labelFractions(labels: ArrayLike<number>, opts: FractionOptions): Map<number, Int32Array> {
  const tasks = opts.tasks ?? 1;
  const n = labels.length / tasks;
  if (!Number.isInteger(n)) throw new RangeError(`labels length ${labels.length} is not a multiple of ${tasks} tasks`);
  if (opts.patients && opts.patients.length !== n) throw new RangeError(`${opts.patients.length} patient keys for ${n} samples`);
  for (const f of opts.fractions) if (!(f > 0 && f <= 1)) throw new RangeError(`fraction ${f} is not in (0, 1]`);

  // Groups (patients or single samples) in first-seen order, each with its members.
  const groupOf = new Map<string, number[]>();
  for (let i = 0; i < n; i++) {
    const key = opts.patients ? String(opts.patients[i]) : String(i);
    const members = groupOf.get(key);
    if (members) members.push(i);
    else groupOf.set(key, [i]);
  }
  const strata = new Map<string, number[][]>();
  for (const members of groupOf.values()) {
    const first = members[0];
    const stratum = Array.from({ length: tasks }, (_, t) => labels[first * tasks + t]).join(',');
    const list = strata.get(stratum);
    if (list) list.push(members);
    else strata.set(stratum, [members]);
  }
  const shuffled = [...strata.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([stratum, groups]) => {
    const perm = random(opts.seed).stream({ sample: stratum, purpose: opts.purpose ?? 'label-fraction' }).permutation(groups.length);
    return Array.from(perm, (p) => groups[p]);
  });
  const out = new Map<number, Int32Array>();
  for (const f of opts.fractions) {
    const kept: number[] = [];
    for (const groups of shuffled) {
      const take = Math.max(1, Math.round(f * groups.length));
      for (let g = 0; g < take; g++) kept.push(...groups[g]);
    }
    out.set(f, Int32Array.from(kept.sort((a, b) => a - b)));
  }
  return out;
}
