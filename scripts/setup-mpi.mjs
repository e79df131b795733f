#!/usr/bin/env node
// The two-rank data-parallel tests run medssl under mpirun: Debian's Open MPI, installed here when mpirun is missing
// and we are root (CI). Runs before the tests (npm's pretest), like setup-chromium.mjs. Idempotent. Elsewhere it only
// says what is missing; the tests then report themselves as not run (test/mpi.mjs).
import { spawnSync } from 'node:child_process';

const has = () => spawnSync('sh', ['-c', 'command -v mpirun'], { stdio: 'ignore' }).status === 0;

if (!has()) {
  const isRoot = process.getuid?.() === 0;
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
  if (isRoot && hasApt) {
    process.stderr.write('medssl setup: installing Debian Open MPI for the two-rank tests ...\n');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    spawnSync('apt-get', ['install', '-y', '-qq', 'openmpi-bin', 'libopenmpi-dev'], { stdio: 'inherit', env });
  }
  if (!has()) {
    process.stderr.write('medssl setup: no mpirun found; the two-rank data-parallel tests will not run. Install Open MPI (openmpi-bin, libopenmpi-dev).\n');
  }
}
