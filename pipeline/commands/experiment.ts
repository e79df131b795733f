import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { ConfigError, parseConfig, type Config } from '../../schemas/config.js';
import { loadConfig, stableHash } from '../config.js';
import { packageVersion } from '../version.js';
import { MedsslError } from '../failures.js';

interface Options {
  config?: string;
  dataset?: string;
  modality?: string;
  preset?: 'quick' | 'full';
  out: string;
  quiet?: boolean;
}

export function register(program: Command): void {
  program
    .command('experiment')
    .description('pre-train every arm, evaluate AUC at 100/50/25/10% labels, convergence and robustness; write results.json, report.md, report.html')
    .option('--config <file>', 'YAML/JSON config: evaluate.datasets, evaluate.arms, evaluate.preset (and data.inputs for pre-training)')
    .option('--dataset <file.npz>', 'one labelled MedMNIST-layout .npz to evaluate on (instead of evaluate.datasets)')
    .option('--modality <name>', 'modality of --dataset (radiography, ct, mr, ...)')
    .option('--preset <name>', 'quick (about 10 minutes on 2 cores) or full', (v) => {
      if (v !== 'quick' && v !== 'full') throw new InvalidArgumentError('expected quick or full');
      return v;
    })
    .requiredOption('--out <dir>', 'output folder')
    .option('--quiet', 'no progress lines on stderr')
    .addHelpText('after', '\nExamples:\n  $ medssl experiment --config examples/experiment.yaml --out runs/exp\n  $ medssl experiment --dataset pneumoniamnist.npz --modality radiography --preset quick --out runs/pneumonia')
    .action(async (opts: Options) => {
      const started = new Date().toISOString();
      const config = resolveConfig(opts);
      // Read the labelled data before TensorFlow loads, so bad input fails fast with its one-line error.
      const { loadMedmnist } = await import('../../stages/evaluate/datasets.js');
      const datasets = config.evaluate.datasets.map((d) => loadMedmnist(d.file, { name: d.name, modality: d.modality, slice: d.slice }));
      const { PRESETS, PAPER_ARMS, runExperiment } = await import('../../stages/evaluate/experiment.js');
      const { resultsDocument, writeReports } = await import('../../stages/evaluate/report.js');
      const { experimentArms } = await import('../arms.js');
      const provider = experimentArms(config, { cacheRoot: path.join(opts.out, 'cache'), progress: process.stderr });
      const { backendInfo } = await import('../tensorflow.js');
      const preset = presetFor(PRESETS[config.evaluate.preset], config);
      const arms = config.evaluate.arms ?? PAPER_ARMS;
      fs.mkdirSync(opts.out, { recursive: true });
      // The resolved config replays the run: `medssl experiment --config OUT/config.json --out OTHER`.
      fs.writeFileSync(path.join(opts.out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
      const metrics = fs.openSync(path.join(opts.out, 'metrics.jsonl'), 'w');
      const log = opts.quiet ? () => {} : (line: string) => process.stderr.write(`${line}\n`);
      let result;
      try {
        result = await runExperiment({
          config, preset, datasets, arms, outDir: opts.out, log,
          onEval: (ev) => fs.writeSync(metrics, `${JSON.stringify({ ...ev, time: Date.now() })}\n`),
        }, provider);
      } finally {
        fs.closeSync(metrics);
      }
      const doc = resultsDocument(result, preset, {
        command: ['medssl', ...process.argv.slice(2)].join(' '),
        config,
        configHash: stableHash(config),
        seeds: preset.seeds,
        versions: { medssl: packageVersion, node: process.versions.node, tfjs: backendInfo.tfjsVersion, tensorflow: backendInfo.tensorflowVersion },
        backend: backendInfo.backend,
        datasets: config.evaluate.datasets.map((d) => fileDigest(d.file)),
        cacheKeys: {
          ...Object.fromEntries(config.evaluate.datasets.map((d) => [d.file, fileDigest(d.file).sha256.slice(0, 16)])),
          ...(provider.cacheKeys?.() ?? {}),
        },
        started,
        finished: new Date().toISOString(),
        cpus: os.availableParallelism(),
      });
      const files = writeReports(doc, opts.out);
      process.stdout.write(summary(doc));
      process.stdout.write(`wrote ${files.json}, ${files.md}, ${files.html}\n`);
    });
}

function resolveConfig(opts: Options): Config {
  if (opts.dataset && !opts.modality) throw new ConfigError('--dataset', ['--modality is required with --dataset']);
  const config = loadConfig(opts.config);
  if (opts.config) {
    const dir = path.dirname(path.resolve(opts.config));
    config.evaluate.datasets = config.evaluate.datasets.map((d) => ({ ...d, file: path.resolve(dir, d.file) }));
  }
  if (opts.dataset) config.evaluate.datasets = [{ file: path.resolve(opts.dataset), modality: opts.modality! }];
  if (opts.preset) config.evaluate.preset = opts.preset;
  if (config.evaluate.datasets.length === 0) throw new ConfigError(opts.config ?? 'defaults', ['evaluate.datasets: expected at least one labelled dataset (or pass --dataset FILE --modality M)']);
  for (const d of config.evaluate.datasets) if (!fs.existsSync(d.file)) throw new MedsslError('not-found', d.file, 'labelled dataset not found');
  return parseConfig(config, opts.config ?? 'defaults');
}

type PresetT = import('../../stages/evaluate/experiment.js').Preset;

/** The preset with the config's fractions, seeds and protocols (fine-tuning keeps the preset's subset of them). */
export function presetFor(base: PresetT, config: Config): PresetT {
  const e = config.evaluate;
  const ft = base.finetune.fractions.filter((f) => e.fractions.includes(f));
  const fs0 = base.finetune.seeds.filter((s) => e.seeds.includes(s));
  return {
    ...base,
    fractions: e.fractions,
    seeds: e.seeds,
    protocols: e.protocols,
    primary: e.protocols.includes(base.primary) ? base.primary : e.protocols[0],
    finetune: { ...base.finetune, fractions: ft.length ? ft : [Math.min(...e.fractions)], seeds: fs0.length ? fs0 : [e.seeds[0]] },
    convergenceFraction: ft.includes(base.convergenceFraction) ? base.convergenceFraction : (ft[0] ?? Math.min(...e.fractions)),
    robustness: { ...base.robustness, protocol: e.protocols.includes(base.robustness.protocol) ? base.robustness.protocol : e.protocols[0], fraction: e.fractions.includes(base.robustness.fraction) ? base.robustness.fraction : e.fractions[0] },
    budgetSeconds: e.budgetSeconds ?? base.budgetSeconds,
  };
}

function fileDigest(file: string): { file: string; bytes: number; sha256: string } {
  const buf = fs.readFileSync(file);
  return { file, bytes: buf.length, sha256: crypto.createHash('sha256').update(buf).digest('hex') };
}

function summary(doc: import('../../stages/evaluate/report.js').ResultsDocument): string {
  const lines: string[] = [];
  for (const d of doc.datasets) {
    for (const protocol of ['linear', 'finetune', 'knn'] as const) {
      const rows = d.arms.filter((a) => a.status === 'ok' && a.protocols[protocol]);
      if (!rows.length) continue;
      const fr = Object.keys(rows[0].protocols[protocol]!).sort((a, b) => Number(b) - Number(a));
      lines.push(`${d.name} ${protocol}: ${fr.map((f) => `${Math.round(Number(f) * 100)}%`).join(' ')}`);
      for (const a of rows) lines.push(`  ${a.name.padEnd(28)} ${fr.map((f) => a.protocols[protocol]![f].auc.toFixed(3)).join(' ')}`);
    }
  }
  for (const s of doc.skipped) lines.push(`skipped ${s.name} (${s.dataset}): ${s.reason}`);
  return `${lines.join('\n')}\n`;
}
