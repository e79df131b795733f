// medssl's side of the PyTorch peer (bench/peer-train.py; the whole comparison: scripts/peer-compare.sh).
//
//   node dist/bench/peer-arms.js plan --config C [--arms KIND,KIND]
//       Prints the runs the comparison needs, one line each: "<arm kind> <replicate>" for every arm of the config the
//       peer can train (SimCLR; SwAV multi-modal, uni-modal, target modality only; supervised; hybrid), replicate "-" for one
//       pre-training, or 0, 1, 2... with evaluate.replicatePretraining (one per evaluation seed, with seed = config
//       seed + replicate, as medssl's).
//   node dist/bench/peer-arms.js export --config C --out DIR --arm KIND [--replicate S]
//       Writes what that arm's run trains on into DIR/KIND[/seed-S], so that PyTorch can train on exactly that:
//       recipe.json (model, crops, objective, optimizer and schedule, steps), crops.bin (every batch's views in
//       order, float32, as the arm's trainer receives them: pipeline/compose/arms.ts armBatches, the same pool, seed
//       and epochs) and init.bin + init.json (the arm's initial parameters, from the same seed).
//   node dist/bench/peer-arms.js import --config C --out DIR --arm KIND [--replicate S]
//       Reads the peer's trained parameters (peer.bin + peer.json, medssl's names and layouts) and writes them as a
//       medssl encoder in DIR/encoders/KIND[/seed-S] (model.json + weights.bin), which the 'encoder' arm kind loads.
//   node dist/bench/peer-arms.js compare --config C --out DIR [--arms KIND,KIND]
//       Writes DIR/compare.yaml: no pre-training, and for every such arm medssl's run beside the peer's encoder,
//       with a contrast between the two, evaluated by medssl's protocols.
import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../pipeline/core/config.js';
import { armBatches, armConfig, armData, armSized, armSteps, PER_TARGET } from '../pipeline/compose/arms.js';
import { labelWidth, openTrainingPool, poolGate } from '../pipeline/compose/batches.js';
import { MedsslError } from '../pipeline/core/failures.js';
import type { Config } from '../schemas/config.js';
import { presetFor } from '../pipeline/compose/job.js';
import { tf } from '../pipeline/core/tensorflow.js';
import { PAPER_ARMS, PRESETS, type ArmSpec } from '../stages/evaluate/experiment.js';
import { ParamStore } from '../stages/train/params.js';
import { addEncoderParams, encoderModel, encoderSpec } from '../stages/train/resnet.js';
import { Trainer } from '../stages/train/trainer.js';
import type { io } from '@tensorflow/tfjs';

/** The arms bench/peer-train.py can train: SimCLR, SwAV with one equipartition per batch, supervised and hybrid. */
const PEER_KINDS = ['simclr', 'swav-multi-modal', 'swav-uni-modal', 'swav-target-modality', 'supervised', 'hybrid'] as const;
type PeerKind = (typeof PEER_KINDS)[number];

