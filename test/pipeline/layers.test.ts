// The layers of the code point down only: schemas (the records) <- pipeline/core (what stages share) <- stages <-
// pipeline/compose (ingest, pools, arms, the job) <- pipeline/app (the CLI). A reader, and this test, can tell a
// layer by its folder. Within the stages, a stage reads no other stage's files: what two stages need sits in
// stages/kernels (the pixel kernels), which imports no stage, and the few exceptions are listed below with why.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.(ts|mjs)$/.test(e.name) && !e.parentPath.includes('assembly'))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)));
}

/** Every relative module a file imports (static and dynamic), as a path from the repository root. */
function imports(file: string): string[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  return [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)]
    .map((m) => path.relative(root, path.resolve(path.dirname(path.join(root, file)), m[1])));
}

const layerOf = (p: string): string | null =>
  /^schemas\//.test(p) ? 'schemas'
    : /^pipeline\/core\//.test(p) ? 'core'
    : /^stages\//.test(p) ? 'stages'
      : /^pipeline\/compose\//.test(p) ? 'compose'
        : /^pipeline\/app\//.test(p) ? 'app'
          : /^pipeline\/index\./.test(p) ? 'api' : null;
const RANK: Record<string, number> = { schemas: 0, core: 1, stages: 2, compose: 3, app: 4, api: 4 };

/** The dataflow stages (stages/<name>/); stages/kernels is not one of them but what they share. */
const STAGES = new Set(['source', 'decode', 'normalize', 'cache', 'augment', 'batch', 'train', 'evaluate']);
const SHARED = 'kernels';

/** A stage importing another stage's file, `importer -> imported`, and why it is not moved to a shared place. */
const CROSS_STAGE: Record<string, string> = {
  // The .npy/.npz container and the format sniffing are what source lists by: decode parses the same way, so an
  // item source listed is the item decode reads (one parser for the entries source names and decode opens).
  'stages/decode/decode.ts -> stages/source/npy.ts': 'decode reads the arrays of the archives source lists',
  'stages/decode/decode.ts -> stages/source/source.ts': 'decode sniffs a file\'s format as source did (detectFormat)',
  // Augment and batch share one pool of crop-set buffers: batch gives each back once stacked (a type only).
  'stages/batch/batch.ts -> stages/augment/buffers.ts': 'batch hands crop-set buffers back to augment\'s pool',
  // Evaluation reads MedMNIST archives for its labelled datasets, with the source stage's reader.
  'stages/evaluate/datasets.ts -> stages/source/npy.ts': 'evaluation datasets are MedMNIST .npz archives',
  // Labelled colour images become grey as the pool's do, with normalize's own conversion.
  'stages/evaluate/datasets.ts -> stages/normalize/intensity.ts': 'labelled images get the pool\'s channel conversion',
  // Fine-tuning (an evaluation protocol) trains the encoder: it runs the trainer's TensorFlow graph engine and
  // optimizers rather than a second copy of them, so a fine-tuned step is a training step.
  'stages/evaluate/finetune-step.ts -> stages/train/graph/engine.ts': 'fine-tuning runs the trainer\'s graph engine',
  'stages/evaluate/finetune-step.ts -> stages/train/graph/graph-step.ts': 'fine-tuning runs the trainer\'s graph step',
  'stages/evaluate/finetune-step.ts -> stages/train/graph/libtensorflow.ts': 'fine-tuning runs on the trainer\'s libtensorflow binding',
  'stages/evaluate/finetune-step.ts -> stages/train/optimizers.ts': 'fine-tuning uses the trainer\'s optimizers',
};

const stageOf = (p: string): string | null => /^stages\/([^/]+)\//.exec(p)?.[1] ?? null;

describe('layers', () => {
  const files = [...sources('pipeline'), ...sources('stages'), ...sources('schemas')];

  it('every product file sits in a layer', () => {
    expect(files.filter((f) => layerOf(f) === null)).toEqual([]);
    expect(files.filter((f) => layerOf(f) === 'core').length).toBeGreaterThan(5);
  });

  it('imports only point down (the records import nothing of ours, the core no stage, stages no composition, composition no command)', () => {
    const upward: string[] = [];
    for (const f of files) {
      const from = layerOf(f)!;
      for (const target of imports(f)) {
        const to = layerOf(target);
        if (to === null || from === to) continue;
        if (RANK[to] > RANK[from]) upward.push(`${f} -> ${target}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('a stage imports no other stage\'s files (what two stages need sits in stages/kernels), but for the listed few', () => {
    expect(fs.readdirSync(path.join(root, 'stages')).filter((d) => fs.statSync(path.join(root, 'stages', d)).isDirectory()).sort())
      .toEqual([...STAGES, SHARED].sort());
    const crossing: string[] = [];
    for (const f of files) {
      const from = stageOf(f);
      if (from === null) continue;
      for (const target of imports(f)) {
        const to = stageOf(target);
        if (to === null || to === from || (to === SHARED && STAGES.has(from))) continue;
        crossing.push(`${f} -> ${target.replace(/\.js$/, '.ts')}`);
      }
    }
    // Every crossing is listed, and every listed one still exists (the list does not outlive the code).
    expect(crossing.sort()).toEqual(Object.keys(CROSS_STAGE).sort());
  });
});
