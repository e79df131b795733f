// The last line of `npm test` about the two-rank tests (test/stages/train/mpi.test.ts): they need Open MPI's mpirun and
// libmpi, which a machine may not have. Where either is missing, vitest reports them skipped and this line says how
// many were not run and why, so that a green run without MPI is not mistaken for one that tested data-parallel
// training. Exit 0 either way. (As root, npm test installs Open MPI first: scripts/setup-mpi.mjs.)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const file = 'test/stages/train/mpi.test.ts';

/** The two-rank tests: those the file runs only where MPI is (vitest does not list skipped tests, so they are counted here). */
const count = () => (fs.readFileSync(path.join(root, file), 'utf8').match(/\bit\.runIf\(mpi\.ok\)\(/g) ?? []).length;

async function reason() {
  const v = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) return { missing: 'mpirun not found (install Open MPI: apt-get install openmpi-bin libopenmpi-dev; npm test does it when run as root)' };
  const { mpiLibrary } = await import(pathToFileURL(path.join(root, 'dist', 'pipeline', 'core', 'mpi.js')).href);
  const lib = mpiLibrary();
  if (!lib.ok) return { missing: `mpirun found but ${lib.reason}` };
  return { version: `${v.stdout.split('\n')[0].trim()}, ${lib.library}` };
}

const n = count();
const r = await reason();
console.log(r.missing ? `mpi not available: ${n} two-rank tests not run: ${r.missing}` : `mpi found (${r.version}): ${n} two-rank tests run (${file})`);
