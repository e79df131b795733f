// Multi-modal vs uni-modal clustering (Ghesu et al. 2022), as an experiment in code: two short SwAV runs on the same
// cached pool with the same seed and the same number of steps, differing only in train.clustering, then a linear
// probe of each encoder on PneumoniaMNIST with 10% of the training labels, over a few label-subset seeds.
//   multi-modal: one equipartition (Sinkhorn-Knopp) over the whole mixed batch;
//   uni-modal:   modality-stratified batches, one equipartition per modality.
//
//   npx tsx examples/clustering-modes.ts [--steps 16] [--batch 32] [--seed 0] [--seeds 0,1,2] [--crop 28] [--width 16]
//                                   [--out DIR]
//   node dist/examples/clustering-modes.js ...   (after `npx tsc -p tsconfig.json`)
//
// Writes the cache and both runs under --out (default: a new folder in the OS temp folder, removed at the end).
// Prints a table (AUC with 95% CI) and one JSON line with the key results last. With a few steps on a tiny encoder
// the two AUCs mostly measure the harness, not the method: raise --steps (and the model) for a real comparison.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  CACHE_SCHEMA_VERSION, CacheStore, FailureLog, PRESETS, combineSeeds, extractFeatures, ingest, labelFractions, linearProbe,
  listInputs, loadEncoder, loadMedmnist, openTrainingPool, parseConfig, poolBatches, poolGate, preparationConfig,
  preparationHash, prepareImages, pretrain, selectRows, subset,
  type Config, type SourceItem, type StepEvent, packageRoot } from 'medssl';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '16' },
    batch: { type: 'string', default: '32' },
    seed: { type: 'string', default: '0' },
    crop: { type: 'string', default: '28' },
    width: { type: 'string', default: '16' },
    seeds: { type: 'string', default: '0,1,2' },
    out: { type: 'string' },
  },
});
const steps = Number(args.steps), batchSize = Number(args.batch), seed = Number(args.seed);
const crop = Number(args.crop), width = Number(args.width);
const probeSeeds = args.seeds.split(',').map(Number);
const out = args.out ? path.resolve(args.out) : fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-clustering-'));
fs.mkdirSync(out, { recursive: true });
const data = path.join(packageRoot, 'fixtures', 'data');

const base = parseConfig({
  seed,
  augment: { global: { count: 2, size: crop, scale: [0.3, 1] }, local: { count: 2, size: Math.max(4, Math.round(crop / 2)), scale: [0.1, 0.3] }, workers: 1 },
  model: { width, depth: [1, 1], projection: { hidden: 64, out: 32 }, prototypes: 32 },
  train: { objective: 'swav', batchSize, epochs: 1, stepsPerEpoch: steps },
});
const modes = ['multi-modal', 'uni-modal'] as const;

// The pool: MedMNIST archives carry no modality (their entries would all be 'OT', leaving uni-modal clustering
// nothing to separate), so the archive entries are tagged by where the images come from before they are cached:
// chest radiographs and CT-derived adrenal masks. DICOM and NIfTI files keep their own modality.
const ARCHIVE_MODALITY: Record<string, string> = { 'pneumoniamnist.npz': 'CR', 'adrenalmnist3d.npz': 'CT' };
const sourceModalities: Record<string, number> = {};
const cachePath = path.join(out, 'pool');
const ingestFailures = new FailureLog();
const store = CacheStore.open(cachePath, { compression: base.cache.compression });
const summary = await ingest({
  sources: withModality(listInputs([data])),
  prepare: (failures) => prepareImages(base, { failures }),
  store,
  normalizationHash: preparationHash(base),
  preparation: { schemaVersion: CACHE_SCHEMA_VERSION, config: preparationConfig(base) },
  failures: ingestFailures,
});
await store.close();
// Nothing left to ingest: this opens the cache for replay (val/test splits excluded).
const pool = await openTrainingPool(base, { cachePath, inputs: [] });
console.log(`pool: ${pool.size} images cached in ${summary.seconds.toFixed(1)} s (${ingestFailures.records.length} broken files recorded); ` +
  `archive entries tagged ${Object.entries(sourceModalities).map(([m, n]) => `${m} ${n}`).join(', ')}`);

// PneumoniaMNIST: 10% of the training labels, one subset per probe seed, the full validation and test splits.
const target = loadMedmnist(path.join(data, 'medmnist', 'pneumoniamnist.npz'), { modality: 'radiography' });
const fraction = 0.1;
const subsets = probeSeeds.map((s) => labelFractions(target.train.labels, { fractions: [fraction], seed: s }).get(fraction)!);

const rows: Array<{ mode: string; losses: number[]; auc: number; ci: [number, number]; perSeed: number[] }> = [];
for (const mode of modes) {
  const config: Config = { ...base, train: { ...base.train, clustering: mode } };
  const runDir = path.join(out, `run-${mode}`);
  const gate = poolGate(config);
  const failures = new FailureLog(gate);
  const losses: number[] = [];
  await pretrain({
    config, runDir, gate, stepsPerEpoch: steps,
    // uni-modal: poolBatches stratifies the batches by modality (toBatches stratify: 'modality').
    batches: (epoch) => poolBatches(pool, config, { seed, epoch, gate, failures, steps }),
    onEvent: (e) => { if (e.type === 'step') losses.push((e as StepEvent).loss); },
  });
  const encoder = await loadEncoder(runDir);
  // Features once per encoder; each seed's probe takes its 10% rows of the training features.
  const features = { train: extractFeatures(encoder, target.train), val: extractFeatures(encoder, target.val), test: extractFeatures(encoder, target.test) };
  const runs = subsets.map((idx) => {
    const r = linearProbe(encoder, subset(target.train, idx), target.val, target.test, PRESETS.quick.linear, { ...features, train: selectRows(features.train, idx) });
    r.dispose();
    return r.test;
  });
  encoder.dispose();
  const c = combineSeeds(runs);
  rows.push({ mode, losses, auc: c.auc, ci: c.ci, perSeed: runs.map((r) => r.auc) });
  console.log(`${mode}: ${losses.length} steps, loss ${losses[0]?.toFixed(4)} -> ${losses.at(-1)?.toFixed(4)}`);
}
await pool.close();
if (!args.out) fs.rmSync(out, { recursive: true, force: true });

console.log(`\nPneumoniaMNIST, linear probe, ${fraction * 100}% labels (${subsets[0].length} images), seeds ${probeSeeds.join(',')}`);
console.log('clustering    AUC     95% CI');
for (const r of rows) console.log(`${r.mode.padEnd(12)}  ${r.auc.toFixed(3)}   [${r.ci[0].toFixed(3)}, ${r.ci[1].toFixed(3)}]`);
console.log(JSON.stringify({ example: 'clustering-modes', seed, steps, batchSize, poolImages: pool.size, fraction, probeSeeds, results: rows }));

/** Tags MedMNIST archive entries with the modality of their archive (a manifest's modality column does this for files). */
async function* withModality(items: AsyncIterable<SourceItem>): AsyncGenerator<SourceItem> {
  for await (const item of items) {
    const archive = item.format === 'npz' ? ARCHIVE_MODALITY[path.basename(item.path)] : undefined;
    if (archive) sourceModalities[archive] = (sourceModalities[archive] ?? 0) + 1;
    yield archive && !item.modality ? { ...item, modality: archive } : item;
  }
}

