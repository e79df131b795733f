// results.json, report.md and report.html of an experiment.
//
// results.json is the machine-readable record: `arms` is the headline table (primary dataset and protocol, one row
// per evaluated arm, `fractions` keyed "1", "0.5", "0.25", "0.1" with `auc` and `ci`), `datasets` holds every
// protocol, per-seed value, curve, convergence and robustness result, and `provenance` what is needed to replay.
// report.html is self-contained (inline CSS and SVG, no scripts); every string from data or configs is escaped.
import fs from 'node:fs';
import path from 'node:path';
import type { ArmResult, DatasetResult, ExperimentResult, FractionResult, Preset, Protocol } from './experiment.js';
import { escapeHtml, lineChart, type Series } from './svg.js';

export interface Provenance {
  command: string;
  config: unknown;
  configHash: string;
  seeds: number[];
  versions: Record<string, string>;
  backend: string;
  datasets: Array<{ file: string; bytes: number; sha256: string }>;
  /** Cache keys of the data the arms pre-trained on (from the cache stage, when wired). */
  cacheKeys: Record<string, string>;
  started: string;
  finished: string;
  cpus: number;
}

export interface HeadlineArm {
  name: string;
  kind: string;
  pretrained: boolean;
  dataset: string;
  protocol: Protocol;
  /** Per fraction; `pVsNone`: two-sided p of the paired DeLong test against no pre-training (absent for that arm). */
  fractions: Record<string, { auc: number; ci: [number, number]; sd: number; seeds: number[]; pVsNone?: number; vsNone?: FractionResult['vsNone']; vsNoneBn?: FractionResult['vsNoneBn'] }>;
  convergenceSavedPercent: number | null;
}

export interface ResultsDocument {
  schema: 'medssl.experiment/1';
  primary: { dataset: string; protocol: Protocol };
  arms: HeadlineArm[];
  skipped: Array<{ name: string; kind: string; dataset: string; reason: string }>;
  datasets: DatasetResult[];
  preset: Preset;
  seconds: number;
  overBudget: boolean;
  provenance: Provenance;
}

/** The results document; the headline table is the first dataset with the preset's primary protocol. */
export function resultsDocument(result: ExperimentResult, preset: Preset, provenance: Provenance): ResultsDocument {
  const first = result.datasets[0];
  const protocol = preset.primary;
  const arms: HeadlineArm[] = (first?.arms ?? []).filter((a) => a.status === 'ok').map((a) => ({
    name: a.name,
    kind: a.kind,
    pretrained: a.pretrained,
    dataset: first.name,
    protocol,
    fractions: Object.fromEntries(Object.entries(a.protocols[protocol] ?? {}).map(([f, r]) => [f, { auc: r.auc, ci: r.ci, sd: r.sd, seeds: r.seeds, ...(r.vsNone ? { pVsNone: r.pVsNone, vsNone: r.vsNone } : {}), ...(r.vsNoneBn ? { vsNoneBn: r.vsNoneBn } : {}) }])),
    convergenceSavedPercent: a.convergence?.savedPercent ?? null,
  }));
  const skipped = result.datasets.flatMap((d) => d.arms.filter((a) => a.status === 'skipped').map((a) => ({ name: a.name, kind: a.kind, dataset: d.name, reason: a.reason ?? '' })));
  return { schema: 'medssl.experiment/1', primary: { dataset: first?.name ?? '', protocol }, arms, skipped, datasets: result.datasets, preset, seconds: result.seconds, overBudget: result.overBudget, provenance };
}

/** Writes results.json, report.md and report.html into `outDir`; returns their paths. */
export function writeReports(doc: ResultsDocument, outDir: string): { json: string; md: string; html: string } {
  fs.mkdirSync(outDir, { recursive: true });
  const json = path.join(outDir, 'results.json'), md = path.join(outDir, 'report.md'), html = path.join(outDir, 'report.html');
  fs.writeFileSync(json, `${JSON.stringify(doc, null, 2)}\n`);
  fs.writeFileSync(md, renderMarkdown(doc));
  fs.writeFileSync(html, renderHtml(doc));
  return { json, md, html };
}

