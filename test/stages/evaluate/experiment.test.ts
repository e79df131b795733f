import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../schemas/config.js';
import { MedsslError } from '../../../pipeline/core/failures.js';
import { addConvergence, crossing, runExperiment, type ArmProvider, type ArmResult, type Preset } from '../../../stages/evaluate/experiment.js';
import { renderMarkdown, resultsDocument, writeReports } from '../../../stages/evaluate/report.js';
import { syntheticDataset, tinyEncoder } from './tiny.js';
import { sample } from '../../shared.js';
import { experimentSummary } from '../../../pipeline/compose/job.js';
import { tf } from '../../../pipeline/core/tensorflow.js';

const preset: Preset = {
  name: 'test',
  fractions: [1, 0.5, 0.25, 0.1],
  seeds: [0, 1],
  protocols: ['linear', 'finetune', 'knn'],
  primary: 'linear',
  linear: { steps: 40, lr: 0.05, weightDecays: [1e-3] },
  knn: { k: 5, temperature: 0.07 },
  finetune: { steps: 6, batchSize: 16, lr: 1e-2, evalEvery: 2, patience: 0, flip: false, fractions: [0.1], seeds: [0] },
  convergenceFraction: 0.1,
  robustness: { protocol: 'linear', fraction: 1, grid: [{ kind: 'rotate', value: 90 }, { kind: 'scale', value: 0.5 }] },
  budgetSeconds: 60,
  pretrainImages: 64,
};

// A provider with one "pre-trained" arm (a fixed tiny encoder), 'none', and an arm whose pre-training fails.
const provider: ArmProvider = {
  initEncoder: (_ctx, seed) => tinyEncoder(8, seed),
  async pretrainArm(arm) {
    if (arm.kind === 'none') return null;
    if (arm.kind === 'simclr') throw new MedsslError('unsupported', arm.name, 'not available here');
    return tinyEncoder(8, 99);
  },
};

const EVIL = '<script>alert(1)</script>';

