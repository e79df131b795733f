// Where a graph step's time goes: `npm run build && node dist/bench/train-profile.js 128px [steps]`.
//
// Runs one size of bench/train-sizes.json as the train bench does (random-normal crops), then traces `steps` graph
// steps (TensorFlow's FULL_TRACE run metadata) and prints one JSON line per op type as the executor ran it (after
// grappler's rewrites, so oneDNN's kernels show as _Mkl*), with its share of the summed node time, then a total line.
// Node times overlap when the inter-op pool runs nodes side by side, so shares are of summed time, not of the wall.
// MEDSSL_PROFILE_NODES=N also prints the N slowest nodes of each traced step on stderr.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);
const projectRoot = path.resolve(path.dirname(here), here.endsWith('.ts') ? '..' : path.join('..', '..'));
const size = process.argv[2] ?? '64px';
const steps = Number(process.argv[3] ?? 2);

const { parseConfig } = await import('../schemas/config.js');
const { Trainer } = await import('../stages/train/trainer.js');
const { random } = await import('../pipeline/core/random.js');
const sizes = (JSON.parse(fs.readFileSync(path.join(projectRoot, 'bench', 'train-sizes.json'), 'utf8')) as { sizes: Record<string, unknown> }).sizes;
if (!sizes[size]) throw new Error(`no size ${size} in bench/train-sizes.json (${Object.keys(sizes).join(', ')})`);
const config = parseConfig(sizes[size]);
const { global: g, local: l } = config.augment;
const b = config.train.batchSize;
const views = [...Array.from({ length: g.count }, () => ['global', g.size] as const), ...Array.from({ length: l.count }, () => ['local', l.size] as const)]
  .map(([kind, s], v) => {
    const rng = random(config.seed).stream({ epoch: 0, crop: v, purpose: 'bench/train' });
    const data = new Float32Array(b * s * s);
    for (let i = 0; i < data.length; i++) data[i] = rng.normal();
    return { kind, size: s, channels: 1, data };
  });
const batch = { epoch: 0, step: 0, ids: Array.from({ length: b }, (_, i) => `0/${i}`), modalities: Array(b).fill('CT'), views, numLabels: 0 };

const trainer = new Trainer(config, 1, 0);
const engine = trainer.graphEngine;
if (!engine) throw new Error('graph steps are off (MEDSSL_GRAPH=0): nothing to profile');
await trainer.trainStep(batch, 1000); // recorded and compiled
await trainer.trainStep(batch, 1000); // warm-up of the session
const byOp = new Map<string, { micros: number; nodes: number }>();
let wall = 0;
engine.profiling = true;
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  await trainer.trainStep(batch, 1000);
  wall += performance.now() - t0;
  if (process.env.MEDSSL_PROFILE_NODES) for (const n of [...engine.lastProfile ?? []].sort((a, b) => b.micros - a.micros).slice(0, Number(process.env.MEDSSL_PROFILE_NODES))) process.stderr.write(`${n.micros} ${n.op} ${n.name}\n`);
  for (const n of engine.lastProfile ?? []) {
    if (n.op === '_SOURCE' || n.op === '') continue;
    const e = byOp.get(n.op) ?? { micros: 0, nodes: 0 };
    e.micros += n.micros;
    e.nodes++;
    byOp.set(n.op, e);
  }
}
trainer.dispose();
const total = [...byOp.values()].reduce((a, e) => a + e.micros, 0);
for (const [op, e] of [...byOp].sort((x, y) => y[1].micros - x[1].micros)) {
  process.stdout.write(`${JSON.stringify({ name: `train/profile/${size}/${op}`, unit: 'ms/step', value: e.micros / 1000 / steps, config: { share: e.micros / total, nodesPerStep: e.nodes / steps } })}\n`);
}
process.stdout.write(`${JSON.stringify({ name: `train/profile/${size}/total`, unit: 'ms/step', value: total / 1000 / steps, config: { wallMsPerStep: wall / steps, opTypes: byOp.size } })}\n`);
