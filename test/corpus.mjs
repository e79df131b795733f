// The corpus suite's guard: the tests over the whole external corpus (test/**/*.corpus.test.ts) need it at ../shared
// beside the project, which a clone of the repository does not have.
//
//   node test/corpus.mjs         the last line of `npm test`, which never runs them: how many there are, and whether
//                                the corpus is here (exit 0 either way).
//   node test/corpus.mjs check   the first step of `npm run test:corpus`: without the corpus, that line and exit 1,
//                                so that nobody mistakes a suite that could not run for a pass.
//
// The count is vitest's: the corpus tests as `vitest list` collects them with vitest.corpus.config.ts. Corpus test
// files read the corpus only inside their tests, so they can be listed without it; one that reads it while being
// collected cannot, and is named instead of counted.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const found = ['data', 'vectors'].every((d) => fs.existsSync(path.join(root, '..', 'shared', d)));
const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');

/** `vitest list` of the corpus suite (extra args: filters, --filesOnly), or undefined if it fails. */
function list(args) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-corpus-list-'));
  const out = path.join(dir, 'list.json');
  try {
    const r = spawnSync(process.execPath, [vitest, 'list', '--config', 'vitest.corpus.config.ts', `--json=${out}`, ...args], { cwd: root, encoding: 'utf8' });
    return r.status === 0 && fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, 'utf8')) : undefined;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function count() {
  const tests = list([]);
  if (tests) return { n: tests.length, unlisted: [] };
  // Some file failed to collect: count file by file, and name the ones that cannot be listed.
  let n = 0;
  const unlisted = [];
  for (const { file } of list(['--filesOnly']) ?? []) {
    const rel = path.relative(root, file);
    const t = list([rel]);
    if (t) n += t.filter((x) => path.resolve(root, x.file) === path.resolve(root, file)).length;
    else unlisted.push(rel);
  }
  return { n, unlisted };
}

const line = () => {
  const { n, unlisted } = count();
  const uncounted = unlisted.length ? ` (and those of ${unlisted.join(', ')}, which cannot be listed here)` : '';
  return found ? `corpus found: ${n} corpus tests${uncounted}, run by npm run test:corpus` : `corpus not found: ${n} corpus tests not run${uncounted}`;
};

if (process.argv[2] === 'check') {
  if (!found) {
    console.error(line());
    process.exit(1);
  }
} else {
  console.log(line());
}