const PROTOCOL_NAMES: Record<Protocol, string> = { linear: 'linear probe', finetune: 'fine-tuning', knn: 'kNN' };
const pct = (f: string) => `${Math.round(Number(f) * 100)}%`;
/** The significance level below which a difference from no pre-training is reported as one. */
export const ALPHA = 0.05;
export const formatP = (p: number) => (p < 0.001 ? '<0.001' : p.toFixed(3));
/** "Δ +0.021, p 0.012", or "no difference (Δ +0.004, p 0.41)" when p >= ALPHA; '' for the no-pre-training arm. */
export const versusNone = (r: Pick<FractionResult, 'vsNone'> | undefined) => {
  const v = r?.vsNone;
  if (!v) return '';
  const text = `Δ ${v.delta >= 0 ? '+' : ''}${v.delta.toFixed(3)}, p ${formatP(v.p)}`;
  return v.p >= ALPHA ? `no difference (${text})` : text;
};
const cell = (r: FractionResult | undefined) => (r ? `${r.auc.toFixed(3)} [${r.ci[0].toFixed(3)}, ${r.ci[1].toFixed(3)}]${r.seeds.length > 1 ? ` ±${r.sd.toFixed(3)}` : ''}${r.vsNone ? `; ${versusNone(r)}` : ''}` : '-');
/** The contrasts of a dataset as rows: "arm − against", protocol, then one Δ/p text per fraction. */
function contrastRows(d: DatasetResult): { fractions: string[]; rows: Array<{ label: string; protocol: Protocol; cells: string[] }> } | null {
  if (!d.contrasts?.length) return null;
  const fractions = [...new Set(d.contrasts.flatMap((c) => Object.values(c.protocols).flatMap((t) => Object.keys(t ?? {}))))].sort((a, b) => Number(b) - Number(a));
  const rows = d.contrasts.flatMap((c) => protocolsOf(d).filter((p) => c.protocols[p]).map((p) => ({
    label: `${c.arm} − ${c.against}`, protocol: p, cells: fractions.map((f) => (c.protocols[p]![f] ? versusNone({ vsNone: c.protocols[p]![f] }) : '-')),
  })));
  return { fractions, rows };
}

/**
 * The pre-training runs of a dataset's arms as rows: per arm, one value per run (" / " between the runs of replicated
 * pre-training). The code entropy is a fraction of ln K: near 1, the codes stayed close to uniform.
 */
const trainingCaption = (d: DatasetResult) => `Pre-training (means over each run's first and last ${d.arms.find((a) => a.training?.length)!.training![0].window} steps)`;
const TRAINING_HEAD = ['arm', 'runs', 'loss, first → last steps', 'code entropy (of ln K)', 'prototype usage', 'alarms'];
function trainingRows(d: DatasetResult): string[][] {
  return d.arms.filter((a) => a.training?.length).map((a) => {
    const runs = a.training!;
    const each = (f: (t: (typeof runs)[number]) => string | undefined) => (runs.some((t) => f(t) !== undefined) ? runs.map((t) => f(t) ?? '-').join(' / ') : '-');
    const alarms = [...new Set(runs.flatMap((t) => Object.keys(t.alarms)))].map((k) => `${k} ${runs.map((t) => t.alarms[k] ?? 0).join(' / ')}`).join('; ');
    return [
      a.name, `${runs.length} × ${runs[0].steps} steps`, each((t) => `${t.loss[0].toFixed(3)} → ${t.loss[1].toFixed(3)}`),
      each((t) => t.codeEntropy?.toFixed(2)), each((t) => t.prototypeUsage?.toFixed(2)), alarms || 'none',
    ];
  });
}

const protocolsOf = (d: DatasetResult): Protocol[] => (['finetune', 'linear', 'knn'] as Protocol[]).filter((p) => d.arms.some((a) => a.protocols[p]));
const fractionsOf = (d: DatasetResult, p: Protocol): string[] =>
  [...new Set(d.arms.flatMap((a) => Object.keys(a.protocols[p] ?? {})))].sort((a, b) => Number(b) - Number(a));
/**
 * Text from data or configs in report.md, escaped as the HTML report escapes it: Markdown renders inline HTML, so
 * `& < > " '` become entities; then the characters that make links, images, emphasis, code or table cells are
 * backslash-escaped (CommonMark 2.4), and line breaks become spaces, so a name cannot break out of its cell.
 */
