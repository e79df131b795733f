import fs from 'node:fs';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { loadConfig } from '../../core/config.js';
import { CONFIG_TEMPLATE } from '../config-template.js';

export function register(program: Command): void {
  const config = program.command('config').description('write or check a config file');
  config
    .command('init')
    .argument('[file]', 'where to write it', 'medssl.yaml')
    .option('--force', 'overwrite an existing file')
    .description('write a commented starting config')
    .addHelpText('after', '\nExample:\n  $ medssl config init my-run.yaml && $EDITOR my-run.yaml')
    .action(function (this: Command, file: string, opts: { force?: boolean }) {
      // Refusing to overwrite is a usage error (exit 2), like any other bad flag or argument.
      if (fs.existsSync(file) && !opts.force) this.error(`error: ${file} exists (use --force to overwrite)`, { exitCode: 2 });
      fs.writeFileSync(file, CONFIG_TEMPLATE);
      process.stderr.write(`medssl: wrote ${file}\n`);
    });
  config
    .command('check')
    .argument('<file>', 'config to validate')
    .option('--json', 'print the resolved config as JSON')
    .description('validate a config and print it with every default filled in')
    .addHelpText('after', '\nExample:\n  $ medssl config check my-run.yaml')
    .action((file: string, opts: { json?: boolean }) => {
      const resolved = loadConfig(file);
      process.stdout.write(opts.json ? `${JSON.stringify(resolved)}\n` : stringify(resolved));
    });
}
