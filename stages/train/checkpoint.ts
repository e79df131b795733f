// Checkpoints: everything needed to continue the same run, written with plain fs so it works on every backend.
//
//   <runDir>/checkpoint/state.json   position (optimizer steps, last (epoch, batch step)), seed, config hash,
//                                    input channels and labels, optimizer iterations, queue fill, tensor index
//   <runDir>/checkpoint/tensors.bin  float32 little-endian tensors back to back: parameters (`param:<name>`),
//                                    optimizer slots (`slot:<name>/m|v`), queues (`queue:<key>:<crop>`)
//   <runDir>/encoder/model.json + weights.bin   the encoder as a tf.LayersModel (loadEncoder)
//
// Data-parallel runs (several ranks): rank 0 writes the checkpoint; the other ranks' queues (a queue is per rank) are
// gathered to it and stored as `queue@<rank>:<key>:<crop>`, so that a run resumed with the same number of ranks
// continues exactly. Every rank reads the same checkpoint on resume (the run folder is on shared storage).
//
// Randomness needs no saved stream: every draw (weights at init, crops) is a pure function of (seed, epoch, sample),
// so the seed and the position are the RNG state. A checkpoint is written to a temporary folder and renamed,
// so a crash mid-write leaves the previous one intact.
import fs from 'node:fs';
import path from 'node:path';
import type { LayersModel, io } from '@tensorflow/tfjs';
import type { Encoder } from '../../schemas/encoder.js';
import { tf } from '../../pipeline/core/tensorflow.js';
import { stableHash } from '../../pipeline/core/config.js';
import { MedsslError } from '../../pipeline/core/failures.js';
import type { Communicator } from '../../pipeline/core/mpi.js';
import type { Config } from '../../schemas/config.js';
import { EmbeddingQueue } from './queue.js';
import { encoderModel } from './resnet.js';
import { Trainer, type TrainerPosition } from './trainer.js';

interface TensorEntry {
  name: string;
  shape: number[];
  /** Offset in floats. */
  offset: number;
  trainable?: boolean;
}

export interface CheckpointState {
  format: 'medssl-checkpoint/1';
  position: TrainerPosition;
  epoch: number;
  seed: number;
  configHash: string;
  channels: number;
  numLabels: number;
  optimizerIterations: number;
  queues: QueueInfo[];
  tensors: TensorEntry[];
  /** Data-parallel runs: ranks that trained (absent: 1). */
  worldSize?: number;
  /** Data-parallel runs: the queues of ranks 1..worldSize-1 (rank 0's are `queues`). */
  rankQueues?: Array<{ rank: number; queues: QueueInfo[] }>;
}

interface QueueInfo { key: string; filled: number; length: number; dim: number; crops: number }

/** The part of the config a checkpoint must agree with (everything but run-length knobs). */
export function trainingIdentity(config: Config): string {
  const { epochs: _e, checkpointEverySteps: _c, highWaterMark: _h, syncBatchNorm, ...rest } = config.train;
  // syncBatchNorm (newer than the format) counts only when it is not the default, so older checkpoints still resume.
  const train = syncBatchNorm ? rest : { ...rest, syncBatchNorm };
  return stableHash({ seed: config.seed, model: config.model, train });
}

/**
 * Saves the trainer's state (and exports the encoder). Data-parallel: every rank calls it at the same step; the queues
 * of the other ranks go to rank 0, which alone writes.
 */
