import path from 'node:path';
import type { Command } from 'commander';
import { MedsslError } from '../../core/failures.js';
import { failureLine, positiveInt } from './flags.js';

interface PretrainFlags {
  config: string;
  out: string;
  resume?: boolean;
  cache?: string;
  workers: number;
  steps?: number;
  quiet?: boolean;
  json?: boolean;
}

// `medssl pretrain --config C --out RUN_DIR [--resume]`: one pre-training run on the cached pool
// (pipeline/compose/batches.ts), with a progress line on stderr at least every 10 s.
//
// Started by an MPI launcher (`mpirun -np N medssl pretrain ...`, `srun --mpi=pmix medssl pretrain ...`), each process
// is one rank of a data-parallel run (pipeline/core/mpi.ts, stages/train/README.md): it trains on its share of every
// batch; rank 0 alone ingests first, prints, and writes the run folder.
export function register(program: Command): void {
  program
    .command('pretrain')
    .description('pre-train an encoder (SwAV, SimCLR, supervised or hybrid); writes metrics.jsonl, checkpoints and the encoder')
    .requiredOption('--config <file>', 'YAML or JSON config')
    .requiredOption('--out <dir>', 'run folder')
    .option('--resume', 'continue the run in --out from its checkpoint')
    .option('--cache <dir>', 'LMDB cache of the pool (default: cache.path, else RUN_DIR/cache)')
    .option('--workers <n>', 'ingest threads', positiveInt('--workers'), 1)
    .option('--steps <n>', 'exactly N optimizer steps (smoke runs, benchmarks) instead of train.epochs', positiveInt('--steps'))
    .option('--quiet', 'no progress lines on stderr')
    .option('--json', 'print the run summary as one JSON object on stdout')
    .addHelpText('after', [
      '',
      'Examples:',
      '  $ medssl pretrain --config swav.yaml --out runs/swav',
      '  $ medssl pretrain --config swav.yaml --out runs/swav --resume',
      '  $ medssl pretrain --config swav.yaml --out runs/smoke --steps 20',
      '  $ mpirun -np 4 medssl pretrain --config swav.yaml --out runs/swav      (data-parallel: 4 ranks, B/4 each)',
      '  $ srun --mpi=pmix -n 16 medssl pretrain --config swav.yaml --out runs/swav',
    ].join('\n'))
    .action(async (opts: PretrainFlags) => {
      const { loadConfig } = await import('../../core/config.js');
      const { openTrainingPool, poolBatches, poolStepsPerEpoch, poolGate, labelWidth } = await import('../../compose/batches.js');
      const { FailureLog } = await import('../../core/failures.js');
      const { pretrain } = await import('../../../stages/train/pretrain.js');
      const { trainingProgress } = await import('../../../stages/train/progress.js');
      const config = loadConfig(opts.config);
      if (config.data.inputs.length === 0) throw new MedsslError('not-found', opts.config, 'data.inputs is empty: nothing to pre-train on');
      // Under an MPI launcher: join the job before TensorFlow loads (it takes this rank's GPU and share of the cores).
      const { openWorld, placeRank } = await import('../../core/mpi.js');
      const joined = openWorld();
      const world = joined && joined.size > 1 ? joined : null;
      if (world) {
        const { localBatchSize } = await import('../../compose/batches.js');
        localBatchSize(config.train.batchSize, world.size);
        for (const note of placeRank(world)) if (world.rank === 0) process.stderr.write(`medssl: ${note}\n`);
        if (world.rank !== 0) opts.quiet = true;
      }
      const gate = poolGate(config);
      const failures = new FailureLog(gate);
      const cachePath = opts.cache ?? config.cache.path ?? path.join(opts.out, 'cache');
      // Decode and normalize once into the cache (resumable); every epoch replays it in a seeded order.
      const open = () => openTrainingPool(config, { cachePath, workers: opts.workers, failures, ...(opts.quiet ? {} : { progress: process.stderr }) });
      let pool: Awaited<ReturnType<typeof open>>;
      if (world) {
        // Rank 0 ingests first; then the first rank of each other machine (a node-local cache); then the rest, which
        // find the cache complete. Never two writers on one cache at once.
        const phase = world.rank === 0 ? 0 : world.localRank === 0 ? 1 : 2;
        let opened: typeof pool | undefined;
        for (let p = 0; p < 3; p++) {
          if (phase === p) opened = await open();
          await world.barrierAsync();
        }
        pool = opened as typeof pool;
        const sizes = world.allreduce(Float64Array.of(pool.size, pool.size * pool.size), 'sum');
        if (world.size * sizes[1] !== sizes[0] * sizes[0]) {
          throw new MedsslError('invalid-value', cachePath, `the ranks see pools of different sizes (rank ${world.rank}: ${pool.size} images): every rank must cache the same inputs`);
        }
      } else {
        pool = await open();
      }
      // The first failures are shown, the ingest's and then the training's (a sample can also fail in augment); the
      // summary counts them all.
      let shown = 0;
      const show = (f: (typeof failures.records)[number]) => {
        if (shown++ < 20) process.stderr.write(failureLine(f));
        else if (shown === 21) process.stderr.write('medssl: further failures are counted in the summary, not shown\n');
      };
      failures.records.forEach(show);
      failures.failures$.subscribe(show);
      const { objectiveFor } = await import('../../../stages/train/objectives/index.js');
      const objective = objectiveFor(config);
      const numLabels = objective.labelled ? labelWidth(pool) : 0;
      // Without a self-supervised head (projection), labels are the objective's only signal.
      if (objective.labelled && !objective.heads.projection && numLabels === 0) throw new MedsslError('invalid-value', opts.config, `objective "${objective.name}" needs labelled inputs (an .npz with <split>_labels, or a manifest with labels)`);
      const stepsPerEpoch = poolStepsPerEpoch(pool, config);
      if (stepsPerEpoch < 1) throw new MedsslError('invalid-value', opts.config, `the pool has ${pool.size} images, fewer than one batch (train.batchSize ${config.train.batchSize})`);
      const totalSteps = opts.steps ?? config.train.epochs * stepsPerEpoch;
      const progress = opts.quiet ? null : trainingProgress(process.stderr, { totalSteps, batchSize: config.train.batchSize });
      try {
        const { runPaths } = await import('../../core/privacy.js');
        const result = await pretrain({
          config: runPaths(config, opts.out).config(config), runDir: opts.out, resume: opts.resume, gate, stepsPerEpoch, steps: opts.steps,
          ...(world ? { world } : {}),
          batches: (epoch) => poolBatches(pool, config, { seed: config.seed, epoch, gate, failures, numLabels, steps: stepsPerEpoch, ...(world ? { world } : {}) }),
          onEvent: (e) => {
            progress?.observe(e);
            if (opts.quiet) return;
            if (e.type === 'epoch') process.stderr.write(`epoch ${e.epoch}: mean loss ${e.meanLoss.toFixed(4)}, ${e.steps} steps, ${(e.images / e.seconds).toFixed(1)} images/s, waiting ${(100 * e.waitFraction).toFixed(1)}%\n`);
            if (e.type === 'alarm') process.stderr.write(`alarm (${e.kind}) at step ${e.step}: ${e.message}\n`);
          },
        });
        progress?.stop();
        const summary = {
          runDir: path.resolve(result.runDir), cache: path.resolve(pool.cachePath), images: pool.size, steps: result.steps,
          firstLoss: result.firstLoss, lastLoss: result.lastLoss, alarms: result.alarms.length, failures: failures.records.length,
          encoder: path.resolve(result.encoder), worldSize: world?.size ?? 1,
        };
        if (world && world.rank !== 0) return;
        if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else {
          process.stdout.write(`pretrained ${summary.steps} steps on ${summary.images} images: loss ${fmt(summary.firstLoss)} -> ${fmt(summary.lastLoss)}` +
            `${summary.alarms ? `, ${summary.alarms} alarm(s)` : ''}${summary.failures ? `, ${summary.failures} file(s) could not be used` : ''}\n` +
            `encoder: ${summary.encoder}\nmetrics: ${path.join(summary.runDir, 'metrics.jsonl')}\n`);
        }
      } finally {
        progress?.stop();
        await pool.close();
      }
    });
}

const fmt = (x: number | null) => (x === null ? '-' : x.toFixed(4));
