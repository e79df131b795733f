// Launching medssl under mpirun for the two-rank tests and the distributed bench: whether it can run here (and why
// not), and the command line: loopback only, oversubscription allowed (two ranks on a busy 2-core machine), no
// binding to cores, one TensorFlow thread pair per rank, and Open MPI's consent to run as root where tests run as root
// (CI containers).
import { spawnSync } from 'node:child_process';
import { mpiLibrary } from '../../pipeline/core/mpi.js';

export interface MpiStatus {
  ok: boolean;
  /** Why the two-rank tests cannot run here (one line), when they cannot. */
  reason: string;
  version: string;
}

export function mpiStatus(): MpiStatus {
  const v = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) return { ok: false, reason: 'mpirun not found (Open MPI: apt-get install openmpi-bin libopenmpi-dev; npm test installs it when run as root)', version: '' };
  const lib = mpiLibrary();
  if (!lib.ok) return { ok: false, reason: `mpirun found but ${lib.reason}`, version: '' };
  const version = v.stdout.split('\n')[0].trim();
  if (!/Open MPI/.test(version)) return { ok: false, reason: `${version}: the test launcher speaks Open MPI's mpirun flags`, version };
  return { ok: true, reason: '', version: `${version}; ${lib.library}` };
}

/** `mpirun ... node <args>` for `ranks` ranks on this machine, and the environment to run it with. */
export function mpirunCommand(ranks: number, nodeArgs: string[], env: NodeJS.ProcessEnv = {}): { command: string; args: string[]; env: NodeJS.ProcessEnv } {
  const root = process.getuid?.() === 0;
  const full: NodeJS.ProcessEnv = {
    ...process.env,
    TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1',
    // Loopback and shared memory only; no fork warnings from a process with threads (Node).
    OMPI_MCA_btl: 'self,vader,tcp', OMPI_MCA_btl_tcp_if_include: 'lo', OMPI_MCA_oob_tcp_if_include: 'lo',
    OMPI_MCA_mpi_warn_on_fork: '0', OMPI_MCA_btl_vader_single_copy_mechanism: 'none',
    // The ranks share this machine's cores with each other (and other work): a waiting rank yields its core instead of
    // spinning on it. On a cluster, where each rank has its own cores, Open MPI's default (spinning) is right.
    OMPI_MCA_mpi_yield_when_idle: '1',
    ...(root ? { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' } : {}),
    ...env,
  };
  return { command: 'mpirun', args: ['--oversubscribe', '--bind-to', 'none', '-np', String(ranks), process.execPath, ...nodeArgs], env: full };
}
