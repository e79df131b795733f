// The experiment job, shared by `medssl experiment` and the main job (`medssl run`): pre-train every arm on the
// cached pool, evaluate it on the labelled datasets, and write results.json, report.md, report.html, config.json
// and metrics.jsonl into `out`.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { Subject } from 'rxjs';
import type { Config } from '../../schemas/config.js';
import { writeJsonl } from '../core/bridge.js';
import { stableHash } from '../core/config.js';
import { runPaths } from '../core/privacy.js';
import { packageVersion } from '../core/version.js';
import type { EvalRecord, Preset } from '../../stages/evaluate/experiment.js';
import type { ResultsDocument } from '../../stages/evaluate/report.js';
import { ALPHA, formatP, scoredSplit, scoredSplitOf } from '../../stages/evaluate/report.js';

export interface ExperimentJobOptions {
  out: string;
  /** Progress lines on stderr (default true). */
  log?: (line: string) => void;
  /** Recorded in the provenance. */
  command?: string;
  /** A terminal here shows a progress bar (arm evaluations, current stage, ETA) instead of the log lines. */
  progress?: NodeJS.WriteStream;
}

export async function runExperimentJob(config: Config, opts: ExperimentJobOptions): Promise<{ doc: ResultsDocument; files: { json: string; md: string; html: string } }> {
  const started = new Date().toISOString();
  // Read the labelled data before TensorFlow loads, so bad input fails fast with its one-line error.
  const { loadMedmnist } = await import('../../stages/evaluate/datasets.js');
  const paths = runPaths(config, opts.out);
  const datasets = config.evaluate.datasets.map((d) => {
    // With data.hashPaths neither a dataset nor its task is named after its file unless the config names it.
    const base = path.basename(d.file).replace(/\.npz$/i, '');
    const ds = { ...loadMedmnist(d.file, { name: d.name ?? paths.hashed(base), modality: d.modality, slice: d.slice }), ...(d.pretrainOnly ? { pretrainOnly: true } : {}) };
    return config.data.hashPaths ? { ...ds, tasks: ds.tasks.map((t) => t.split(base).join(paths.hashed(base))) } : ds;
  });
  const { PRESETS, PAPER_ARMS, runExperiment } = await import('../../stages/evaluate/experiment.js');
  const { resultsDocument, writeReports } = await import('../../stages/evaluate/report.js');
  const { experimentArms } = await import('./arms.js');
  const { backendInfo } = await import('../core/tensorflow.js');
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  // Under the experiment's own bar (a terminal) the pool's ingest stays quiet; elsewhere it prints its summary line.
  const provider = experimentArms(config, { cacheRoot: path.join(opts.out, 'cache'), ...(opts.progress?.isTTY ? {} : { progress: process.stderr }) });
  const preset = presetFor(PRESETS[config.evaluate.preset], config);
  const arms = config.evaluate.arms ?? PAPER_ARMS;
  fs.mkdirSync(opts.out, { recursive: true });
  // The resolved config replays the run: `medssl experiment --config OUT/config.json --out OTHER` (its paths are
  // relative to OUT, never absolute; with data.hashPaths they are hashes, and it does not replay).
  fs.writeFileSync(path.join(opts.out, 'config.json'), `${JSON.stringify(paths.config(config), null, 2)}\n`);
  const evals = new Subject<EvalRecord & { time: number }>();
  const metrics = writeJsonl(evals, path.join(opts.out, 'metrics.jsonl'), { flags: 'w' });
  const bar = experimentProgress(opts.progress, arms.length * datasets.filter((d) => !d.pretrainOnly).length, log);
  let result, metricsError: unknown;
  try {
    result = await runExperiment({
      config, preset, datasets, arms, outDir: opts.out, log: bar.log,
      onEval: (ev) => evals.next({ ...ev, time: Date.now() }),
    }, provider);
  } finally {
    bar.stop();
    // The file is flushed and closed before the job returns or its error reaches the command's exit: every eval
    // reported so far is a complete line on disk.
    evals.complete();
    metricsError = await metrics.then(() => undefined, (e: unknown) => e ?? new Error('metrics.jsonl: write failed'));
  }
  if (metricsError) throw metricsError;
  const doc = resultsDocument(result, preset, {
    command: paths.text(opts.command ?? ['medssl', ...process.argv.slice(2)].join(' ')),
    config: paths.config(config),
    configHash: stableHash(config),
    seeds: preset.seeds,
    versions: { medssl: packageVersion, node: process.versions.node, tfjs: backendInfo.tfjsVersion, tensorflow: backendInfo.tensorflowVersion },
    backend: backendInfo.backend,
    datasets: config.evaluate.datasets.map((d) => ({ ...fileDigest(d.file), file: paths.file(d.file) })),
    cacheKeys: {
      ...Object.fromEntries(config.evaluate.datasets.map((d) => [paths.file(d.file), fileDigest(d.file).sha256.slice(0, 16)])),
      ...Object.fromEntries(Object.entries(provider.cacheKeys?.() ?? {}).map(([k, v]) => [paths.text(k), v])),
    },
    started,
    finished: new Date().toISOString(),
    cpus: os.availableParallelism(),
  });
  for (const d of doc.datasets) d.file = paths.file(d.file);
  return { doc, files: writeReports(doc, opts.out) };
}

