// Runs a TypeScript piscina worker module from the sources (tests, tsx): registers tsx in the worker thread, then
// re-exports the module's default task function. `--import tsx` in a Worker's execArgv does not reach the worker's
// module loader on Node 20, hence this bootstrap. The compiled dist/ workers do not use it.
import { workerData } from 'piscina';
import { register } from 'tsx/esm/api';

register();
const mod = await import(workerData.tsModule);
export default mod.default;
