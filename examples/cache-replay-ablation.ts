// An augmentation ablation on a cached pool: decode and normalize once, then replay the cache as often as the
// ablation needs. It shows that
//   (a) replay does not decode again: a second ingest of the same files decodes nothing, and the source files are
//       deleted before the replays, which read only the LMDB cache;
//   (b) the same seed and config give bit-identical batches on a second replay (SHA-256 of every batch);
//   (c) two augmentation settings (medical intensity augmentations on / off) give different crops from identical
//       source records: same images in the same order, same crop boxes (geometry and intensity draw from separate
//       random streams), different pixels;
// and then pre-trains a few steps on each setting from the same cache, printing the losses.
//
//   npx tsx examples/cache-replay-ablation.ts [--images 256] [--steps 6] [--batch 16] [--seed 0] [--crop 28] [--width 8] [--out DIR]
//   node dist/examples/cache-replay-ablation.js ...   (after `npx tsc -p tsconfig.json`)
//
// Writes the cache, a copy of the fixtures and the two runs under --out (default: a new folder in the OS temp
// folder, removed at the end). Prints one JSON line with the key results last.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { lastValueFrom, map, take, tap, toArray } from 'rxjs';
import {
  FailureLog, Gate, augment, openTrainingPool, parseConfig, poolBatches, pretrain, settle, toBatches,
  type Batch, type Config, type ConfigInput, type StepEvent, type TrainingPool, packageRoot } from 'medssl';

const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '256' },
    steps: { type: 'string', default: '6' },
    batch: { type: 'string', default: '16' },
    seed: { type: 'string', default: '0' },
    crop: { type: 'string', default: '28' },
    width: { type: 'string', default: '8' },
    out: { type: 'string' },
  },
});
const images = Number(args.images), steps = Number(args.steps), batchSize = Number(args.batch), seed = Number(args.seed);
const crop = Number(args.crop), width = Number(args.width);
const out = args.out ? path.resolve(args.out) : fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-ablation-'));
fs.mkdirSync(out, { recursive: true });

const base: ConfigInput = {
  seed,
  augment: { global: { count: 2, size: crop, scale: [0.3, 1] }, local: { count: 2, size: Math.max(4, Math.round(crop / 2)), scale: [0.1, 0.3] }, workers: 1 },
  model: { width, depth: [1, 1], projection: { hidden: 32, out: 16 }, prototypes: 16 },
  train: { batchSize, epochs: 1, stepsPerEpoch: steps },
};
// The ablation: the paper's medical intensity augmentations (gamma, energy, linear, noise) against geometry only.
const settings: Record<string, Config> = {
  intensity: parseConfig(base),
  'geometry-only': parseConfig({ ...base, augment: { ...base.augment, gamma: { p: 0 }, energy: { p: 0 }, linear: { p: 0 }, noise: { p: 0 } } }),
};

// A private copy of the fixtures, so that deleting it later proves the replays never touch the source files.
const sourceCopy = path.join(out, 'data');
fs.cpSync(path.join(packageRoot, 'fixtures', 'data'), sourceCopy, { recursive: true });
const cachePath = path.join(out, 'cache');
const ingestFailures = new FailureLog();

// Normalization is the same for both settings, so both replay the same records (the preparation hash keys them).
let t0 = performance.now();
await (await openTrainingPool(settings.intensity, { cachePath, inputs: [sourceCopy], failures: ingestFailures })).close();
const ingestSeconds = (performance.now() - t0) / 1000;
t0 = performance.now();
const pool = await openTrainingPool(settings.intensity, { cachePath, inputs: [sourceCopy] });
const reopenSeconds = (performance.now() - t0) / 1000;
fs.rmSync(sourceCopy, { recursive: true });
console.log(`ingest: ${ingestFailures.records.length} broken files recorded, ${ingestSeconds.toFixed(2)} s; ` +
  `reopen: ${pool.ingested.images} images decoded, ${pool.ingested.skipped} sources skipped as cached, ${reopenSeconds.toFixed(2)} s`);
