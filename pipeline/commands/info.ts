import type { Command } from 'commander';
import { packageVersion } from '../version.js';

export function register(program: Command): void {
  program
    .command('info')
    .description('show the TensorFlow backend, its version, threads and GPUs')
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExample:\n  $ medssl info --json\n  {"backend":"tensorflow","tensorflowVersion":"2.21.0",...}')
    .action(async (opts: { json?: boolean }) => {
      const { backendInfo } = await import('../tensorflow.js');
      const info = {
        backend: backendInfo.backend,
        tensorflowVersion: backendInfo.tensorflowVersion,
        tfjsVersion: backendInfo.tfjsVersion,
        threads: backendInfo.threads,
        gpus: backendInfo.gpus,
        version: packageVersion,
        node: process.versions.node,
        notes: backendInfo.notes,
      };
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(info)}\n`);
        return;
      }
      process.stdout.write(
        `medssl ${info.version}\n` +
        `backend      ${info.backend}${info.backend === 'cpu' ? '  (pure JS: slow; see README "Native TensorFlow")' : ''}\n` +
        `TensorFlow   ${info.tensorflowVersion} (tfjs ${info.tfjsVersion})\n` +
        `threads      intra-op ${info.threads.intraOp}, inter-op ${info.threads.interOp}\n` +
        `GPUs         ${info.gpus.length ? info.gpus.join('; ') : 'none'}\n` +
        (info.notes.length ? `notes        ${info.notes.join('\n             ')}\n` : ''),
      );
    });
}
