#!/usr/bin/env -S node --initial-old-space-size=256
// The medssl command line. Each command lives in pipeline/app/commands/<name>.ts and registers itself here.
// The heap flag: the main thread receives every crop set and batch as a large transferred buffer, and V8 counts
// those bytes against a garbage-collection limit that starts at a few MB; with the limit raised, full collections
// are about four times rarer (stages/augment/README.md, Speed).
// Exit codes: 0 success, 1 bad input or a failed check, 2 usage error (bad flags or config).
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../../schemas/config.js';
import { MedsslError } from '../core/failures.js';
import { packageVersion } from '../core/version.js';
import { commands } from './commands/index.js';

// `npm ci` checks the versions too (scripts/check-engines.mjs); this catches a newer install run on an older node.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  process.stderr.write(`medssl: Node.js ${process.versions.node} is too old: medssl needs Node.js >= 20.19\n`);
  process.exit(1);
}

const program = new Command('medssl')
  .description('Self-supervised pre-training on medical images: decode, normalize, augment, cache, train (SwAV), evaluate.')
  .version(packageVersion)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  .addHelpText('after', '\nExamples:\n  $ medssl info --json\n  $ medssl <command> --help');

for (const register of commands) register(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? 0 : 2;
  } else if (e instanceof ConfigError) {
    process.stderr.write(`medssl: ${e.message}\n`);
    process.exitCode = 2;
  } else if (e instanceof MedsslError) {
    process.stderr.write(`medssl: ${e.line}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`medssl: ${(e as Error)?.message ?? String(e)}\n`);
    if (process.env.MEDSSL_DEBUG) process.stderr.write(`${(e as Error)?.stack}\n`);
    process.exitCode = 1;
  }
}
