import type { Command } from 'commander';
import { packageVersion } from '../../core/version.js';

export function register(program: Command): void {
  program
    .command('info')
    .description('show the TensorFlow backend, the device its ops run on, its version and threads, and the MPI library')
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExample:\n  $ medssl info --json\n  {"backend":"tensorflow","tensorflowVersion":"2.21.0",...}')
    .action(async (opts: { json?: boolean }) => {
      const { backendInfo } = await import('../../core/tensorflow.js');
      const { mpiLibrary, mpiLaunch } = await import('../../core/mpi.js');
      const lib = mpiLibrary();
      const launch = mpiLaunch();
      // Data-parallel pre-training (mpirun / srun): the MPI library medssl would bind, and whether this process was launched by one.
      const mpi = { library: lib.ok ? `${lib.library} (${lib.path})` : null, ...(lib.ok ? {} : { missing: lib.reason }), launchedBy: launch?.launcher ?? null };
      const info = {
        backend: backendInfo.backend,
        tensorflowVersion: backendInfo.tensorflowVersion,
        tfjsVersion: backendInfo.tfjsVersion,
        device: backendInfo.device,
        threads: backendInfo.threads,
        onednn: backendInfo.onednn,
        version: packageVersion,
        node: process.versions.node,
        notes: backendInfo.notes,
        mpi,
      };
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(info)}\n`);
        return;
      }
      process.stdout.write(
        `medssl ${info.version}\n` +
        `backend      ${info.backend}${info.backend === 'cpu' ? '  (pure JS: slow; see README "Native TensorFlow")' : ''}\n` +
        `TensorFlow   ${info.tensorflowVersion} (tfjs ${info.tfjsVersion})\n` +
        `device       ${info.device}  (where TensorFlow places this process's ops, as its runtime reports it)\n` +
        `threads      intra-op ${info.threads.intraOp}, inter-op ${info.threads.interOp}\n` +
        `oneDNN       ${info.onednn ? 'on' : 'off'}  (TF_ENABLE_ONEDNN_OPTS)\n` +
        `MPI          ${mpi.library ?? `none: ${mpi.missing}`}${mpi.launchedBy ? `, launched by ${mpi.launchedBy}` : ''}  (data-parallel pretrain)\n` +
        (info.notes.length ? `notes        ${info.notes.join('\n             ')}\n` : ''),
      );
    });
}
