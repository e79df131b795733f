import path from 'node:path';
import type { Command } from 'commander';
import { MedsslError } from '../failures.js';

// `medssl pretrain --config C --out RUN_DIR [--resume]`: one pre-training run. Batches come from
// pipeline/batches.ts (`batchesFor`), the one place that knows where the data comes from.
export function register(program: Command): void {
  program
    .command('pretrain')
    .description('pre-train an encoder (SwAV, SimCLR, supervised or hybrid); writes metrics.jsonl, checkpoints and the encoder')
    .requiredOption('--config <file>', 'YAML or JSON config')
    .requiredOption('--out <dir>', 'run folder')
    .option('--resume', 'continue the run in --out from its checkpoint')
    .addHelpText('after', '\nExample:\n  $ medssl pretrain --config swav.yaml --out runs/swav\n  $ medssl pretrain --config swav.yaml --out runs/swav --resume')
    .option('--cache <dir>', 'LMDB cache of the pool (default: cache.path, else RUN_DIR/cache)')
    .option('--workers <n>', 'ingest threads', '1')
    .action(async (opts: { config: string; out: string; resume?: boolean; cache?: string; workers: string }) => {
      const { loadConfig } = await import('../config.js');
      const { openTrainingPool, poolBatches, poolStepsPerEpoch, poolGate, labelWidth } = await import('../batches.js');
      const { FailureLog } = await import('../failures.js');
      const { pretrain } = await import('../../stages/train/pretrain.js');
      const config = loadConfig(opts.config);
      if (config.data.inputs.length === 0) throw new MedsslError('not-found', opts.config, 'data.inputs is empty: nothing to pre-train on');
      const gate = poolGate(config);
      const failures = new FailureLog(gate);
      // Decode and normalize once into the cache (resumable); every epoch replays it in a seeded order.
      const pool = await openTrainingPool(config, {
        cachePath: opts.cache ?? config.cache.path ?? path.join(opts.out, 'cache'), workers: Number(opts.workers) || 1, failures, progress: process.stderr,
      });
      const labelled = config.train.objective === 'supervised' || config.train.objective === 'hybrid';
      const numLabels = labelled ? labelWidth(pool) : 0;
      if (config.train.objective === 'supervised' && numLabels === 0) throw new MedsslError('invalid-value', opts.config, 'objective "supervised" needs labelled inputs (an .npz with <split>_labels, or a manifest with labels)');
      try {
        const { runPaths } = await import('../privacy.js');
        const result = await pretrain({
          config: runPaths(config, opts.out).config(config), runDir: opts.out, resume: opts.resume, gate,
          stepsPerEpoch: poolStepsPerEpoch(pool, config),
          batches: (epoch) => poolBatches(pool, config, { seed: config.seed, epoch, gate, failures, numLabels, steps: poolStepsPerEpoch(pool, config) }),
          onEvent: (e) => {
            if (e.type === 'epoch') process.stderr.write(`epoch ${e.epoch}: mean loss ${e.meanLoss.toFixed(4)}, ${e.steps} steps, ${(e.images / e.seconds).toFixed(1)} images/s, waiting ${(100 * e.waitFraction).toFixed(1)}%\n`);
            if (e.type === 'alarm') process.stderr.write(`alarm (${e.kind}) at step ${e.step}: ${e.message}\n`);
          },
        });
        process.stdout.write(`${JSON.stringify({ runDir: path.resolve(result.runDir), cache: path.resolve(pool.cachePath), images: pool.size, steps: result.steps, firstLoss: result.firstLoss, lastLoss: result.lastLoss, alarms: result.alarms.length, failures: failures.records.length })}\n`);
      } finally {
        await pool.close();
      }
    });
}
