// The command line's promises to a new user: the README's commands do what they say, flags mean the same thing on
// every command, failures go to stderr, and the exit codes are the documented ones (0 ok, 1 bad input, 2 usage).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readJsonl } from '../../pipeline/core/bridge.js';
import type { MetricsEvent } from '../../schemas/metrics.js';
import { trainingProgress } from '../../stages/train/progress.js';
import { tinyArchive } from '../support/tiny-npz.js';
import { cli, fixture, projectRoot } from '../shared.js';

const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3', ...env } });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cli-'));

/** A config small enough to pre-train in seconds on 8x8 images. */
const small = (extra: string[] = []) => [
  'augment: { global: { count: 2, size: 8, scale: [0.5, 1] }, local: { count: 2, size: 4, scale: [0.2, 0.5] } }',
  'model: { width: 4, depth: [1, 1], projection: { hidden: 16, out: 8 }, prototypes: 8 }',
  'train: { batchSize: 16, optimizer: { name: sgd, lr: 0.05 } }',
  ...extra,
].join('\n');

describe('medssl experiment --dataset', () => {
  it('pre-trains on the evaluated dataset when data.inputs is empty, and says on stderr why an arm was skipped', () => {
    const dir = tmp();
    tinyArchive(path.join(dir, 'tiny.npz'));
    fs.writeFileSync(path.join(dir, 'c.yaml'), small([
      'evaluate:',
      '  pretrainImages: 200',
      '  fractions: [1]',
      '  seeds: [0]',
      '  protocols: [linear]',
      '  arms: [{ name: none, kind: none }, { name: SwAV, kind: swav-multi-modal }, { name: sup, kind: supervised }]',
    ]));
    const out = path.join(dir, 'out');
    const r = run(['experiment', '--config', path.join(dir, 'c.yaml'), '--dataset', path.join(dir, 'tiny.npz'), '--modality', 'radiography', '--out', out, '--quiet', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    const arms = json.datasets[0].arms as Array<{ name: string; status: string; reason?: string }>;
    expect(arms.map((a) => [a.name, a.status])).toEqual([['none', 'ok'], ['SwAV', 'ok'], ['sup', 'skipped']]);
    // The pool was the dataset's training split: the SwAV arm trained and exported an encoder.
    expect(fs.existsSync(path.join(out, 'arms', 'swav', 'encoder', 'model.json'))).toBe(true);
    const steps = readJsonl<MetricsEvent>(path.join(out, 'arms', 'swav', 'metrics.jsonl')).filter((e) => e.type === 'step');
    expect(steps.length).toBeGreaterThan(0);
    // The skipped arm is said on stderr, in words that say what to do.
    expect(r.stderr).toMatch(/medssl: arm "sup" \(.*\) skipped: .*add another entry to evaluate\.datasets/);
  });

  it('exits 1 when every pre-training arm is skipped', () => {
    const dir = tmp();
    tinyArchive(path.join(dir, 'tiny.npz'));
    fs.writeFileSync(path.join(dir, 'c.yaml'), small([
      'evaluate: { pretrainImages: 200, fractions: [1], seeds: [0], protocols: [linear], arms: [{ name: none, kind: none }, { name: sup, kind: supervised }] }',
    ]));
    const r = run(['experiment', '--config', path.join(dir, 'c.yaml'), '--dataset', path.join(dir, 'tiny.npz'), '--modality', 'radiography', '--out', path.join(dir, 'out'), '--quiet']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('every pre-training arm was skipped');
    // The table still prints (the arm without pre-training ran).
    expect(r.stdout).toContain('linear probe');
  });
});

describe('medssl run', () => {
  it('prints the table on stdout and the files it could not use on stderr', () => {
    const dir = tmp();
    tinyArchive(path.join(dir, 'tiny.npz'));
    fs.writeFileSync(path.join(dir, 'broken.dcm'), Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(10)]));
    fs.writeFileSync(path.join(dir, 'c.yaml'), small([
      'data: { inputs: [tiny.npz, broken.dcm] }',
      'evaluate: { pretrainImages: 200, fractions: [1], seeds: [0], protocols: [linear], datasets: [{ file: tiny.npz, modality: radiography }], arms: [{ name: none, kind: none }, { name: SwAV, kind: swav-multi-modal }] }',
    ]));
    const r = run(['run', '--config', path.join(dir, 'c.yaml'), '--out', path.join(dir, 'out'), '--workers', '1']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('linear probe');
    expect(r.stdout).not.toContain('broken.dcm');
    expect(r.stderr).toMatch(/medssl: .*broken\.dcm: \w+/);
  });
});

describe('medssl ingest', () => {
  it('takes its inputs from --config when none are given, and exits 1 when nothing could be ingested', () => {
    const dir = tmp();
    tinyArchive(path.join(dir, 'tiny.npz'));
    fs.writeFileSync(path.join(dir, 'c.yaml'), 'data: { inputs: [tiny.npz] }\n');
    const ok = run(['ingest', '--config', path.join(dir, 'c.yaml'), '--cache', path.join(dir, 'cache'), '--json']);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).images).toBe(120);

    fs.mkdirSync(path.join(dir, 'bad'));
    fs.writeFileSync(path.join(dir, 'bad', 'a.dcm'), Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(10)]));
    fs.writeFileSync(path.join(dir, 'bad', 'b.nii'), Buffer.alloc(400, 7));
    const none = run(['ingest', path.join(dir, 'bad'), '--cache', path.join(dir, 'cache2')]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/a\.dcm: /);
    expect(none.stderr).toContain('nothing was ingested');
    // Without inputs or a config there is nothing to do: a usage error.
    expect(run(['ingest', '--cache', path.join(dir, 'cache3')]).status).toBe(2);
  });
});

