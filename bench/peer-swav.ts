// medssl's side of the PyTorch SwAV peer (bench/swav-peer.py; the whole comparison: scripts/peer-compare.sh).
//
//   node dist/bench/peer-swav.js export --config fixtures/experiment.yaml --out runs/peer
//       Writes what the main job's "SwAV multi-modal" arm trains on, so that PyTorch can train on exactly that:
//       recipe.json (model, crops, objective, optimizer and schedule, steps), crops.bin (every batch's views in
//       order, float32, as the arm's trainer receives them: same pool, same seed, same epochs), init.bin + init.json
//       (the arm's initial parameters, from the same seed), and compare.yaml (the experiment config that evaluates
//       the peer's encoder beside medssl's with medssl's protocols).
//   node dist/bench/peer-swav.js import --out runs/peer
//       Reads the peer's trained parameters (peer.bin + peer.json, medssl's names and layouts) and writes them as a
//       medssl encoder (runs/peer/peer-encoder/model.json + weights.bin), which the 'encoder' arm kind loads.
import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../pipeline/core/config.js';
import { armConfig, armSteps } from '../pipeline/compose/arms.js';
import { openTrainingPool, poolBatches, poolGate, poolStepsPerEpoch } from '../pipeline/compose/batches.js';
import { presetFor } from '../pipeline/compose/job.js';
import { tf } from '../pipeline/core/tensorflow.js';
import { PRESETS } from '../stages/evaluate/experiment.js';
import { ParamStore } from '../stages/train/params.js';
import { addEncoderParams, encoderModel, encoderSpec } from '../stages/train/resnet.js';
import { Trainer } from '../stages/train/trainer.js';
import type { io } from '@tensorflow/tfjs';
import type { Batch } from '../schemas/records.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback?: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const command = args[0];
const configFile = flag('config', 'fixtures/experiment.yaml')!;
const out = path.resolve(flag('out', 'runs/peer')!);
const config = loadConfig(configFile);
const arm = (config.evaluate.arms ?? []).find((a) => a.kind === 'swav-multi-modal') ?? { name: 'SwAV multi-modal', kind: 'swav-multi-modal' as const, train: { objective: 'swav', clustering: 'multi-modal' } };
const cfg = armConfig(config, arm);
const preset = presetFor(PRESETS[config.evaluate.preset], config);
const steps = armSteps(cfg, preset.pretrainImages);
const channels = cfg.normalize.channels;

if (command === 'export') await exportRun();
else if (command === 'import') await importRun();
else {
  process.stderr.write('usage: peer-swav.js export|import [--config FILE] [--out DIR]\n');
  process.exitCode = 2;
}