export async function saveCheckpoint(trainer: Trainer, runDir: string, epoch: number): Promise<string> {
  const dir = path.join(runDir, 'checkpoint');
  const world = trainer.world;
  let others: Array<{ rank: number; queues: QueueInfo[]; data: Float32Array[] }> = [];
  if (world && world.size > 1) {
    const gathered = world.gather(world.rank === 0 ? new Uint8Array(0) : await encodeQueues(trainer.queues), 0);
    if (!gathered) return dir;
    others = gathered.slice(1).map((bytes, i) => ({ rank: i + 1, ...decodeQueues(bytes) }));
  }
  const tmp = path.join(runDir, 'checkpoint.tmp');
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const entries: TensorEntry[] = [];
  const chunks: Float32Array[] = [];
  let offset = 0;
  const put = async (name: string, t: { shape: number[]; data(): Promise<unknown> }, trainable?: boolean) => {
    const data = (await t.data()) as Float32Array;
    entries.push({ name, shape: [...t.shape], offset, ...(trainable !== undefined ? { trainable } : {}) });
    chunks.push(data);
    offset += data.length;
  };
  for (const [name, v] of trainer.store.vars) await put(`param:${name}`, v, trainer.store.trainable.has(name));
  for (const [name, v] of trainer.optimizer.slots) await put(`slot:${name}`, v);
  for (const [key, q] of trainer.queues) for (let i = 0; i < q.blocks.length; i++) await put(`queue:${key}:${i}`, q.blocks[i]);
  for (const o of others) {
    let k = 0;
    for (const q of o.queues) {
      for (let i = 0; i < q.crops; i++) {
        const data = o.data[k++];
        await put(`queue@${o.rank}:${q.key}:${i}`, { shape: [q.length, q.dim], data: async () => data });
      }
    }
  }
  const state: CheckpointState = {
    format: 'medssl-checkpoint/1', position: trainer.position, epoch, seed: trainer.config.seed, configHash: trainingIdentity(trainer.config),
    channels: trainer.channels, numLabels: trainer.numLabels, optimizerIterations: trainer.optimizer.iterations,
    queues: [...trainer.queues].map(([key, q]) => ({ key, filled: q.filled, length: q.length, dim: q.dim, crops: q.crops })), tensors: entries,
    ...(world && world.size > 1 ? { worldSize: world.size, rankQueues: others.map((o) => ({ rank: o.rank, queues: o.queues })) } : {}),
  };
  const fd = fs.openSync(path.join(tmp, 'tensors.bin'), 'w');
  for (const c of chunks) fs.writeSync(fd, Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  fs.closeSync(fd);
  fs.writeFileSync(path.join(tmp, 'state.json'), `${JSON.stringify(state, null, 1)}\n`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  await exportEncoder(trainer, path.join(runDir, 'encoder'));
  return dir;
}

/**
 * Rebuilds the trainer of `runDir`'s checkpoint; the config must match the one the run was started with.
 * Data-parallel (`world`): each rank takes its own queues; with another number of ranks than the run had, the queues
 * start empty (a note says so), as each rank's queue belongs to its share of the data.
 */
export function loadCheckpoint(runDir: string, config: Config, opts: { world?: Communicator } = {}): { trainer: Trainer; state: CheckpointState; notes: string[] } {
  const dir = path.join(runDir, 'checkpoint');
  const stateFile = path.join(dir, 'state.json');
  if (!fs.existsSync(stateFile)) throw new MedsslError('not-found', runDir, 'no checkpoint to resume from (checkpoint/state.json)');
  let state: CheckpointState;
  try {
    state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as CheckpointState;
  } catch (e) {
    throw new MedsslError('corrupt', stateFile, `checkpoint state is not JSON: ${(e as Error).message}`);
  }
  if (state.format !== 'medssl-checkpoint/1') throw new MedsslError('unsupported', stateFile, `unknown checkpoint format ${String(state.format)}`);
  if (state.configHash !== trainingIdentity(config)) {
    throw new MedsslError('invalid-value', stateFile, 'the config differs from the one this run was started with (only train.epochs, checkpointEverySteps and highWaterMark may change on resume)');
  }
  const bin = fs.readFileSync(path.join(dir, 'tensors.bin'));
  const floats = bin.length / 4;
  const need = state.tensors.reduce((m, t) => Math.max(m, t.offset + t.shape.reduce((a, d) => a * d, 1)), 0);
  if (!Number.isInteger(floats) || floats < need) throw new MedsslError('truncated', path.join(dir, 'tensors.bin'), `holds ${floats} floats, the index needs ${need}`);
  const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length));
  const trainer = new Trainer(config, state.channels, state.numLabels, opts.world ? { world: opts.world } : {});
  const tensor = (e: TensorEntry) => tf.tensor(all.subarray(e.offset, e.offset + e.shape.reduce((a, d) => a * d, 1)), e.shape, 'float32');
  for (const e of state.tensors) {
    const [kind, ...rest] = e.name.split(':');
    const name = rest.join(':');
    const t = tensor(e);
    if (kind === 'param') trainer.store.set(name, t, e.trainable ?? true);
    else if (kind === 'slot') {
      // The trainer made its slots up front (zeros): the checkpoint's replace them.
      trainer.optimizer.slots.get(name)?.dispose();
      trainer.optimizer.slots.set(name, tf.variable(t, false, undefined, 'float32'));
    }
    if (kind === 'param' || kind === 'slot') t.dispose();
  }
  const notes: string[] = [];
  const rank = opts.world?.rank ?? 0;
  const size = opts.world?.size ?? 1;
  const savedSize = state.worldSize ?? 1;
  let queues = rank === 0 ? state.queues : state.rankQueues?.find((r) => r.rank === rank)?.queues ?? [];
  const prefix = rank === 0 ? 'queue' : `queue@${rank}`;
  if (savedSize !== size) {
    if (state.queues.length) notes.push(`the run had ${savedSize} rank(s), this one has ${size}: the embedding queues start empty (each rank's queue holds its own share of the data)`);
    queues = [];
  }
  for (const q of queues) {
    const queue = new EmbeddingQueue(q.length, q.dim, q.crops);
    queue.blocks.forEach((b) => b.dispose());
    queue.blocks = Array.from({ length: q.crops }, (_, i) => tensor(state.tensors.find((e) => e.name === `${prefix}:${q.key}:${i}`) as TensorEntry) as typeof queue.blocks[number]);
    queue.filled = q.filled;
    trainer.queues.set(q.key, queue);
  }
  trainer.optimizer.iterations = state.optimizerIterations;
  trainer.position = state.position;
  return { trainer, state, notes };
}

