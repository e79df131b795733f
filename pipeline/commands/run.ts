import type { Command } from 'commander';

// The main job. It grows with the stages: today it reports the backend; the full job (ingest, pre-train,
// experiment, report) is wired in pipeline/job.ts as the stages land.
export function register(program: Command): void {
  program
    .command('run')
    .description('run the main job on the bundled data (fixtures/)')
    .option('--out <dir>', 'where to write the run', 'runs/main')
    .addHelpText('after', '\nExample:\n  $ medssl run --out runs/main')
    .action(async () => {
      const { backendInfo } = await import('../tensorflow.js');
      process.stdout.write(`medssl: backend ${backendInfo.backend} (TensorFlow ${backendInfo.tensorflowVersion})\n`);
    });
}
