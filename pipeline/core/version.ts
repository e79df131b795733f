import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

/** The package's folder (package.json, fixtures/), from the sources and from dist/ alike. */
export const packageRoot: string = (() => {
  for (const up of ['..', '../..']) {
    const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), up);
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'fixtures'))) return dir;
  }
  return process.cwd();
})();
/** This package's version (package.json sits two levels above both pipeline/ and dist/pipeline/). */
export const packageVersion: string = (() => {
  for (const p of ['../package.json', '../../package.json']) {
    try {
      const pkg = require(p) as { name?: string; version: string };
      if (pkg.name === 'medssl') return pkg.version;
    } catch { /* try the next */ }
  }
  return '0.0.0';
})();
