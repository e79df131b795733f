// Worker-thread scripts run from TypeScript sources (tests, tsx) and from the compiled dist/ alike.
import { fileURLToPath } from 'node:url';

/** Resolves a worker module next to `from`; under TypeScript sources the worker loads tsx to run .ts. */
export function workerScript(relative: string, from: string): { filename: string; execArgv: string[] } {
  const fromTs = from.endsWith('.ts');
  const url = new URL(relative.replace(/\.(ts|js)$/, fromTs ? '.ts' : '.js'), from);
  return { filename: fileURLToPath(url), execArgv: fromTs ? ['--import', 'tsx'] : [] };
}