async function exportRun(): Promise<void> {
  fs.mkdirSync(out, { recursive: true });
  const pool = await openTrainingPool(cfg, { cachePath: path.join(out, 'cache'), inputs: cfg.data.inputs, progress: process.stderr });
  const stepsPerEpoch = Math.max(1, poolStepsPerEpoch(pool, cfg));
  const sized = { ...cfg, train: { ...cfg.train, epochs: Math.ceil(steps / stepsPerEpoch), stepsPerEpoch } };
  const fd = fs.openSync(path.join(out, 'crops.bin'), 'w');
  let written = 0;
  let views: Array<{ kind: string; size: number; channels: number }> = [];
  for (let epoch = 0; written < steps; epoch++) {
    const gate = poolGate(sized);
    const batches: Batch[] = [];
    await new Promise<void>((resolve, reject) => {
      poolBatches(pool, sized, { seed: sized.seed, epoch, gate, steps: Math.min(stepsPerEpoch, steps - written) }).subscribe({
        next: (b) => {
          views = b.views.map((v) => ({ kind: v.kind, size: v.size, channels: v.channels }));
          for (const v of b.views) fs.writeSync(fd, Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength));
          written++;
        },
        error: reject,
        complete: () => resolve(),
      });
    });
    batches.length = 0;
    process.stderr.write(`peer export: epoch ${epoch}, ${written}/${steps} batches\n`);
  }
  fs.closeSync(fd);
  await pool.close();
  // The arm's initial parameters: the trainer's own initialisation from the run's seed.
  const trainer = new Trainer(cfg, channels, 0);
  writeParams(path.join(out, 'init'), [...trainer.store.vars].map(([name, v]) => ({ name, shape: v.shape, data: v.dataSync() as Float32Array })));
  const recipe = {
    about: 'what the main job\'s SwAV multi-modal arm trains on (bench/peer-swav.ts export); crops.bin holds steps x views x [batch, size, size, channels] float32, NHWC',
    steps, batchSize: cfg.train.batchSize, views, channels, seed: cfg.seed,
    model: cfg.model, train: cfg.train, spec: encoderSpec(cfg.model, channels, cfg.augment.global.size),
  };
  fs.writeFileSync(path.join(out, 'recipe.json'), `${JSON.stringify(recipe, null, 2)}\n`);
  // The comparison: no pre-training, medssl's arm and the peer's encoder, evaluated by medssl on the same protocols.
  const base = path.dirname(path.resolve(configFile));
  const abs = (p: string) => path.resolve(base, p);
  const compare = {
    ...config,
    data: { ...config.data, inputs: config.data.inputs.map(abs) },
    cache: { ...config.cache, path: path.join(out, 'cache') },
    evaluate: {
      ...config.evaluate,
      datasets: config.evaluate.datasets.map((d) => ({ ...d, file: abs(d.file) })),
      arms: [
        { name: 'no pre-training', kind: 'none' },
        { name: `${arm.name} (medssl)`, kind: 'swav-multi-modal', ...(arm.train ? { train: arm.train } : {}) },
        { name: `${arm.name} (PyTorch peer)`, kind: 'encoder', encoder: path.join(out, 'peer-encoder') },
      ],
    },
  };
  fs.writeFileSync(path.join(out, 'compare.yaml'), stringify(compare));
  process.stderr.write(`peer export: ${steps} batches of ${cfg.train.batchSize} in ${out}/crops.bin; recipe.json, init.bin, compare.yaml\n`);
}

async function importRun(): Promise<void> {
  const spec = encoderSpec(cfg.model, channels, cfg.augment.global.size);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'peer.json'), 'utf8')) as { params: Array<{ name: string; shape: number[]; offset: number }> };
  const bytes = fs.readFileSync(path.join(out, 'peer.bin'));
  const store = new ParamStore(cfg.seed);
  addEncoderParams(store, spec);
  for (const p of manifest.params) {
    if (!store.has(p.name)) continue; // the head and prototypes stay with the peer
    const n = p.shape.reduce((a, d) => a * d, 1);
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + p.offset, bytes.byteOffset + p.offset + 4 * n));
    const t = tf.tensor(data, p.shape, 'float32');
    store.set(p.name, t, true);
    t.dispose();
  }
  const model = encoderModel(store, spec);
  const dir = path.join(out, 'peer-encoder');
  // The format of stages/train/checkpoint.ts exportEncoder (model.json + weights.bin), which loadEncoder reads.
  await model.save(tf.io.withSaveHandler(async (artifacts: io.ModelArtifacts) => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(artifacts.weightData as ArrayBuffer));
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({
      modelTopology: artifacts.modelTopology, format: artifacts.format, generatedBy: 'bench/swav-peer.py (PyTorch)',
      weightsManifest: [{ paths: ['./weights.bin'], weights: artifacts.weightSpecs }],
      medssl: { featureDim: spec.featureDim, channels: spec.channels, arch: cfg.model.arch, step: steps },
    }));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  model.dispose();
  store.dispose();
  process.stderr.write(`peer import: encoder written to ${dir}\n`);
}

function writeParams(prefix: string, params: Array<{ name: string; shape: number[]; data: Float32Array }>): void {
  let offset = 0;
  const entries = params.map((p) => { const e = { name: p.name, shape: p.shape, offset }; offset += p.data.byteLength; return e; });
  const fd = fs.openSync(`${prefix}.bin`, 'w');
  for (const p of params) fs.writeSync(fd, Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength));
  fs.closeSync(fd);
  fs.writeFileSync(`${prefix}.json`, `${JSON.stringify({ params: entries }, null, 1)}\n`);
}
