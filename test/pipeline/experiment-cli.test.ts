// `medssl experiment` end to end on a tiny synthetic MedMNIST-layout archive (spawns dist/pipeline/app/cli.js).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tinyArchive } from '../support/tiny-npz.js';
import { cli } from '../shared.js';
import { MetricsEvent } from '../../schemas/metrics.js';

const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } });

describe('medssl experiment', () => {
  it('runs a config end to end and writes the reports and a replayable config', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cli-'));
    tinyArchive(path.join(dir, 'tiny.npz'));
    fs.writeFileSync(path.join(dir, 'exp.yaml'), [
      'data: { inputs: [tiny.npz] }',
      'augment: { global: { count: 2, size: 8, scale: [0.5, 1] }, local: { count: 2, size: 4, scale: [0.2, 0.5] } }',
      'model: { width: 4, depth: [1, 1], projection: { hidden: 16, out: 8 }, prototypes: 8 }',
      'train: { batchSize: 16, optimizer: { name: sgd, lr: 0.05 } }',
      'evaluate:',
      '  pretrainImages: 200',
      '  fractions: [1, 0.5]',
      '  seeds: [0]',
      '  protocols: [linear, knn]',
      '  datasets: [{ file: tiny.npz, modality: radiography, name: "tiny <b>" }]',
      '  arms: [{ name: none, kind: none }, { name: random, kind: random }, { name: SwAV, kind: swav-multi-modal }]',
    ].join('\n'));
    const out = path.join(dir, 'out');
    const r = run(['experiment', '--config', path.join(dir, 'exp.yaml'), '--out', out, '--quiet']);
    expect(r.stderr).not.toMatch(/medssl: /);
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain('skipped');
    for (const f of ['results.json', 'report.md', 'report.html', 'config.json', 'metrics.jsonl']) expect(fs.existsSync(path.join(out, f))).toBe(true);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(json.arms.map((a: { name: string; pretrained: boolean }) => [a.name, a.pretrained])).toEqual([['none', false], ['random', false], ['SwAV', true]]);
    // The SwAV arm pre-trained on the pool (cached under the run) and wrote its metrics.
    expect(fs.existsSync(path.join(out, 'cache', 'pool', 'data.mdb'))).toBe(true);
    expect(Object.keys(json.arms[0].fractions)).toEqual(['1', '0.5']);
    expect(json.provenance.datasets[0].sha256).toMatch(/^[0-9a-f]{64}$/);
    // metrics.jsonl holds schema-valid eval events: 3 arms x 2 protocols x 2 fractions + the robustness grid per arm.
    const events = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => MetricsEvent.parse(JSON.parse(l)));
    expect(events.filter((e) => e.type === 'eval' && !e.perturbation)).toHaveLength(12);
    expect(fs.readFileSync(path.join(out, 'report.html'), 'utf8')).toContain('tiny &lt;b&gt;');
    // Replaying the written config gives the same numbers.
    const again = path.join(dir, 'again');
    expect(run(['experiment', '--config', path.join(out, 'config.json'), '--out', again, '--quiet']).status).toBe(0);
    const json2 = JSON.parse(fs.readFileSync(path.join(again, 'results.json'), 'utf8'));
    expect(json2.arms).toEqual(json.arms);
  });

  it('reports bad input and usage errors with the documented exit codes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cli-'));
    const missing = run(['experiment', '--dataset', path.join(dir, 'nope.npz'), '--modality', 'ct', '--out', dir]);
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toBe(`medssl: ${path.join(dir, 'nope.npz')}: labelled dataset not found`);
    fs.writeFileSync(path.join(dir, 'bad.npz'), 'not a zip at all, just text');
    const bad = run(['experiment', '--dataset', path.join(dir, 'bad.npz'), '--modality', 'ct', '--out', dir, '--quiet']);
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^medssl: .*bad\.npz: not a zip\/npz archive/);
    expect(run(['experiment', '--dataset', path.join(dir, 'bad.npz'), '--out', dir]).status).toBe(2);
    const huge = run(['experiment', '--out', dir, '--preset', 'huge']);
    expect(huge.status).toBe(2);
    expect(huge.stderr).toContain('--preset: expected quick, standard, full, got "huge"');
    expect(run(['run', '--out', dir, '--preset', 'huge']).status).toBe(2);
  });
});
