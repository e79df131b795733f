import path from 'node:path';
import type { Command } from 'commander';

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
    .action(async (opts: { config: string; out: string; resume?: boolean }) => {
      const { loadConfig } = await import('../config.js');
      const { batchesFor, stepsPerEpochFor } = await import('../batches.js');
      const { FailureLog } = await import('../failures.js');
      const { Gate } = await import('../flow.js');
      const { pretrain } = await import('../../stages/train/pretrain.js');
      const config = loadConfig(opts.config);
      const gate = new Gate({ window: config.train.highWaterMark + 1 });
      const failures = new FailureLog(gate);
      const result = await pretrain({
        config, runDir: opts.out, resume: opts.resume, gate,
        stepsPerEpoch: config.train.stepsPerEpoch ?? stepsPerEpochFor(config),
        batches: (epoch) => batchesFor(config, { seed: config.seed, epoch, gate, failures }),
        onEvent: (e) => {
          if (e.type === 'epoch') process.stderr.write(`epoch ${e.epoch}: mean loss ${e.meanLoss.toFixed(4)}, ${e.steps} steps, ${(e.images / e.seconds).toFixed(1)} images/s, waiting ${(100 * e.waitFraction).toFixed(1)}%\n`);
          if (e.type === 'alarm') process.stderr.write(`alarm (${e.kind}) at step ${e.step}: ${e.message}\n`);
        },
      });
      process.stdout.write(`${JSON.stringify({ runDir: path.resolve(result.runDir), steps: result.steps, firstLoss: result.firstLoss, lastLoss: result.lastLoss, alarms: result.alarms.length, failures: failures.records.length })}\n`);
    });
}