/** Tags left open or closed out of order (void and self-closing elements excepted): [] for well-formed markup. */
function unbalancedTags(html: string): string[] {
  const stack: string[] = [], problems: string[] = [];
  for (const m of html.matchAll(/<(\/?)([a-zA-Z][a-zA-Z0-9]*)\b[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing || ['meta', 'br', 'hr', 'img', 'input', 'link'].includes(name.toLowerCase())) continue;
    if (!closing) stack.push(name);
    else if (stack.pop() !== name) problems.push(`</${name}> at ${m.index}`);
  }
  return [...problems, ...stack.map((t) => `<${t}> not closed`)];
}

async function run(outDir: string) {
  const result = await runExperiment({
    config: parseConfig({}),
    preset,
    datasets: [syntheticDataset('synthetic'), syntheticDataset('other & more', [80, 40, 40])],
    arms: [{ name: 'none', kind: 'none' }, { name: EVIL, kind: 'swav-multi-modal' }, { name: 'SimCLR', kind: 'simclr' }],
    outDir,
  }, provider);
  const doc = resultsDocument(result, preset, {
    command: `medssl experiment --out ${outDir}`, config: {}, configHash: 'abc', seeds: preset.seeds, versions: { medssl: '0' }, backend: 'x',
    datasets: [], cacheKeys: {}, started: '', finished: '', cpus: 2,
  });
  return { result, doc };
}

describe('runExperiment + reports', () => {
  it('fills every arm x protocol x fraction, records skipped arms, and writes the three reports', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-exp-'));
    const { result, doc } = await run(out);
    const [synthetic] = result.datasets;
    expect(synthetic.arms.map((a) => a.status)).toEqual(['ok', 'ok', 'skipped']);
    expect(synthetic.arms[2].reason).toBe('not available here');
    const evil = synthetic.arms[1];
    expect(Object.keys(evil.protocols.linear!)).toEqual(['1', '0.5', '0.25', '0.1']);
    expect(Object.keys(evil.protocols.finetune!)).toEqual(['0.1']);
    expect(evil.protocols.linear!['0.1'].seeds).toEqual([0, 1]);
    expect(evil.robustness!.points.map((p) => p.label)).toEqual(['rotate 90', 'scale 0.5']);
    expect(evil.robustness!.points[0].drop).toBeCloseTo(evil.robustness!.clean - evil.robustness!.points[0].auc, 12);
    expect(evil.convergence!.perSeed).toHaveLength(1);
    // Every arm but 'none' is compared with it on the same test set: a paired DeLong p per protocol and fraction.
    expect(synthetic.arms[0].protocols.linear!['1'].pVsNone).toBeUndefined();
    for (const f of ['1', '0.5', '0.25', '0.1']) {
      const r = evil.protocols.linear![f];
      expect(r.pVsNone).toBeGreaterThanOrEqual(0);
      expect(r.pVsNone).toBeLessThanOrEqual(1);
      expect(r.vsNone!.delta).toBeCloseTo(r.auc - synthetic.arms[0].protocols.linear![f].auc, 12);
    }

    const files = writeReports(doc, out);
    // results.json: the shape other tools read.
    const json = JSON.parse(fs.readFileSync(files.json, 'utf8'));
    expect(json.arms).toHaveLength(2);
    for (const arm of json.arms) {
      expect(typeof arm.name).toBe('string');
      expect(typeof arm.pretrained).toBe('boolean');
      for (const f of ['1', '0.5', '0.25', '0.1']) {
        expect(typeof arm.fractions[f].auc).toBe('number');
        expect(arm.fractions[f].ci).toHaveLength(2);
        expect(arm.fractions[f].ci[0]).toBeLessThanOrEqual(arm.fractions[f].auc);
        expect(arm.fractions[f].ci[1]).toBeGreaterThanOrEqual(arm.fractions[f].auc);
      }
    }
    expect(json.arms.map((a: { pretrained: boolean }) => a.pretrained)).toEqual([false, true]);
    expect(json.skipped.map((s: { name: string }) => s.name)).toEqual(['SimCLR', 'SimCLR']);
    expect(json.provenance.seeds).toEqual([0, 1]);
    expect(typeof json.arms[1].fractions['0.1'].pVsNone).toBe('number');
    expect(json.arms[0].fractions['0.1'].pVsNone).toBeUndefined();

    // report.html: escaped, self-contained, a results table and one titled SVG per plot.
    const html = fs.readFileSync(files.html, 'utf8');
    expect(html).not.toContain(EVIL);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('other &amp; more');
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(html.match(/<table id="results">/g)).toHaveLength(1);
    const svgs = html.match(/<svg[\s\S]*?<\/svg>/g)!;
    // per dataset: 3 protocols x AUC-vs-fraction (fine-tuning has one fraction: no plot) = 2, val AUC + loss = 2, 2 robustness families
    expect(svgs).toHaveLength(2 * (2 + 2 + 2));
    for (const svg of svgs) expect(svg).toMatch(/^<svg[^>]*><title>[^<]+<\/title>/);

    expect(unbalancedTags(html)).toEqual([]);

    const md = fs.readFileSync(files.md, 'utf8');
    expect(md).toContain('| none | no |');
    expect(md).toContain('### Robustness');
    expect(md).toContain('SimCLR: not available here');
    // Convergence steps are interpolated: one decimal, never a float's full expansion.
    const interpolated = structuredClone(doc);
    interpolated.datasets[0].arms[1].convergence!.perSeed[0].steps = 10 / 3;
    expect(renderMarkdown(interpolated)).toContain('| 3.3 / ');
    // report.md is escaped like the HTML: Markdown renders inline HTML.
    expect(md).not.toContain('<script');
    expect(md).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(md).toContain('other &amp; more');

    // Links, images, emphasis, table cells and the replay's code fence cannot be forged from a name or a command.
    const synthetic0 = doc.datasets[0];
    synthetic0.arms[1].name = '![x](javascript:alert(1)) | *b* [y](http://evil)';
    const forged = renderMarkdown({ ...doc, provenance: { ...doc.provenance, command: 'medssl ```\n<b>x</b>' } });
    expect(forged).not.toMatch(/(?<!\\)\]\(/); // no unescaped "](": no link or image
    expect(forged).not.toMatch(/(?<!\\)\*b(?<!\\)\*/);
    const row = forged.split('\n').find((l) => l.includes('javascript'))!;
    expect(row.split(/(?<!\\)\|/).length).toBe(forged.split('\n').find((l) => l.startsWith('| none |'))!.split(/(?<!\\)\|/).length);
    const replay = forged.slice(forged.indexOf('## Replay')).split('\n');
    expect(replay[2]).toBe('````');
    expect(replay[3]).toBe('medssl ``` <b>x</b>');
    expect(replay[4]).toBe('````');
  });

  it('evaluates a colour, multi-class set (RetinaMNIST) with a grey encoder: macro AUC over one-vs-rest grades', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-exp-'));
    const result = await runExperiment({
      config: parseConfig({}),
      preset: { ...preset, fractions: [1], seeds: [0], protocols: ['linear'], robustness: { ...preset.robustness, grid: [] } },
      datasets: [{ file: sample('medmnist-extra/retinamnist.npz'), name: 'RetinaMNIST', modality: 'OP' }],
      arms: [{ name: 'none', kind: 'none' }, { name: 'fixed', kind: 'swav-multi-modal' }],
      outDir: out,
    }, { initEncoder: (_ctx, seed) => tinyEncoder(28, seed), pretrainArm: async (arm) => (arm.kind === 'none' ? null : tinyEncoder(28, 99)) });
    const [retina] = result.datasets;
    expect(retina.tasks).toHaveLength(5);
    expect(retina.arms.map((a) => a.status)).toEqual(['ok', 'ok']);
    const cell = retina.arms[1].protocols.linear!['1'];
    expect(cell.auc).toBeGreaterThan(0.5);
    expect(cell.pVsNone).toBeGreaterThanOrEqual(0);
  });

  it('replicatePretraining pre-trains once per evaluation seed (config seed + seed, its own folder); off, once', async () => {
    const calls: Array<{ seed: number; configSeed: number; runDir: string; replicate?: number }> = [];
    const recording: ArmProvider = {
      initEncoder: (_ctx, seed) => tinyEncoder(8, seed),
      async pretrainArm(arm, ctx) {
        if (arm.kind === 'none') return null;
        calls.push({ seed: ctx.seed, configSeed: ctx.config.seed, runDir: ctx.runDir, replicate: ctx.replicate });
        // The second replicate's "training" failed to learn anything: constant features.
        const encoder = tinyEncoder(8, 100);
        if (ctx.config.seed === 8) encoder.setWeights(encoder.getWeights().map((w) => tf.zerosLike(w)));
        return encoder;
      },
      // Each run's summary names the run's seed in its loss, so the test can tell whose it is.
      trainingSummary: (_arm, ctx) => ({ steps: 10, window: 10, loss: [ctx.config.seed, 1], codeEntropy: 0.93, alarms: (ctx.config.seed === 8 ? { 'uniform-codes': 2 } : {}) as Record<string, number> }),
    };
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-exp-'));
    const plan = (replicatePretraining: boolean) => ({
      config: parseConfig({ seed: 7, evaluate: { replicatePretraining } }),
      preset: { ...preset, fractions: [1], protocols: ['linear'] as Array<'linear'>, robustness: { ...preset.robustness, grid: [] } },
      datasets: [syntheticDataset('synthetic')],
      arms: [{ name: 'none', kind: 'none' as const }, { name: 'swav', kind: 'swav-multi-modal' as const }],
      outDir: out,
    });
    const once = await runExperiment(plan(false), recording);
    expect(calls.map((c) => [c.seed, c.replicate])).toEqual([[7, undefined]]);
    calls.length = 0;
    const replicated = await runExperiment(plan(true), recording);
    expect(calls.map((c) => [c.seed, c.configSeed, c.replicate])).toEqual([[7, 7, 0], [8, 8, 1]]);
    expect(new Set(calls.map((c) => c.runDir)).size).toBe(2);
    // Each seed is scored with its own replicate's encoder.
    const aucs = (r: typeof once) => r.datasets[0].arms[1].protocols.linear!['1'].perSeed.map((x) => x.auc);
    expect(aucs(once)).toEqual([1, 1]);
    expect(aucs(replicated)).toEqual([1, 0.5]);
    expect(replicated.datasets[0].arms[1].protocols.linear!['1'].pVsNone).toBeDefined();
    // Each pre-training run's summary, per replicate; none for the arm without pre-training.
    expect(once.datasets[0].arms[1].training!.map((t) => [t.seed, t.loss[0]])).toEqual([[undefined, 7]]);
    expect(replicated.datasets[0].arms[1].training!.map((t) => [t.seed, t.loss[0]])).toEqual([[0, 7], [1, 8]]);
    expect(replicated.datasets[0].arms[0].training).toBeUndefined();
    const report = (config: unknown, r: typeof once) => renderMarkdown(resultsDocument(r, preset, {
      command: '', config, configHash: '', seeds: preset.seeds, versions: {}, backend: 'x', datasets: [], cacheKeys: {}, started: '', finished: '', cpus: 2,
    }));
    expect(report({ evaluate: { replicatePretraining: true } }, replicated)).toContain('Every seed pre-trained its own encoder');
    expect(report({ evaluate: { replicatePretraining: false } }, once)).not.toContain('its own encoder');
    expect(report({}, replicated)).toContain('| swav | 2 × 10 steps | 7.000 → 1.000 / 8.000 → 1.000 | 0.93 / 0.93 | - | uniform-codes 0 / 2 |');
    expect(report({}, once)).toContain('| swav | 1 × 10 steps | 7.000 → 1.000 | 0.93 | - | none |');
  });

  it('contrasts compare two named arms with the paired test; an unknown name fails before any pre-training', async () => {
    let pretrained = 0;
    const twoArms: ArmProvider = {
      initEncoder: (_ctx, seed) => tinyEncoder(8, seed),
      async pretrainArm(arm) {
        if (arm.kind === 'none') return null;
        pretrained++;
        const encoder = tinyEncoder(8, 100);
        if (arm.name === 'blind') encoder.setWeights(encoder.getWeights().map((w) => tf.zerosLike(w)));
        return encoder;
      },
    };
    const plan = (contrasts: Array<{ arm: string; against: string }>) => ({
      config: parseConfig({ evaluate: { contrasts } }),
      preset: { ...preset, fractions: [1, 0.5], protocols: ['linear'] as Array<'linear'>, robustness: { ...preset.robustness, grid: [] } },
      datasets: [syntheticDataset('synthetic')],
      arms: [{ name: 'none', kind: 'none' as const }, { name: 'sighted', kind: 'swav-multi-modal' as const }, { name: 'blind', kind: 'swav-uni-modal' as const }],
      outDir: fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-exp-')),
    });
    await expect(runExperiment(plan([{ arm: 'sighted', against: 'nobody' }]), twoArms)).rejects.toThrow(/no arm is named "nobody"/);
    expect(pretrained).toBe(0);
    const result = await runExperiment(plan([{ arm: 'sighted', against: 'blind' }]), twoArms);
    const [d] = result.datasets;
    const c = d.contrasts![0].protocols.linear!;
    expect(Object.keys(c).sort()).toEqual(['0.5', '1']);
    const auc = (name: string, f: string) => d.arms.find((a) => a.name === name)!.protocols.linear![f].auc;
    for (const f of ['1', '0.5']) expect(c[f].delta).toBeCloseTo(auc('sighted', f) - auc('blind', f), 12);
    expect(c['1'].p).toBeLessThan(0.05);
    const doc = resultsDocument(result, preset, {
      command: '', config: {}, configHash: '', seeds: preset.seeds, versions: {}, backend: 'x', datasets: [], cacheKeys: {}, started: '', finished: '', cpus: 2,
    });
    expect(experimentSummary(doc)).toMatch(/synthetic, sighted - blind \(linear\): 100% \+0\.\d{3} p=[<0-9.]+, 50% /);
    const md = renderMarkdown(doc);
    expect(md).toContain('### Contrasts');
    expect(md).toMatch(/\| sighted − blind \| linear probe \| Δ \+0\.\d{3}, p/);
  });

  it('scoreOn validation scores the validation split and leaves the test split unread; the reports say so', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-exp-'));
    const ds = syntheticDataset('synthetic');
    const plan = (scoreOn: 'test' | 'validation', dataset = ds) => ({
      config: parseConfig({ evaluate: { scoreOn } }),
      preset: { ...preset, fractions: [1], protocols: ['linear'] as Array<'linear'>, robustness: { ...preset.robustness, grid: [] } },
      datasets: [dataset], arms: [{ name: 'none', kind: 'none' as const }, { name: 'swav', kind: 'swav-multi-modal' as const }], outDir: out,
    });
    const onTest = await runExperiment(plan('test'), provider);
    const onVal = await runExperiment(plan('validation'), provider);
    expect([onTest.datasets[0].scored, onVal.datasets[0].scored]).toEqual(['test', 'validation']);
    expect(onVal.datasets[0].sizes).toEqual({ train: 80, val: 40, test: 40 });
    // The test split's images are never read: a test split of NaN gives the same validation scores.
    const poisoned = { ...ds, test: { ...ds.test, images: ds.test.images.map(() => Number.NaN) } };
    const again = await runExperiment(plan('validation', poisoned), provider);
    const aucs = (r: typeof onVal) => r.datasets[0].arms.map((a) => a.protocols.linear!['1'].auc);
    expect(aucs(again)).toEqual(aucs(onVal));
    expect(aucs(onVal)).not.toEqual(aucs(onTest));
    const doc = resultsDocument(onVal, preset, {
      command: '', config: {}, configHash: '', seeds: [0, 1], versions: {}, backend: 'x', datasets: [], cacheKeys: {}, started: '', finished: '', cpus: 2,
    });
    const md = renderMarkdown(doc);
    expect(md).toContain('Scored on the validation split, for choosing a recipe: the test set was not used.');
    expect(md).toContain('scored on the validation split, 40 images; probes select on 40 held out of train; train 80');
    expect(experimentSummary(doc)).toContain('validation AUC at 100% labels');
    expect(experimentSummary(doc)).toContain('(same validation set, label subsets and seeds)');
  });

  it('is deterministic: the same plan gives the same numbers', async () => {
    const a = await run(fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-exp-')));
    const b = await run(fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-exp-')));
    const strip = (x: unknown) => JSON.stringify(x, (k, v) => (k === 'seconds' ? undefined : v));
    expect(strip(a.result.datasets)).toBe(strip(b.result.datasets));
  });
});

