#!/usr/bin/env node
// The two-rank data-parallel tests run medssl under mpirun: Debian's Open MPI, installed here when mpirun is missing
// and we are root (CI). Runs before the tests (npm's pretest), like setup-chromium.mjs. Idempotent. Elsewhere it only
// says what is missing; the tests then report themselves as not run (test/mpi.mjs).
import { spawnSync } from 'node:child_process';
import { aptInstall } from './apt.mjs';

const has = () => spawnSync('sh', ['-c', 'command -v mpirun'], { stdio: 'ignore' }).status === 0;

if (!has()) {
  aptInstall(['openmpi-bin', 'libopenmpi-dev'], 'the two-rank tests');
  if (!has()) {
    process.stderr.write('medssl setup: no mpirun found; the two-rank data-parallel tests will not run. Install Open MPI (openmpi-bin, libopenmpi-dev).\n');
  }
}
