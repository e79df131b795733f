import type { Command } from 'commander';
import { failureLine, positiveInt } from './flags.js';

interface IngestFlags {
  cache?: string;
  config?: string;
  workers: number;
  shard?: string;
  compress?: boolean;
  json?: boolean;
  trustMtime?: boolean;
}

export function register(program: Command): void {
  program
    .command('ingest')
    .description('decode and normalize INPUTs once into an LMDB cache (resumable, crash-safe, shardable)')
    .argument('[input...]', 'folders, files and archives to ingest (default: data.inputs of --config)')
    .option('--cache <path>', 'cache folder, created if missing (default: cache.path of the config)')
    .option('--config <file>', 'YAML/JSON config (its normalize and data sections define the cached images)')
    .option('--workers <n>', 'sources prepared at once, on worker threads when > 1', positiveInt('--workers'), 1)
    .option('--shard <i/n>', 'ingest only shard i of n (0-based; sources split by a stable hash of their id)')
    .option('--compress', 'byte-shuffle + deflate arrays where that saves at least 10% (also cache.compression)')
    .option('--trust-mtime', 'on a rerun, skip done files whose size, mtime and inode are unchanged without re-reading them')
    .option('--json', 'print the final summary as one JSON object on stdout')
    .addHelpText('after', [
      '',
      'A rerun skips sources already in the cache and completes an interrupted ingest.',
      'Examples:',
      '  $ medssl ingest data/ --cache cache/ --workers 2',
      '  $ medssl ingest --config my.yaml --cache cache/             # the config\'s data.inputs',
      '  $ medssl ingest data/ --cache cache-1 --shard 1/3   # one of 3 machines',
    ].join('\n'))
    .action(async function (this: Command, inputs: string[], flags: IngestFlags) {
      const { loadConfig } = await import('../../core/config.js');
      const { FailureLog } = await import('../../core/failures.js');
      const { ingestInputs } = await import('../../compose/prepare.js');
      const { parseShard } = await import('../../../stages/cache/ingest.js');

      const workers = flags.workers;
      let shard;
      try {
        shard = flags.shard ? parseShard(flags.shard) : undefined;
      } catch (e) {
        this.error(`error: ${(e as Error).message}`, { exitCode: 2 });
      }
      const config = loadConfig(flags.config);
      const cachePath = flags.cache ?? config.cache.path;
      if (!cachePath) this.error('error: no cache folder: pass --cache PATH or set cache.path in the config', { exitCode: 2 });
      // Inputs on the command line win; without them, the config's data.inputs (resolved against the config's folder).
      if (inputs.length === 0) inputs = config.data.inputs;
      if (inputs.length === 0) this.error(`error: nothing to ingest: pass INPUT... or set data.inputs in ${flags.config ? flags.config : 'a config (--config FILE)'}`, { exitCode: 2 });
      const failures = new FailureLog();
      const summary = await ingestInputs(config, inputs, cachePath, {
        workers, failures, shard, progress: process.stderr,
        compression: flags.compress ?? config.cache.compression,
        trustFileStamps: flags.trustMtime ?? false,
      });
      // New failures, one line each (capped: a large archive can have many; `cache stats` lists the remembered ones).
      const shown = failures.records.slice(0, 20);
      for (const f of shown) process.stderr.write(failureLine(f));
      if (failures.records.length > shown.length) {
        process.stderr.write(`medssl: ... and ${failures.records.length - shown.length} more failures (medssl cache stats ${cachePath})\n`);
      }
      if (flags.json) process.stdout.write(`${JSON.stringify({ ...summary, cache: cachePath, shard: flags.shard ?? null })}\n`);
      // Partial failure is a usable cache (exit 0, the failures above); a cache that gained nothing from sources that
      // all failed is not.
      if (summary.images === 0 && summary.skipped === 0 && failures.records.length > 0) {
        process.stderr.write(`medssl: nothing was ingested: all ${failures.records.length} failing source(s) above\n`);
        process.exitCode = 1;
      }
    });
}
