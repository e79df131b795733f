import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
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
