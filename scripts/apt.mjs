// Debian packages a test needs, installed before the tests (npm's pretest) when we are root with apt-get (CI).
// Elsewhere it installs nothing; the caller says what is missing.
import { spawnSync } from 'node:child_process';

/** Installs `packages` with apt-get when root and apt-get allow it; says so on stderr first. */
export function aptInstall(packages, purpose) {
  const isRoot = process.getuid?.() === 0;
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
  if (!isRoot || !hasApt) return;
  process.stderr.write(`medssl setup: installing Debian ${packages.join(', ')} for ${purpose} ...\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  spawnSync('apt-get', ['install', '-y', '-qq', ...packages], { stdio: 'inherit', env });
}