const mdText = (s: string) => escapeHtml(s).replace(/[\\`*_[\]|~!]/g, '\\$&').replace(/[\r\n]+/g, ' ');
/** A fenced code block that the text cannot close: the fence is longer than any run of backticks in it. */
const mdCode = (s: string) => {
  const fence = '`'.repeat(Math.max(3, ...[...s.matchAll(/`+/g)].map((m) => m[0].length + 1)));
  return [fence, s.replace(/[\r\n]+/g, ' '), fence];
};

/** The mean saving when every seed reached the target; else how many did. */
/** Steps to the target, interpolated between evaluations: one decimal is all they resolve. */
const stepsText = (steps: number | null | undefined) => (steps == null ? 'never' : Number.isInteger(steps) ? String(steps) : steps.toFixed(1));

const savedText = (c: NonNullable<ArmResult['convergence']>) =>
  c.savedPercent !== null ? `${c.savedPercent.toFixed(0)}%` : `reached in ${c.reached}/${c.perSeed.length} seeds`;

/** Whether every seed pre-trained its own encoder (evaluate.replicatePretraining). */
const replicated = (doc: ResultsDocument) =>
  (doc.provenance.config as { evaluate?: { replicatePretraining?: boolean } } | null)?.evaluate?.replicatePretraining === true;
const REPLICATED = 'Every seed pre-trained its own encoder, so seed spreads and p-values include the pre-training\'s run-to-run variation.';

/** The split a dataset's AUCs are of (results written before scoreOn existed scored the test split). */
export const scoredSplit = (d: DatasetResult): 'test' | 'validation' => d.scored ?? 'test';
const sizesText = (d: DatasetResult) => scoredSplit(d) === 'validation'
  ? `scored on the validation split, ${d.sizes.test} images; probes select on ${d.sizes.val} held out of train; train ${d.sizes.train}`
  : `train/val/test ${d.sizes.train}/${d.sizes.val}/${d.sizes.test}`;
const SELECTION = 'Scored on the validation split, for choosing a recipe: the test set was not used.';
/** The split a whole document's AUCs are of: 'validation' when any dataset was scored on it. */
export const scoredSplitOf = (doc: ResultsDocument): 'test' | 'validation' => (doc.datasets.some((d) => scoredSplit(d) === 'validation') ? 'validation' : 'test');
const selecting = (doc: ResultsDocument) => scoredSplitOf(doc) === 'validation';

export function renderMarkdown(doc: ResultsDocument): string {
  const out: string[] = [];
  out.push('# Experiment report', '');
  out.push(`Preset \`${doc.preset.name}\`, seeds ${doc.provenance.seeds.join(', ')}, backend ${doc.provenance.backend}, ${doc.seconds.toFixed(0)} s. ` +
    'AUC: mean over seeds [95% interval: DeLong test-set variance plus seed variance] ± seed standard deviation; ' +
    'Δ and p: the paired DeLong test against no pre-training on the same test set, label subsets and seeds (seeds combined), ' +
    `"no difference" where p >= ${ALPHA}.` + (replicated(doc) ? ` ${REPLICATED}` : '') + (selecting(doc) ? ` ${SELECTION}` : '') +
    (doc.overBudget ? ` **Over the preset's budget of ${doc.preset.budgetSeconds} s.**` : ''), '');
  for (const d of doc.datasets) {
    out.push(`## ${mdText(d.name)} (${mdText(d.modality)}; ${sizesText(d)})`, '');
    for (const p of protocolsOf(d)) {
      const fr = fractionsOf(d, p);
      out.push(`### ${PROTOCOL_NAMES[p]}`, '');
      out.push(`| arm | pre-trained | ${fr.map(pct).join(' | ')} |`, `|---|---|${fr.map(() => '---|').join('')}`);
      for (const a of d.arms.filter((x) => x.status === 'ok')) out.push(`| ${mdText(a.name)} | ${a.pretrained ? 'yes' : 'no'} | ${fr.map((f) => cell(a.protocols[p]?.[f])).join(' | ')} |`);
      out.push('');
    }
    const contrasts = contrastRows(d);
    if (contrasts) {
      out.push('### Contrasts (paired test of one arm against another: same test set, label subsets and seeds)', '');
      out.push(`| contrast | protocol | ${contrasts.fractions.map(pct).join(' | ')} |`, `|---|---|${contrasts.fractions.map(() => '---|').join('')}`);
      for (const r of contrasts.rows) out.push(`| ${mdText(r.label)} | ${PROTOCOL_NAMES[r.protocol]} | ${r.cells.join(' | ')} |`);
      out.push('');
    }
    const conv = d.arms.filter((a) => a.convergence);
    if (conv.length) {
      out.push(`### Convergence (fine-tuning at ${pct(String(conv[0].convergence!.fraction))} labels)`, '');
      out.push('| arm | steps to reach no-pre-training best val AUC (per seed) | saved |', '|---|---|---|');
      for (const a of conv) {
        const c = a.convergence!;
        out.push(`| ${mdText(a.name)} | ${c.perSeed.map((s) => `${stepsText(s.steps)} / ${s.baselineSteps}`).join(', ')} | ${savedText(c)} |`);
      }
      out.push('');
    }
    const rob = d.arms.filter((a) => a.robustness);
    if (rob.length) {
      const labels = rob[0].robustness!.points.map((p) => p.label);
      out.push(`### Robustness (${PROTOCOL_NAMES[rob[0].robustness!.protocol]}, ${pct(String(rob[0].robustness!.fraction))} labels, seed ${rob[0].robustness!.seed}): AUC drop from clean`, '');
      out.push(`| arm | clean | ${labels.map(mdText).join(' | ')} |`, `|---|---|${labels.map(() => '---|').join('')}`);
      for (const a of rob) out.push(`| ${mdText(a.name)} | ${a.robustness!.clean.toFixed(3)} | ${a.robustness!.points.map((p) => p.drop.toFixed(3)).join(' | ')} |`);
      out.push('');
    }
    const skipped = d.arms.filter((a) => a.status === 'skipped');
    if (skipped.length) {
      out.push('### Skipped arms', '');
      for (const a of skipped) out.push(`- ${mdText(a.name)}: ${mdText(a.reason ?? '')}`);
      out.push('');
    }
    const training = trainingRows(d);
    if (training.length) {
      out.push(`### ${trainingCaption(d)}`, '');
      out.push(`| ${TRAINING_HEAD.join(' | ')} |`, `|${TRAINING_HEAD.map(() => '---|').join('')}`);
      for (const r of training) out.push(`| ${r.map(mdText).join(' | ')} |`);
      out.push('');
    }
    out.push('### Time', '', '| arm | pre-training (s) | evaluation (s) |', '|---|---|---|');
    for (const a of d.arms) out.push(`| ${mdText(a.name)} | ${a.seconds.pretrain.toFixed(1)} | ${a.seconds.evaluate.toFixed(1)} |`);
    out.push('');
  }
  out.push('## Replay', '', ...mdCode(doc.provenance.command), '',
    `config hash ${mdText(doc.provenance.configHash)}; ${mdText(Object.entries(doc.provenance.versions).map(([k, v]) => `${k} ${v}`).join(', '))}.`, '');
  for (const f of doc.provenance.datasets) out.push(`- ${mdText(f.file)}: ${f.bytes} bytes, sha256 ${mdText(f.sha256)}`);
  out.push('');
  return out.join('\n');
}

const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}caption{text-align:left;font-weight:600;margin-bottom:4px}
.chart-title{font-weight:600;font-size:14px}.tick{font-size:11px;fill:#444}.axis{font-size:12px}.legend{font-size:12px}
figure{margin:12px 0}code{background:#f4f4f4;padding:1px 4px}`;

export function renderHtml(doc: ResultsDocument): string {
  const e = escapeHtml;
  const out: string[] = [];
  out.push('<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">', '<title>medssl experiment report</title>', `<style>${CSS}</style></head><body>`);
  out.push('<h1>Experiment report</h1>');
  out.push(`<p>Preset <code>${e(doc.preset.name)}</code>, seeds ${e(doc.provenance.seeds.join(', '))}, backend ${e(doc.provenance.backend)}, ${e(doc.seconds.toFixed(0))} s. AUC: mean over seeds [95% interval] ± seed s.d.; Δ and p: paired DeLong test against no pre-training (same test set, subsets and seeds), "no difference" where p &gt;= ${ALPHA}.${replicated(doc) ? ` ${e(REPLICATED)}` : ''}${selecting(doc) ? ` ${e(SELECTION)}` : ''}</p>`);
  // The headline table comes first and carries id="results".
  const first = doc.datasets.find((d) => d.name === doc.primary.dataset);
  const headFractions = [...new Set(doc.arms.flatMap((a) => Object.keys(a.fractions)))].sort((a, b) => Number(b) - Number(a));
  out.push(`<table id="results"><caption>${e(doc.primary.dataset)}: ${e(PROTOCOL_NAMES[doc.primary.protocol])} ${first ? scoredSplit(first) : 'test'} AUC</caption>`);
  out.push(`<thead><tr><th>arm</th><th>pre-trained</th>${headFractions.map((f) => `<th>${e(pct(f))}</th>`).join('')}</tr></thead><tbody>`);
  for (const a of doc.arms) {
    out.push(`<tr><td>${e(a.name)}</td><td>${a.pretrained ? 'yes' : 'no'}</td>${headFractions.map((f) => `<td>${e(cell(a.fractions[f] as FractionResult | undefined))}</td>`).join('')}</tr>`);
  }
  out.push('</tbody></table>');
  if (doc.skipped.length) {
    out.push('<h2>Skipped arms</h2><ul>');
    for (const s of doc.skipped) out.push(`<li>${e(s.name)} (${e(s.dataset)}): ${e(s.reason)}</li>`);
    out.push('</ul>');
  }
  for (const d of doc.datasets) {
    out.push(`<h2>${e(d.name)} <small>(${e(d.modality)}; ${e(sizesText(d))})</small></h2>`);
    const ok = d.arms.filter((a) => a.status === 'ok');
    for (const p of protocolsOf(d)) {
      const fr = fractionsOf(d, p);
      if (d !== first || p !== doc.primary.protocol) {
        out.push(`<table><caption>${e(PROTOCOL_NAMES[p])} ${scoredSplit(d)} AUC</caption><thead><tr><th>arm</th><th>pre-trained</th>${fr.map((f) => `<th>${e(pct(f))}</th>`).join('')}</tr></thead><tbody>`);
        for (const a of ok) out.push(`<tr><td>${e(a.name)}</td><td>${a.pretrained ? 'yes' : 'no'}</td>${fr.map((f) => `<td>${e(cell(a.protocols[p]?.[f]))}</td>`).join('')}</tr>`);
        out.push('</tbody></table>');
      }
      if (fr.length > 1) {
        const ticks = [...fr].reverse().map((f, i) => ({ value: i, label: pct(f) }));
        const series: Series[] = ok.filter((a) => a.protocols[p]).map((a) => ({
          name: a.name,
          points: ticks.flatMap((t, i) => { const r = a.protocols[p]![[...fr].reverse()[i]]; return r ? [{ x: t.value, y: r.auc, lo: r.ci[0], hi: r.ci[1] }] : []; }),
        }));
        out.push(`<figure>${lineChart({ title: `${d.name}: ${PROTOCOL_NAMES[p]} AUC against label fraction`, xLabel: 'labelled training data', yLabel: `${scoredSplit(d)} AUC`, series, xTicks: ticks , yBounds: [0, 1] })}</figure>`);
      }
    }
    const contrasts = contrastRows(d);
    if (contrasts) {
      out.push(`<table><caption>Contrasts: one arm against another (paired test, same test set, subsets and seeds)</caption><thead><tr><th>contrast</th><th>protocol</th>${contrasts.fractions.map((f) => `<th>${e(pct(f))}</th>`).join('')}</tr></thead><tbody>`);
      for (const r of contrasts.rows) out.push(`<tr><td>${e(r.label)}</td><td>${e(PROTOCOL_NAMES[r.protocol])}</td>${r.cells.map((c) => `<td>${e(c)}</td>`).join('')}</tr>`);
      out.push('</tbody></table>');
    }
    const curved = ok.filter((a) => a.curves.length);
    if (curved.length) {
      const seed = curved[0].curves[0].seed, fraction = curved[0].curves[0].fraction;
      const pick = (a: ArmResult) => a.curves.find((c) => c.seed === seed && c.fraction === fraction);
      const valSeries = curved.map((a) => ({ name: a.name, points: (pick(a)?.points ?? []).map((pt) => ({ x: pt.step, y: pt.valAuc })) }));
      const lossSeries = curved.map((a) => ({ name: a.name, points: (pick(a)?.points ?? []).map((pt) => ({ x: pt.step, y: pt.loss })) }));
      out.push(`<figure>${lineChart({ title: `${d.name}: fine-tuning validation AUC (${pct(String(fraction))} labels, seed ${seed})`, xLabel: 'step', yLabel: 'validation AUC', series: valSeries , yBounds: [0, 1] })}</figure>`);
      out.push(`<figure>${lineChart({ title: `${d.name}: fine-tuning training loss (${pct(String(fraction))} labels, seed ${seed})`, xLabel: 'step', yLabel: 'sigmoid cross-entropy', series: lossSeries })}</figure>`);
    }
    const conv = ok.filter((a) => a.convergence);
    if (conv.length) {
      out.push(`<table><caption>Convergence: steps to reach the no-pre-training best validation AUC</caption><thead><tr><th>arm</th><th>steps / baseline steps (per seed)</th><th>saved</th></tr></thead><tbody>`);
      for (const a of conv) {
        const c = a.convergence!;
        out.push(`<tr><td>${e(a.name)}</td><td>${e(c.perSeed.map((s) => `${stepsText(s.steps)} / ${s.baselineSteps}`).join(', '))}</td><td>${e(savedText(c))}</td></tr>`);
      }
      out.push('</tbody></table>');
    }
    const rob = ok.filter((a) => a.robustness);
    if (rob.length) {
      const r0 = rob[0].robustness!;
      out.push(`<table><caption>Robustness: AUC drop from clean (${e(PROTOCOL_NAMES[r0.protocol])}, ${e(pct(String(r0.fraction)))} labels)</caption><thead><tr><th>arm</th><th>clean</th>${r0.points.map((p) => `<th>${e(p.label)}</th>`).join('')}</tr></thead><tbody>`);
      for (const a of rob) out.push(`<tr><td>${e(a.name)}</td><td>${a.robustness!.clean.toFixed(3)}</td>${a.robustness!.points.map((p) => `<td>${p.drop.toFixed(3)}</td>`).join('')}</tr>`);
      out.push('</tbody></table>');
      for (const kind of [...new Set(r0.points.map((p) => p.kind))]) {
        // The identity setting of each family carries the clean AUC, so the curves pass through it.
        const identity = kind === 'shift' || kind === 'rotate' ? 0 : 1;
        const series = rob.map((a) => ({
          name: a.name,
          points: [{ x: identity, y: a.robustness!.clean }, ...a.robustness!.points.filter((p) => p.kind === kind).map((p) => ({ x: p.value, y: p.auc }))].sort((u, v) => u.x - v.x),
        }));
        out.push(`<figure>${lineChart({ title: `${d.name}: AUC under ${kind}`, xLabel: kind, yLabel: `${scoredSplit(d)} AUC`, series , yBounds: [0, 1] })}</figure>`);
      }
    }
    const training = trainingRows(d);
    if (training.length) {
      out.push(`<table><caption>${e(trainingCaption(d))}</caption><thead><tr>${TRAINING_HEAD.map((h) => `<th>${e(h)}</th>`).join('')}</tr></thead><tbody>`);
      for (const r of training) out.push(`<tr>${r.map((c) => `<td>${e(c)}</td>`).join('')}</tr>`);
      out.push('</tbody></table>');
    }
  }
  out.push('<h2>Replay</h2>', `<pre>${e(doc.provenance.command)}</pre>`);
  out.push(`<p>config hash <code>${e(doc.provenance.configHash)}</code>; ${e(Object.entries(doc.provenance.versions).map(([k, v]) => `${k} ${v}`).join(', '))}</p><ul>`);
  for (const f of doc.provenance.datasets) out.push(`<li>${e(f.file)}: ${f.bytes} bytes, sha256 <code>${e(f.sha256)}</code></li>`);
  out.push('</ul></body></html>', '');
  return out.join('\n');
}
