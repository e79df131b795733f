import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { packageRoot } from '../../core/version.js';
import type { PresetName } from '../../../schemas/config.js';
import { failureLine, positiveInt, PRESET_HELP, presetName } from './flags.js';

// The main job: the bundled experiment from a fresh clone to a report. Ingest the pool into an LMDB cache, then
// pre-train every arm of the paper's table on it and evaluate them (pipeline/compose/job.ts), then print the table.
export function register(program: Command): void {
  program
    .command('run')
    .description('the main job: ingest the bundled data, pre-train every arm, evaluate, and write the report')
    .option('--config <file>', 'experiment config (default: fixtures/experiment.yaml, or fixtures/experiment-standard.yaml with --preset standard)')
    .option('--out <dir>', 'run folder (the cache inside it is reused by a second run)', 'runs/main')
    .option('--preset <name>', PRESET_HELP, presetName)
    .option('--workers <n>', 'ingest threads', positiveInt('--workers'), 2)
    .option('--json', 'print the results as one JSON object on stdout (the table, skipped arms, report paths)')
    .addHelpText('after', '\nExamples:\n  $ medssl run\n  $ medssl run --preset standard --out runs/standard\n  $ medssl run --config my-experiment.yaml --out runs/mine')
    .action(async (opts: { config?: string; out: string; preset?: PresetName; workers: number; json?: boolean }) => {
      const { loadConfig } = await import('../../core/config.js');
      const { FailureLog } = await import('../../core/failures.js');
      const { ingestInputs } = await import('../../compose/prepare.js');
      const { runExperimentJob, reportExperiment } = await import('../../compose/job.js');
      const { backendInfo } = await import('../../core/tensorflow.js');
      // The standard preset's recipe (ResNet-18 at 64 px) lives in its own config, over the bundled one.
      const config = loadConfig(opts.config ?? path.join(packageRoot, 'fixtures', opts.preset === 'standard' ? 'experiment-standard.yaml' : 'experiment.yaml'));
      if (opts.preset) config.evaluate.preset = opts.preset;
      const say = (line: string) => process.stderr.write(`${line}\n`);
      const t0 = performance.now();
      say(`medssl: backend ${backendInfo.backend} (TensorFlow ${backendInfo.tensorflowVersion}), ${config.evaluate.preset} preset, run folder ${opts.out}`);

      say('\n[1/2] ingest: decode and normalize the pool into the cache');
      const failures = new FailureLog();
      const summary = await ingestInputs(config, config.data.inputs, path.join(opts.out, 'cache', 'pool'), {
        workers: opts.workers, failures, progress: process.stderr,
      });

      say('\n[2/2] experiment: pre-train every arm on the pool, evaluate on the labelled datasets');
      const { doc, files } = await runExperimentJob(config, { out: opts.out, log: say, progress: process.stderr, command: ['medssl', ...process.argv.slice(2)].join(' ') });

      // Files that could not be used go to stderr, as `medssl ingest` prints them; stdout carries the results.
      for (const f of failures.records) process.stderr.write(failureLine(f));
      process.exitCode = reportExperiment(doc, files, { json: opts.json });
      const minutes = (performance.now() - t0) / 60000;
      say(`done in ${minutes.toFixed(1)} min; ${summary.images} images cached (${summary.skipped} sources already cached); ` +
        (failures.records.length ? `${failures.records.length} file(s) could not be used (above)` : 'every file was usable'));
      if (!fs.existsSync(files.html)) process.exitCode = 1;
    });
}
