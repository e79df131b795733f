import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ConfigError, parseConfig, type Config, type PresetName } from '../../../schemas/config.js';
import { loadConfig } from '../../core/config.js';
import { MedsslError } from '../../core/failures.js';
import { PRESET_HELP, presetName } from './flags.js';

interface Options {
  config?: string;
  dataset?: string;
  modality?: string;
  preset?: PresetName;
  out: string;
  quiet?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('experiment')
    .description('pre-train every arm, evaluate AUC at 100/50/25/10% labels, convergence and robustness; write results.json, report.md, report.html')
    .option('--config <file>', 'YAML/JSON config: evaluate.datasets, evaluate.arms, evaluate.preset (and data.inputs for pre-training)')
    .option('--dataset <file.npz>', 'one labelled MedMNIST-layout .npz to evaluate on (instead of evaluate.datasets)')
    .option('--modality <name>', 'modality of --dataset (radiography, ct, mr, ...)')
    .option('--preset <name>', PRESET_HELP, presetName)
    .requiredOption('--out <dir>', 'output folder')
    .option('--quiet', 'no progress lines on stderr')
    .option('--json', 'print the results as one JSON object on stdout (the table, skipped arms, report paths)')
    .addHelpText('after', '\nExamples:\n  $ medssl experiment --config fixtures/experiment.yaml --out runs/exp\n  $ medssl experiment --dataset pneumoniamnist.npz --modality radiography --preset quick --out runs/pneumonia')
    .action(async (opts: Options) => {
      const config = resolveConfig(opts);
      const { runExperimentJob, reportExperiment } = await import('../../compose/job.js');
      const log = opts.quiet ? () => {} : (line: string) => process.stderr.write(`${line}\n`);
      const { doc, files } = await runExperimentJob(config, { out: opts.out, log, ...(opts.quiet ? {} : { progress: process.stderr }) });
      process.exitCode = reportExperiment(doc, files, { json: opts.json });
    });
}

function resolveConfig(opts: Options): Config {
  if (opts.dataset && !opts.modality) throw new ConfigError('--dataset', ['--modality is required with --dataset']);
  const config = loadConfig(opts.config);
  if (opts.dataset) config.evaluate.datasets = [{ file: path.resolve(opts.dataset), modality: opts.modality! }];
  if (opts.preset) config.evaluate.preset = opts.preset;
  if (config.evaluate.datasets.length === 0) throw new ConfigError(opts.config ?? 'defaults', ['evaluate.datasets: expected at least one labelled dataset (or pass --dataset FILE --modality M)']);
  for (const d of config.evaluate.datasets) if (!fs.existsSync(d.file)) throw new MedsslError('not-found', d.file, 'labelled dataset not found');
  // Without data.inputs the pre-training pool is the evaluated datasets themselves: their training splits (the pool
  // never reads val or test), with labels dropped for the self-supervised arms.
  if (config.data.inputs.length === 0) config.data.inputs = config.evaluate.datasets.map((d) => d.file);
  return parseConfig(config, opts.config ?? 'defaults');
}