const args = process.argv.slice(2);
const flag = (name: string, fallback?: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const command = args[0];
const configFile = flag('config', 'fixtures/experiment.yaml')!;
const root = path.resolve(flag('out', 'runs/peer')!);
const config = loadConfig(configFile);
const preset = presetFor(PRESETS[config.evaluate.preset], config);
// --arms simclr,hybrid: only these kinds (default: every arm the peer can train).
const only = flag('arms')?.split(',').filter(Boolean);
const arms = (config.evaluate.arms ?? PAPER_ARMS).filter((a): a is ArmSpec & { kind: PeerKind } => (PEER_KINDS as readonly string[]).includes(a.kind) && (!only?.length || only.includes(a.kind)));
const target = config.evaluate.datasets.filter((d) => !d.pretrainOnly);
// Runs are kept per kind (DIR/KIND): two arms of one kind (an ablation's variants) would share a folder.
const twice = arms.find((a, i) => arms.findIndex((b) => b.kind === a.kind) !== i);
if (twice) throw new MedsslError('invalid-value', configFile, `two arms of kind ${twice.kind}: the peer compares one arm per kind (use a config like fixtures/experiment.yaml)`);

if (command === 'plan') {
  const replicates = config.evaluate.replicatePretraining ? preset.seeds.map(String) : ['-'];
  for (const arm of arms) for (const r of replicates) process.stdout.write(`${arm.kind} ${r}\n`);
} else if (command === 'export' || command === 'import') {
  const kind = flag('arm', 'swav-multi-modal') as PeerKind;
  const arm = arms.find((a) => a.kind === kind);
  if (!arm) throw new MedsslError('invalid-value', configFile, `no arm of kind ${kind} among the config's arms the peer trains (${arms.map((a) => a.kind).join(', ') || 'none'})`);
  const replicate = flag('replicate');
  const r = replicate === undefined || replicate === '-' ? undefined : Number(replicate);
  if (r !== undefined && !(Number.isInteger(r) && r >= 0)) throw new MedsslError('invalid-value', '--replicate', `${replicate}: an evaluation seed (0, 1, ...) or -`);
  // A replicate pre-trains with config seed + replicate, as stages/evaluate/experiment.ts pretrainReplicates does.
  const cfg = armConfig({ ...config, seed: config.seed + (r ?? 0) }, arm);
  const sub = r === undefined ? kind : `${kind}/seed-${r}`;
  if (command === 'export') await exportRun(arm, cfg, path.join(root, sub));
  else await importRun(cfg, path.join(root, sub), path.join(root, 'encoders', sub));
} else if (command === 'compare') {
  writeCompare();
} else {
  process.stderr.write('usage: peer-arms.js plan|export|import|compare --config FILE --out DIR [--arm KIND] [--replicate S] [--arms KIND,KIND]\n');
  process.exitCode = 2;
}

async function exportRun(arm: ArmSpec, cfg: Config, dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const steps = armSteps(cfg, preset.pretrainImages);
  const channels = cfg.normalize.channels;
  if (PER_TARGET.has(arm.kind) && target.length !== 1) {
    throw new MedsslError('invalid-value', configFile, `the ${arm.kind} arm pre-trains per evaluation dataset: the peer exports it for exactly one (the config evaluates ${target.length})`);
  }
  // What experimentArms trains the arm on, with the one evaluation target's "other labelled datasets".
  const others = config.evaluate.datasets.filter((d) => d !== target[0]).map((d) => d.file);
  const data = armData(arm, cfg, { inputs: cfg.data.inputs, cachePath: path.join(root, 'cache'), cacheRoot: root, targetModality: target[0]?.modality ?? '', others });
  const pool = await openTrainingPool(cfg, { cachePath: data.cachePath, inputs: data.inputs, progress: process.stderr });
  const numLabels = data.labelled ? labelWidth(pool) : 0;
  const sized = armSized(pool, cfg, steps);
  const uniModal = cfg.train.objective === 'swav' && cfg.train.clustering === 'uni-modal';
  const fd = fs.openSync(path.join(dir, 'crops.bin'), 'w');
  // Labelled arms: every batch's labels [B, L] float32 (0 where absent) and row mask [B] uint8 (1: labelled).
  const fl = numLabels ? fs.openSync(path.join(dir, 'labels.bin'), 'w') : null;
  let written = 0;
  let views: Array<{ kind: string; size: number; channels: number }> = [];
  const perEpoch = sized.train.stepsPerEpoch!;
  for (let epoch = 0; written < steps; epoch++) {
    await new Promise<void>((resolve, reject) => {
      armBatches(pool, sized, data, { epoch, gate: poolGate(sized), steps: Math.min(perEpoch, steps - written) }).subscribe({
        next: (b) => {
          // The peer computes one equipartition per batch: uni-modal clustering is that only when batches are pure.
          if (uniModal && new Set(b.modalities).size > 1) {
            reject(new MedsslError('invalid-value', configFile, `batch ${written} mixes modalities (${[...new Set(b.modalities)].join(', ')}): the peer reproduces uni-modal clustering with data.sampling.pureBatches only`));
            return;
          }
          views = b.views.map((v) => ({ kind: v.kind, size: v.size, channels: v.channels }));
          for (const v of b.views) fs.writeSync(fd, Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength));
          if (fl !== null) {
            const rows = b.ids.length;
            const labels = b.labels && b.numLabels > 0 ? b.labels : new Float32Array(rows * numLabels);
            const mask = b.labels && b.numLabels > 0 ? (b.labelMask ?? new Uint8Array(rows).fill(1)) : new Uint8Array(rows);
            fs.writeSync(fl, Buffer.from(labels.buffer, labels.byteOffset, labels.byteLength));
            fs.writeSync(fl, Buffer.from(mask.buffer, mask.byteOffset, mask.byteLength));
          }
          written++;
        },
        error: reject,
        complete: () => resolve(),
      });
    });
    process.stderr.write(`peer export: ${arm.kind}, epoch ${epoch}, ${written}/${steps} batches\n`);
  }
  fs.closeSync(fd);
  if (fl !== null) fs.closeSync(fl);
  await pool.close();
  // The arm's initial parameters: the trainer's own initialisation from the run's seed.
  const trainer = new Trainer(cfg, channels, numLabels);
  writeParams(path.join(dir, 'init'), [...trainer.store.vars].map(([name, v]) => ({ name, shape: v.shape, data: v.dataSync() as Float32Array })));
  const recipe = {
    about: `what the arm "${arm.name}" trains on (bench/peer-arms.ts export); crops.bin holds steps x views x [batch, size, size, channels] float32, NHWC`,
    arm: arm.kind, steps, batchSize: cfg.train.batchSize, views, channels, seed: cfg.seed, numLabels,
    // SwAV: every batch is one equipartition (multi-modal clustering, or uni-modal over pure batches, checked above).
    ...(cfg.train.objective === 'swav' ? { equipartition: 'batch' } : {}),
    model: cfg.model, train: cfg.train, spec: encoderSpec(cfg.model, channels, cfg.augment.global.size),
  };
  fs.writeFileSync(path.join(dir, 'recipe.json'), `${JSON.stringify(recipe, null, 2)}\n`);
  process.stderr.write(`peer export: ${steps} batches of ${cfg.train.batchSize} in ${dir}/crops.bin; recipe.json, init.bin\n`);
}

