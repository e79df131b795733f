// The thread entry workers.ts uses when medssl runs from its TypeScript sources: registers tsx in this thread, then
// imports the worker module named last in argv and re-exports its default export (a piscina pool's task function).
// The compiled dist/ never uses it.
import { register } from 'tsx/esm/api';

register();
const mod = await import(process.argv.at(-1));
export default mod.default;
