// A worker module for the launcher's tests: draws from the random source in a thread. As a piscina task it returns
// the draws; as a raw thread it posts the draws for workerData.keys.
import { parentPort, workerData } from 'node:worker_threads';
import { random } from '../../pipeline/core/random.js';

export type DrawKey = readonly [sample: string, crop: number, purpose: string];

export default function draws(keys: DrawKey[]): number[][] {
  return keys.map(([sample, crop, purpose]) => {
    const r = random(7).stream({ epoch: 3, sample, crop, purpose });
    return Array.from({ length: 8 }, () => r.uniform());
  });
}

const raw = workerData as { keys?: DrawKey[] } | null;
if (raw?.keys) parentPort?.postMessage(draws(raw.keys));
