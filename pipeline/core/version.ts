import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

/**
 * The package's folder (package.json, fixtures/, dist/): the nearest folder above this module whose package.json is
 * medssl's. The sources sit two levels below it and dist/ three, and an installed copy lives wherever npm put it,
 * so neither a fixed depth nor the working directory will do.
 */
const packageJson: { dir: string; version: string } = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = require(file) as { name?: string; version?: string };
      if (pkg.name === 'medssl' && pkg.version) return { dir, version: pkg.version };
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`medssl's package.json is not above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
})();
export const packageRoot: string = packageJson.dir;
/** This package's version, from its package.json. */
export const packageVersion: string = packageJson.version;
