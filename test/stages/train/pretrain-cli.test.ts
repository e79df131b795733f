import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readJsonl } from '../../../pipeline/core/bridge.js';
import type { MetricsEvent } from '../../../schemas/metrics.js';
import { cli, projectRoot, sample } from '../../shared.js';

// A few seconds natively; the pure-JS backend (MEDSSL_BACKEND=cpu) is hundreds of times slower.
const PURE_JS_TIMEOUT = 600_000;

const config = (inputs: string[]) => [
  'seed: 2',
  `data: { inputs: [${inputs.map((i) => JSON.stringify(i)).join(', ')}] }`,
  'model: { width: 4, depth: [1, 1], projection: { hidden: 16, out: 8 }, prototypes: 8 }',
  'augment: { global: { count: 2, size: 16, scale: [0.4, 1] }, local: { count: 2, size: 8, scale: [0.1, 0.4] } }',
  'train: { epochs: 2, batchSize: 8, stepsPerEpoch: 1, optimizer: { name: sgd, lr: 0.05 } }',
].join('\n');

describe('medssl pretrain', () => {
  it('writes a run, refuses to overwrite it, and resumes it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cli-'));
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, config([sample('medmnist/pneumoniamnist.npz')]));
    const out = path.join(dir, 'run');
    // Run from the user's own folder, not the package's: the CLI finds its kernels and version wherever it is started.
    const summary = JSON.parse(execFileSync(process.execPath, [cli, 'pretrain', '--config', file, '--out', out, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd: dir }));
    expect(summary.steps).toBe(2);
    expect(summary.failures).toBe(0);
    const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8'));
    expect(execFileSync(process.execPath, [cli, '--version'], { encoding: 'utf8', cwd: dir }).trim()).toBe(pkg.version);
    expect(fs.existsSync(path.join(out, 'encoder', 'model.json'))).toBe(true);
    expect(readJsonl<MetricsEvent>(path.join(out, 'metrics.jsonl')).filter((e) => e.type === 'step')).toHaveLength(2);
    const again = spawnSync(process.execPath, [cli, 'pretrain', '--config', file, '--out', out], { encoding: 'utf8' });
    expect(again.status).toBe(1);
    expect(again.stderr.trim().split('\n').filter((l) => l.startsWith('medssl:'))).toEqual([`medssl: ${out}: already holds a run: pass --resume to continue it, or choose another --out`]);
    // Resuming a finished run with more epochs continues it.
    fs.writeFileSync(file, config([sample('medmnist/pneumoniamnist.npz')]).replace('epochs: 2', 'epochs: 3'));
    const resumed = JSON.parse(execFileSync(process.execPath, [cli, 'pretrain', '--config', file, '--out', out, '--resume', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
    expect(resumed.steps).toBe(3);
  }, PURE_JS_TIMEOUT);

  it('reports a missing input as one line and exit code 1, a bad config with exit code 2', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cli-'));
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, config([path.join(dir, 'missing.npz')]));
    const r = spawnSync(process.execPath, [cli, 'pretrain', '--config', file, '--out', path.join(dir, 'run')], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/medssl: .*missing\.npz: /);
    fs.writeFileSync(file, 'train: { objective: byol }');
    const bad = spawnSync(process.execPath, [cli, 'pretrain', '--config', file, '--out', path.join(dir, 'run2')], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/train\.objective: expected one of/);
  });
});