/** The comparison: no pre-training, and per arm medssl's run and the peer's encoder, tested against each other. */
function writeCompare(): void {
  const base = path.dirname(path.resolve(configFile));
  const abs = (p: string) => path.resolve(base, p);
  const compare = {
    ...config,
    data: { ...config.data, inputs: config.data.inputs.map(abs) },
    cache: { ...config.cache, path: path.join(root, 'cache') },
    evaluate: {
      ...config.evaluate,
      datasets: config.evaluate.datasets.map((d) => ({ ...d, file: abs(d.file) })),
      arms: [
        { name: 'no pre-training', kind: 'none' },
        ...arms.flatMap((arm) => [
          { name: `${arm.name} (medssl)`, kind: arm.kind, ...(arm.train ? { train: arm.train } : {}) },
          { name: `${arm.name} (PyTorch peer)`, kind: 'encoder', encoder: path.join(root, 'encoders', arm.kind) },
        ]),
      ],
      contrasts: arms.map((arm) => ({ arm: `${arm.name} (medssl)`, against: `${arm.name} (PyTorch peer)` })),
    },
  };
  fs.mkdirSync(root, { recursive: true });
  fs.writeFileSync(path.join(root, 'compare.yaml'), stringify(compare));
  process.stderr.write(`peer compare: ${path.join(root, 'compare.yaml')}\n`);
}

async function importRun(cfg: Config, from: string, dir: string): Promise<void> {
  const steps = armSteps(cfg, preset.pretrainImages);
  const channels = cfg.normalize.channels;
  const spec = encoderSpec(cfg.model, channels, cfg.augment.global.size);
  const manifest = JSON.parse(fs.readFileSync(path.join(from, 'peer.json'), 'utf8')) as { params: Array<{ name: string; shape: number[]; offset: number }> };
  const bytes = fs.readFileSync(path.join(from, 'peer.bin'));
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
  // The format of stages/train/checkpoint.ts exportEncoder (model.json + weights.bin), which loadEncoder reads.
  await model.save(tf.io.withSaveHandler(async (artifacts: io.ModelArtifacts) => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(artifacts.weightData as ArrayBuffer));
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({
      modelTopology: artifacts.modelTopology, format: artifacts.format, generatedBy: 'bench/peer-train.py (PyTorch)',
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
