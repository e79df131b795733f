// `medssl experiment` end to end on a tiny synthetic MedMNIST-layout archive (spawns dist/pipeline/cli.js).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { writeNpy } from '../../stages/source/npy.js';
import { random } from '../../pipeline/random.js';
import { cli } from '../shared.js';
import { MetricsEvent } from '../../schemas/metrics.js';

/** A stored (uncompressed) zip of .npy entries: what numpy.savez writes. */
function writeNpz(file: string, arrays: Record<string, { data: Uint8Array; shape: number[] }>): void {
  const locals: Buffer[] = [], centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, a] of Object.entries(arrays)) {
    const body = writeNpy(a.data, a.shape), fname = Buffer.from(`${name}.npy`);
    const crc = zlib.crc32(body);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18); local.writeUInt32LE(body.length, 22); local.writeUInt16LE(fname.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(20, 4); central.writeUInt16LE(20, 6); central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20); central.writeUInt32LE(body.length, 24); central.writeUInt16LE(fname.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, fname, body);
    centrals.push(central, fname);
    offset += local.length + fname.length + body.length;
  }
  const cd = Buffer.concat(centrals), end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(Object.keys(arrays).length, 8); end.writeUInt16LE(Object.keys(arrays).length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  fs.writeFileSync(file, Buffer.concat([...locals, cd, end]));
}

function tinyArchive(file: string): void {
  const size = 8, arrays: Record<string, { data: Uint8Array; shape: number[] }> = {};
  for (const [split, n, seed] of [['train', 60, 1], ['val', 30, 2], ['test', 30, 3]] as const) {
    const images = new Uint8Array(n * size * size), labels = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const rs = random(seed).stream({ sample: i, purpose: 'tiny-npz' });
      labels[i] = i % 3 === 0 ? 1 : 0;
      for (let p = 0; p < size * size; p++) images[i * size * size + p] = rs.int(80) + (labels[i] && p % size > 3 ? 150 : 0);
    }
    arrays[`${split}_images`] = { data: images, shape: [n, size, size] };
    arrays[`${split}_labels`] = { data: labels, shape: [n, 1] };
  }
  writeNpz(file, arrays);
}

const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } });

describe('medssl experiment', () => {
  it('runs a config end to end and writes the reports and a replayable config', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cli-'));
    tinyArchive(path.join(dir, 'tiny.npz'));
    fs.writeFileSync(path.join(dir, 'exp.yaml'), [
      'evaluate:',
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
    expect(r.stdout).toContain('skipped SwAV (tiny <b>)');
    for (const f of ['results.json', 'report.md', 'report.html', 'config.json', 'metrics.jsonl']) expect(fs.existsSync(path.join(out, f))).toBe(true);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
    expect(json.arms.map((a: { name: string }) => a.name)).toEqual(['none', 'random']);
    expect(Object.keys(json.arms[0].fractions)).toEqual(['1', '0.5']);
    expect(json.provenance.datasets[0].sha256).toMatch(/^[0-9a-f]{64}$/);
    // metrics.jsonl holds schema-valid eval events: 2 arms x 2 protocols x 2 fractions + the robustness grid per arm.
    const events = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => MetricsEvent.parse(JSON.parse(l)));
    expect(events.filter((e) => e.type === 'eval' && !e.perturbation)).toHaveLength(8);
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
    expect(run(['experiment', '--out', dir, '--preset', 'huge']).status).toBe(2);
  });
});