/** A rank's queues as bytes: a JSON index (4-byte length first), padded to 4 bytes, then the float32 blocks. */
async function encodeQueues(queues: Map<string, EmbeddingQueue>): Promise<Uint8Array> {
  const info: QueueInfo[] = [...queues].map(([key, q]) => ({ key, filled: q.filled, length: q.length, dim: q.dim, crops: q.crops }));
  const json = new TextEncoder().encode(JSON.stringify(info));
  const head = 4 + Math.ceil(json.length / 4) * 4;
  const floats = info.reduce((a, q) => a + q.crops * q.length * q.dim, 0);
  const out = new Uint8Array(head + floats * 4);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  const data = new Float32Array(out.buffer, head, floats);
  let off = 0;
  for (const q of queues.values()) {
    for (const b of q.blocks) {
      data.set((await b.data()) as Float32Array, off);
      off += b.size;
    }
  }
  return out;
}

function decodeQueues(bytes: Uint8Array): { queues: QueueInfo[]; data: Float32Array[] } {
  const copy = bytes.slice();
  const len = new DataView(copy.buffer).getUint32(0, true);
  const queues = JSON.parse(new TextDecoder().decode(copy.subarray(4, 4 + len))) as QueueInfo[];
  let off = 4 + Math.ceil(len / 4) * 4;
  const data: Float32Array[] = [];
  for (const q of queues) {
    for (let i = 0; i < q.crops; i++) {
      data.push(new Float32Array(copy.buffer, off, q.length * q.dim));
      off += q.length * q.dim * 4;
    }
  }
  return { queues, data };
}

/** Writes the encoder as model.json + weights.bin (tfjs-layers' format, loadable by tf.loadLayersModel too). */
export async function exportEncoder(trainer: Trainer, dir: string): Promise<void> {
  const model = encoderModel(trainer.store, trainer.spec);
  try {
    await model.save(tf.io.withSaveHandler(async (artifacts: io.ModelArtifacts) => {
      fs.mkdirSync(dir, { recursive: true });
      const weights = artifacts.weightData as ArrayBuffer;
      fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(weights));
      const modelJson = {
        modelTopology: artifacts.modelTopology, format: artifacts.format, generatedBy: artifacts.generatedBy, convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: ['./weights.bin'], weights: artifacts.weightSpecs }],
        medssl: { featureDim: trainer.spec.featureDim, channels: trainer.spec.channels, arch: trainer.config.model.arch, step: trainer.position.step },
      };
      fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(modelJson));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
  } finally {
    model.dispose();
  }
}


/** Loads `<runDir>/encoder` (or a folder holding model.json + weights.bin) on any backend. */
export async function loadEncoder(runDir: string): Promise<Encoder> {
  const dir = fs.existsSync(path.join(runDir, 'encoder', 'model.json')) ? path.join(runDir, 'encoder') : runDir;
  const file = path.join(dir, 'model.json');
  if (!fs.existsSync(file)) throw new MedsslError('not-found', runDir, 'no exported encoder (encoder/model.json)');
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { modelTopology: object; weightsManifest: Array<{ weights: io.WeightsManifestEntry[] }> };
  const weights = fs.readFileSync(path.join(dir, 'weights.bin'));
  return tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((m) => m.weights),
    weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length),
  }));
}