describe('flags mean the same everywhere', () => {
  it('rejects a bad --workers with exit 2 on ingest, run and pretrain', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'c.yaml'), 'data: { inputs: [x.npz] }\n');
    for (const args of [['ingest', dir, '--cache', path.join(dir, 'c')], ['run', '--out', path.join(dir, 'r')], ['pretrain', '--config', path.join(dir, 'c.yaml'), '--out', path.join(dir, 'p')]]) {
      for (const bad of ['0', 'two', '1.5']) {
        const r = run([...args, '--workers', bad]);
        expect(r.status, `${args[0]} --workers ${bad}`).toBe(2);
        expect(r.stderr).toContain('--workers: expected a positive integer');
      }
    }
  });

  it('decode prints a summary, and the whole metadata with --json', () => {
    const file = fixture('data/dicom/pydicom/CT_small.dcm');
    const text = execFileSync(process.execPath, [cli, 'decode', file], { encoding: 'utf8' });
    expect(text).toMatch(/modality\s+CT/);
    expect(() => JSON.parse(text)).toThrow();
    const meta = JSON.parse(execFileSync(process.execPath, [cli, 'decode', file, '--json'], { encoding: 'utf8' }));
    expect(meta).toMatchObject({ format: 'dicom', modality: 'CT', rows: 128, cols: 128 });
  });
});

describe('medssl pretrain', () => {
  it('runs exactly --steps optimizer steps, prints progress on stderr, a summary on stdout, and JSON with --json', () => {
    const dir = tmp();
    tinyArchive(path.join(dir, 'tiny.npz'));
    fs.writeFileSync(path.join(dir, 'c.yaml'), `data: { inputs: [tiny.npz] }\n${small()}\n`);
    const out = path.join(dir, 'run');
    const r = run(['pretrain', '--config', path.join(dir, 'c.yaml'), '--out', out, '--steps', '5']);
    expect(r.status, r.stderr).toBe(0);
    const steps = readJsonl<MetricsEvent>(path.join(out, 'metrics.jsonl')).filter((e) => e.type === 'step');
    // 60 training images, batch 16: 3 steps per epoch, so 5 steps cross an epoch and stop inside the second.
    expect(steps.map((e) => [e.epoch, e.step])).toEqual([[0, 0], [0, 1], [0, 2], [1, 3], [1, 4]]);
    expect(r.stderr).toMatch(/pretrain: step 1\/5 \(20%\), epoch 0, [\d.]+ images\/s, loss [\d.]+, prototypes used \d+%, ETA /);
    expect(r.stdout).toMatch(/^pretrained 5 steps on 60 images: loss [\d.]+ -> [\d.]+/);
    const quiet = run(['pretrain', '--config', path.join(dir, 'c.yaml'), '--out', path.join(dir, 'run2'), '--steps', '2', '--quiet', '--json']);
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(quiet.stderr).not.toContain('pretrain: step');
    expect(JSON.parse(quiet.stdout)).toMatchObject({ steps: 2, images: 60 });
  });
});

