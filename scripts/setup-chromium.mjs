#!/usr/bin/env node
// The HTML report test renders the report in a real browser: Debian's chromium, installed here when missing.
// Runs before the tests (npm's pretest). Idempotent; needs root (or an existing chromium / MEDSSL_CHROMIUM).
import fs from 'node:fs';
import { aptInstall } from './apt.mjs';

const candidates = [process.env.MEDSSL_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(Boolean);
const found = () => candidates.find((p) => fs.existsSync(p));

if (!found()) {
  aptInstall(['chromium'], 'the report test');
  if (!found()) {
    process.stderr.write('medssl setup: no chromium found; the report rendering test will fail. Install Debian\'s chromium package or set MEDSSL_CHROMIUM.\n');
  }
}