/**
 * On a terminal, one bar over the arm evaluations (each arm on each dataset), with the current stage and an ETA;
 * elsewhere (logs, CI) the runner's lines as they come.
 */
function experimentProgress(out: NodeJS.WriteStream | undefined, total: number, log: (line: string) => void) {
  if (!out?.isTTY) return { log, stop: () => {} };
  const bar = new cliProgress.SingleBar({
    stream: out,
    format: 'experiment [{bar}] {value}/{total} arms | ETA {eta_formatted} | {stage}',
    barsize: 20,
    hideCursor: true,
    etaBuffer: 4,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, 0, { stage: 'starting' });
  return {
    log: (line: string) => {
      const stage = line.length > 90 ? `${line.slice(0, 87)}...` : line;
      if (/: (evaluated in|skipped) /.test(line)) bar.increment(1, { stage });
      else bar.update({ stage });
    },
    stop: () => bar.stop(),
  };
}

/** The preset with the config's fractions, seeds and protocols (fine-tuning keeps the preset's subset of them). */
export function presetFor(base: Preset, config: Config): Preset {
  const e = config.evaluate;
  const ft = base.finetune.fractions.filter((f) => e.fractions.includes(f));
  const fs0 = base.finetune.seeds.filter((s) => e.seeds.includes(s));
  return {
    ...base,
    fractions: e.fractions,
    seeds: e.seeds,
    protocols: e.protocols,
    primary: e.protocols.includes(base.primary) ? base.primary : e.protocols[0],
    finetune: { ...base.finetune, fractions: ft.length ? ft : [Math.min(...e.fractions)], seeds: fs0.length ? fs0 : [e.seeds[0]] },
    convergenceFraction: ft.includes(base.convergenceFraction) ? base.convergenceFraction : (ft[0] ?? Math.min(...e.fractions)),
    robustness: { ...base.robustness, protocol: e.protocols.includes(base.robustness.protocol) ? base.robustness.protocol : e.protocols[0], fraction: e.fractions.includes(base.robustness.fraction) ? base.robustness.fraction : e.fractions[0] },
    budgetSeconds: e.budgetSeconds ?? base.budgetSeconds,
    pretrainImages: e.pretrainImages ?? base.pretrainImages,
  };
}

function fileDigest(file: string): { file: string; bytes: number; sha256: string } {
  const buf = fs.readFileSync(file);
  return { file, bytes: buf.length, sha256: crypto.createHash('sha256').update(buf).digest('hex') };
}

/**
 * What `medssl experiment` and `medssl run` print when the job is done: the table on stdout (or one JSON object with
 * --json), every skipped arm on stderr with its reason, and the exit code: 1 when every pre-training arm was skipped
 * (the table then compares nothing), else 0.
 */
export function reportExperiment(doc: ResultsDocument, files: { json: string; md: string; html: string }, opts: { json?: boolean }): number {
  for (const s of doc.skipped) process.stderr.write(`medssl: arm "${s.name}" (${s.dataset}) skipped: ${s.reason}\n`);
  if (opts.json) {
    const table = doc.datasets.map((d) => ({
      dataset: d.name,
      arms: d.arms.map((a) => ({
        name: a.name, kind: a.kind, status: a.status, ...(a.reason ? { reason: a.reason } : {}),
        auc: Object.fromEntries(Object.entries(a.protocols).map(([p, byFraction]) => [p, Object.fromEntries(Object.entries(byFraction ?? {}).map(([f, r]) => [f, r.auc]))])),
      })),
    }));
    process.stdout.write(`${JSON.stringify({ results: path.resolve(files.json), report: path.resolve(files.html), markdown: path.resolve(files.md), seconds: doc.seconds, overBudget: doc.overBudget, datasets: table, skipped: doc.skipped })}\n`);
  } else {
    process.stdout.write(experimentSummary(doc));
    process.stdout.write(`report: ${path.resolve(files.html)}\n        ${path.resolve(files.md)}, ${path.resolve(files.json)}\n`);
  }
  const pretraining = doc.datasets.flatMap((d) => d.arms.filter((a) => a.kind !== 'none' && a.kind !== 'random'));
  if (pretraining.length > 0 && pretraining.every((a) => a.status === 'skipped')) {
    process.stderr.write('medssl: every pre-training arm was skipped, so the table compares nothing (reasons above)\n');
    return 1;
  }
  return 0;
}

/** The results as a plain-text table per dataset and protocol (AUC at each label fraction). */
export function experimentSummary(doc: ResultsDocument): string {
  const lines: string[] = [];
  for (const d of doc.datasets) {
    for (const protocol of ['linear', 'finetune', 'knn'] as const) {
      const rows = d.arms.filter((a) => a.status === 'ok' && a.protocols[protocol]);
      if (!rows.length) continue;
      const fr = Object.keys(rows[0].protocols[protocol]!).sort((a, b) => Number(b) - Number(a));
      const seeds = rows[0].protocols[protocol]![fr[0]].seeds.length;
      lines.push(`${d.name}, ${protocol === 'linear' ? 'linear probe' : protocol === 'finetune' ? 'fine-tuned' : 'kNN'} (${seeds} seed${seeds > 1 ? 's' : ''}): ${scoredSplit(d)} AUC at ${fr.map((f) => `${Math.round(Number(f) * 100)}%`).join(' / ')} labels`);
      const name = Math.max(28, ...rows.map((a) => a.name.length));
      for (const a of rows) {
        lines.push(`  ${a.name.padEnd(name)} ${fr.map((f) => {
          const r = a.protocols[protocol]![f];
          const mark = r.pVsNone === undefined ? '' : r.pVsNone < ALPHA ? ` p=${formatP(r.pVsNone)}` : ' n.d.';
          return `${r.auc.toFixed(3)}${mark}`.padEnd(15);
        }).join(' ').trimEnd()}`);
      }
    }
    for (const c of d.contrasts ?? []) {
      for (const [protocol, byFraction] of Object.entries(c.protocols)) {
        const cells = Object.entries(byFraction ?? {}).sort(([a], [b]) => Number(b) - Number(a))
          .map(([f, v]) => `${Math.round(Number(f) * 100)}% ${v.delta >= 0 ? '+' : ''}${v.delta.toFixed(3)} ${v.p < ALPHA ? `p=${formatP(v.p)}` : 'n.d.'}`);
        lines.push(`${d.name}, ${c.arm} - ${c.against} (${protocol}): ${cells.join(', ')}`);
      }
    }
  }
  lines.push(`p: paired DeLong test against no pre-training (same ${scoredSplitOf(doc)} set, label subsets and seeds); n.d.: no difference (p >= ${ALPHA})`);
  for (const s of doc.skipped) lines.push(`skipped ${s.name} (${s.dataset}): ${s.reason}`);
  return `${lines.join('\n')}\n`;
}