describe('trainingProgress', () => {
  it('prints at the first step, then at least every interval, even inside a long step', async () => {
    let clock = 0;
    const lines: string[] = [];
    const p = trainingProgress({ write: (s: string) => lines.push(s) }, { totalSteps: 10, batchSize: 64, everyMs: 50, now: () => clock });
    const step = (i: number, ms: number) => {
      clock += ms;
      p.observe({ type: 'step', epoch: 0, step: i, loss: 4 - i / 10, lr: 0.1, prototypeUsage: 0.5, stepTimeMs: ms, imagesPerSec: 64000 / ms, waitFraction: 0 });
    };
    step(0, 1000);
    expect(lines).toHaveLength(1);
    step(1, 10);
    expect(lines).toHaveLength(1); // within the interval: quiet
    clock += 200; // a long step: the timer speaks
    await new Promise((r) => setTimeout(r, 120));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.at(-1)).toMatch(/step 2\/10 .*running for/);
    step(2, 190);
    p.stop();
    // 64 images per step for the two steps after the first, which took 400 ms: 320 images/s.
    expect(lines.at(-1)).toMatch(/step 3\/10 \(30%\), epoch 0, 320.0 images\/s, loss 3\.8000, prototypes used 50%, ETA 1s/);
  });
});

describe('the first hour', () => {
  it('importing medssl does not load TensorFlow; the first use does', () => {
    const script = `
      const m = await import(${JSON.stringify(path.join(projectRoot, 'dist', 'pipeline', 'index.js'))});
      const mapped = () => require('node:fs').existsSync('/proc/self/maps') ? require('node:fs').readFileSync('/proc/self/maps', 'utf8').includes('libtensorflow') : null;
      const before = [m.tensorflowLoaded(), mapped()];
      m.tf.scalar(1).dispose();
      console.log(JSON.stringify({ before, after: [m.tensorflowLoaded(), mapped()], backend: m.backendInfo.backend }));`;
    const out = execFileSync(process.execPath, ['--input-type=commonjs', '-e', `(async () => {${script}})()`], { encoding: 'utf8' });
    const r = JSON.parse(out) as { before: [boolean, boolean | null]; after: [boolean, boolean | null]; backend: string };
    expect(r.before[0]).toBe(false);
    expect(r.after[0]).toBe(true);
    if (r.before[1] !== null && r.backend !== 'cpu') expect([r.before[1], r.after[1]]).toEqual([false, true]);
  });

  it('medssl info says where ops run, and loading TensorFlow prints none of its start-up notices', () => {
    const r = run(['info', '--json'], { TF_CPP_MIN_LOG_LEVEL: '' });
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(['CPU', 'GPU']).toContain(info.device);
    expect(info.onednn).toBe(info.backend !== 'cpu');
    if (info.backend !== 'cpu') expect(r.stderr).toBe('');
  });

  it('refuses to install with a Node.js or npm older than it needs, in one line', () => {
    const check = path.join(projectRoot, 'scripts', 'check-engines.mjs');
    const ok = spawnSync(process.execPath, [check], { encoding: 'utf8', env: { ...process.env, npm_config_user_agent: 'npm/11.0.0 node/v20.19.0' } });
    expect(ok.status).toBe(0);
    const old = spawnSync(process.execPath, [check], { encoding: 'utf8', env: { ...process.env, npm_config_user_agent: 'npm/10.9.2 node/v20.19.0' } });
    expect(old.status).toBe(1);
    expect(old.stderr.trim()).toBe('medssl: npm 10.9.2 is too old: medssl needs npm >= 11.0.0 (npm install -g npm@11)');
    const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8'));
    expect(pkg.engines).toEqual({ node: '>=20.19', npm: '>=11' });
  });
});