describe('addConvergence', () => {
  const arm = (name: string, kind: ArmResult['kind'], points: Array<[number, number]>, bestStep: number): ArmResult => ({
    name, kind, pretrained: kind !== 'none', status: 'ok', seconds: { pretrain: 0, evaluate: 0 }, protocols: {},
    curves: [{ fraction: 0.1, seed: 0, bestStep, points: points.map(([step, valAuc]) => ({ step, valAuc, loss: 0 })) }],
  });
  it('counts the steps to reach the no-pre-training best validation AUC', () => {
    const arms = [
      arm('none', 'none', [[10, 0.7], [20, 0.8], [30, 0.85], [40, 0.84]], 30),
      arm('fast', 'swav-multi-modal', [[10, 0.86], [20, 0.9]], 20),
      arm('slow', 'simclr', [[10, 0.5], [20, 0.6], [30, 0.7]], 30),
    ];
    addConvergence(arms, 0.1);
    expect(arms[0].convergence!.savedPercent).toBe(0);
    // 'fast' crosses 0.85 between (0, 0.5) and (10, 0.86): at 10 x 0.35 / 0.36 steps.
    const steps = (10 * 0.35) / 0.36;
    expect(arms[1].convergence!.perSeed[0].baselineSteps).toBe(30);
    expect(arms[1].convergence!.perSeed[0].steps).toBeCloseTo(steps, 12);
    expect(arms[1].convergence!.perSeed[0].savedPercent).toBeCloseTo(100 * (1 - steps / 30), 12);
    expect(arms[2].convergence!.savedPercent).toBeNull();
    expect(arms[2].convergence!.reached).toBe(0);
  });

  it('interpolates the crossing between evaluations, from AUC 1/2 at step 0', () => {
    const pts = (xs: Array<[number, number]>) => xs.map(([step, valAuc]) => ({ step, valAuc, loss: 0 }));
    expect(crossing(pts([[8, 0.7], [16, 0.9]]), 0.8)).toBeCloseTo(12, 12);
    expect(crossing(pts([[8, 0.9]]), 0.7)).toBeCloseTo(8 * 0.2 / 0.4, 12);
    expect(crossing(pts([[8, 0.7], [16, 0.75]]), 0.8)).toBeNull();
  });

  it('does not average an arm over the seeds that reached the target only', () => {
    const two = (name: string, kind: ArmResult['kind'], curves: Array<Array<[number, number]>>, best: number[]): ArmResult => ({
      name, kind, pretrained: kind !== 'none', status: 'ok', seconds: { pretrain: 0, evaluate: 0 }, protocols: {},
      curves: curves.map((pts, seed) => ({ fraction: 0.1, seed, bestStep: best[seed], points: pts.map(([step, valAuc]) => ({ step, valAuc, loss: 0 })) })),
    });
    const arms = [
      two('none', 'none', [[[5, 0.7], [10, 0.8]], [[5, 0.75], [10, 0.8]]], [10, 10]),
      two('half', 'simclr', [[[5, 0.9]], [[5, 0.6], [10, 0.7]]], [5, 10]),
    ];
    addConvergence(arms, 0.1);
    expect(arms[1].convergence!.reached).toBe(1);
    expect(arms[1].convergence!.savedPercent).toBeNull();
  });
});
