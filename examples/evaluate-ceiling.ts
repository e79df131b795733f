// How much can pre-training add at 10% labels on PneumoniaMNIST with this encoder? An oracle "pre-training":
// supervised on the target's own full labelled training set, then the 10% protocols of the quick preset on top.
// No real pre-training can expect to beat this; it bounds what the experiment's arms can show.
//   npx tsx examples/evaluate-ceiling.ts [path/to/pneumoniamnist.npz]
import { freshEncoder } from '../pipeline/compose/arms.js';
import { parseConfig } from '../schemas/config.js';
import { combineSeeds } from '../stages/evaluate/auc.js';
import { loadMedmnist, subset } from '../stages/evaluate/datasets.js';
import { PRESETS } from '../stages/evaluate/experiment.js';
import { cloneEncoder, finetune, linearProbe } from '../stages/evaluate/protocols.js';
import { labelFractions } from '../stages/evaluate/splits.js';

const file = process.argv[2] ?? 'fixtures/data/medmnist/pneumoniamnist.npz';
const ds = loadMedmnist(file, { modality: 'radiography' });
const quick = PRESETS.quick;
// The product's encoder for 28 x 28 grey images, freshly initialised from a seed (what 'no pre-training' evaluates).
const config = parseConfig({ augment: { global: { size: 28 } } });
const oracle = freshEncoder(config, 1, 7);
const sup = await finetune(oracle, ds.train, ds.val, ds.test, { steps: 400, batchSize: 64, evalEvery: 50, seed: 7 });
console.log(`oracle: supervised on all ${ds.train.n} labels, test AUC ${sup.test.auc.toFixed(3)} (best step ${sup.bestStep})`);
const rows: Record<string, Array<{ auc: number; variance: number }>> = { 'linear, random encoder': [], 'linear, oracle encoder': [], 'fine-tune, from scratch': [], 'fine-tune, from oracle': [] };
for (const seed of quick.seeds) {
  const train = subset(ds.train, labelFractions(ds.train.labels, { fractions: [0.1], seed }).get(0.1)!);
  const random = freshEncoder(config, 1, seed);
  rows['linear, random encoder'].push(linearProbe(random, train, ds.val, ds.test, quick.linear).test);
  rows['linear, oracle encoder'].push(linearProbe(oracle, train, ds.val, ds.test, quick.linear).test);
  const opts = { ...quick.finetune, seed };
  rows['fine-tune, from scratch'].push((await finetune(random, train, ds.val, ds.test, opts)).test);
  rows['fine-tune, from oracle'].push((await finetune(await cloneEncoder(oracle), train, ds.val, ds.test, opts)).test);
}
for (const [name, runs] of Object.entries(rows)) {
  const c = combineSeeds(runs);
  console.log(`10% labels, ${name.padEnd(26)} AUC ${c.auc.toFixed(3)} ± ${c.sd.toFixed(3)} (${runs.map((r) => r.auc.toFixed(3)).join(', ')})`);
}