console.log(`pool: ${pool.size} training images (val/test splits excluded); source files deleted`);

const runs: Record<string, Replay> = {};
for (const [name, config] of Object.entries(settings)) {
  const first = await replayOnce(pool, config, images);
  const second = await replayOnce(pool, config, images);
  runs[name] = first;
  console.log(`replay "${name}": ${first.images} images in ${first.seconds.toFixed(2)} s, batches ${first.digest.slice(0, 16)}; ` +
    `second replay ${second.digest === first.digest ? 'bit-identical' : 'DIFFERENT'}`);
  first.identical = second.digest === first.digest;
}
const [a, b] = [runs.intensity, runs['geometry-only']];
const sameRecords = a.ids.join() === b.ids.join();
const sameBoxes = a.boxes === b.boxes;
console.log(`settings: same source records in the same order: ${sameRecords}; same crop boxes: ${sameBoxes}; ` +
  `same pixels: ${a.digest === b.digest}`);

// A few pre-training steps per setting from the same cache (same seed, same budget).
const losses: Record<string, number[]> = {};
for (const [name, config] of Object.entries(settings)) {
  const gate = new Gate({ window: batchSize * (config.train.highWaterMark + 1) });
  const failures = new FailureLog(gate);
  const run: number[] = (losses[name] = []);
  await pretrain({
    config, runDir: path.join(out, `run-${name}`), gate, stepsPerEpoch: steps,
    batches: (epoch) => poolBatches(pool, config, { seed, epoch, gate, failures, steps }),
    onEvent: (e) => { if (e.type === 'step') run.push((e as StepEvent).loss); },
  });
  console.log(`pre-training "${name}": losses ${run.map((l) => l.toFixed(4)).join(' ')}`);
}
await pool.close();
if (!args.out) fs.rmSync(out, { recursive: true, force: true });

console.log(JSON.stringify({
  example: 'cache-replay-ablation', seed, poolImages: pool.size, ingestSeconds, brokenFiles: ingestFailures.records.length,
  reopen: { decoded: pool.ingested.images, skipped: pool.ingested.skipped, seconds: reopenSeconds },
  replays: Object.fromEntries(Object.entries(runs).map(([k, r]) => [k, { images: r.images, seconds: r.seconds, digest: r.digest, identical: r.identical }])),
  sameRecords, sameBoxes, settingsDiffer: a.digest !== b.digest, losses,
}));

interface Replay {
  images: number;
  seconds: number;
  /** SHA-256 over every batch's ids and view bytes. */
  digest: string;
  ids: string[];
  /** The crop boxes of every set, as one string. */
  boxes: string;
  identical?: boolean;
}

/** One epoch-0 replay of the first `limit` images: cache -> gate -> augment -> settle -> toBatches. */
async function replayOnce(pool: TrainingPool, config: Config, limit: number): Promise<Replay> {
  const t = performance.now();
  const gate = new Gate({ window: 2 * config.train.batchSize });
  const failures = new FailureLog(gate);
  const ids: string[] = [];
  const boxes: string[] = [];
  const hash = crypto.createHash('sha256');
  const batches: Batch[] = await lastValueFrom(gate.source(pool.dataset.epoch({ seed, epoch: 0, failures })).pipe(
    take(limit),
    augment({ failures, config: config.augment, seed, epoch: 0 }),
    tap((set) => { ids.push(set.id); boxes.push(set.crops.map((c) => String(c.params.box)).join(';')); }),
    settle(gate),
    toBatches({ batchSize: config.train.batchSize }),
    map((batch) => {
      hash.update(batch.ids.join('\n'));
      for (const v of batch.views) hash.update(new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength));
      return batch;
    }),
    toArray(),
  ));
  if (failures.records.length) throw new Error(`replay failed: ${failures.records[0].reason}`);
  return { images: batches.reduce((n, bt) => n + bt.ids.length, 0), seconds: (performance.now() - t) / 1000, digest: hash.digest('hex'), ids, boxes: boxes.join('|') };
}

