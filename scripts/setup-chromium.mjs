#!/usr/bin/env node
// The HTML report test renders the report in a real browser: Debian's chromium, installed here when missing.
// Runs before the tests (npm's pretest). Idempotent; needs root (or an existing chromium / MEDSSL_CHROMIUM).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

const candidates = [process.env.MEDSSL_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(Boolean);
const found = () => candidates.find((p) => fs.existsSync(p));

if (!found()) {
  const isRoot = process.getuid?.() === 0;
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
  if (isRoot && hasApt) {
    process.stderr.write('medssl setup: installing Debian chromium for the report test ...\n');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    spawnSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'inherit', env });
  }
  if (!found()) {
    process.stderr.write('medssl setup: no chromium found; the report rendering test will fail. Install Debian\'s chromium package or set MEDSSL_CHROMIUM.\n');
  }
}
