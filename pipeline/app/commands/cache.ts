import type { Command } from 'commander';

export function register(program: Command): void {
  const cache = program.command('cache').description('check and summarise an LMDB cache written by `medssl ingest`');

  cache
    .command('verify')
    .description('read every record and check its checksum; exit 1 when any record is corrupt')
    .argument('<path>', 'cache folder')
    .option('--json', 'print {"records","bytes","corrupt","failures","schemaVersion"} on stdout')
    .addHelpText('after', '\nExample:\n  $ medssl cache verify cache/ --json\n  {"records":5856,"bytes":20516096,"corrupt":0,"failures":0,"schemaVersion":1}')
    .action(async (path: string, flags: { json?: boolean }) => {
      const { verifyCache } = await import('../../../stages/cache/verify.js');
      const report = await verifyCache(path, {
        onCorrupt: (key, reason) => process.stderr.write(`medssl: ${path}: record ${key}: ${reason}\n`),
        onIndex: (prep, reason) => process.stderr.write(`medssl: ${path}: preparation ${prep}: ${reason}: \`medssl cache index ${path}\` rebuilds it\n`),
      });
      if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else {
        process.stdout.write(`${path}: ${report.records} records, ${(report.bytes / 1e6).toFixed(1)} MB, ${report.corrupt} corrupt, ` +
          `${report.failures} failed sources, schema v${report.schemaVersion}\n`);
      }
      if (report.corrupt > 0) process.exitCode = 1;
    });

  cache
    .command('index')
    .description('(re)build the ordinal index replay reads records through, for every preparation in the cache')
    .argument('<path>', 'cache folder (written to: not on a read-only mount)')
    .option('--json', 'print one JSON object per preparation: {"preparation","counts","seconds"}')
    .addHelpText('after', [
      '',
      '`medssl ingest` keeps the index up to date; this is for a cache made before the index existed, or one whose',
      'ingest stopped before indexing. Time and disk grow with the records; memory does not.',
      'Example:',
      '  $ medssl cache index cache/',
    ].join('\n'))
    .action(async (path: string, flags: { json?: boolean }) => {
      const { indexCache } = await import('../../../stages/cache/verify.js');
      for (const s of await indexCache(path)) {
        if (flags.json) process.stdout.write(`${JSON.stringify(s)}\n`);
        else {
          const counts = Object.entries(s.counts).filter(([, n]) => n > 0).map(([g, n]) => `${n} ${g}`).join(', ') || 'no records';
          process.stdout.write(`${path}: preparation ${s.preparation}: indexed ${counts} in ${s.seconds.toFixed(1)} s\n`);
        }
      }
    });

  cache
    .command('stats')
    .description('summarise a cache by modality, origin and split, with its preparations and remembered failures')
    .argument('<path>', 'cache folder')
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExample:\n  $ medssl cache stats cache/')
    .action(async (path: string, flags: { json?: boolean }) => {
      const { cacheStats } = await import('../../../stages/cache/verify.js');
      const s = await cacheStats(path);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(s)}\n`);
        return;
      }
      const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
      const table = (title: string, groups: Record<string, { records: number; bytes: number }>) =>
        `${title}\n${Object.entries(groups).sort(([a], [b]) => a.localeCompare(b))
          .map(([k, g]) => `  ${k.padEnd(32)} ${String(g.records).padStart(9)} records  ${mb(g.bytes).padStart(10)}`).join('\n') || '  (none)'}\n`;
      process.stdout.write(
        `${path}: ${s.records} records (${mb(s.bytes)}) from ${s.sources} sources, schema v${s.schemaVersion}` +
        `${s.orphans ? `, ${s.orphans} orphan records (rerun ingest)` : ''}\n` +
        `preparations\n${Object.entries(s.preparations).map(([k, p]) => `  ${k}  ${p.records} records`).join('\n') || '  (none)'}\n` +
        table('by modality', s.byModality) + table('by source', s.bySource) + table('by split', s.bySplit) +
        `failures (${s.failures.length})\n${s.failures.map((f) => `  ${f.file}${f.id && f.id !== f.file ? ` [${f.id}]` : ''}: ${f.code}: ${f.reason}`).join('\n') || '  (none)'}\n`,
      );
    });
}
