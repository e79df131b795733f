// The command line end to end with data.hashPaths on and a secret in a key file: ingest, cache stats and verify, and
// an experiment over input folders whose names identify a patient. No secret and no input path component may appear
// in anything written: stdout, stderr, the LMDB cache's bytes, config.json, results.json, the reports, checkpoints.
// Without a secret, every command that writes keys warns on stderr.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tinyArchive } from '../support/tiny-npz.js';
import { cli, fixture } from '../shared.js';

const SECRET = 'hospital secret 7f3a9c01d2e4b5a6';
const { MEDSSL_PRIVACY_KEY: _, ...baseEnv } = process.env;
const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...baseEnv, TF_CPP_MIN_LOG_LEVEL: '3', ...env } });

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

describe('data.hashPaths with a secret', () => {
  it('writes no secret and no input path component anywhere', () => {
    const top = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-hash-'));
    const root = path.join(top, 'Hospital-Smith-John', 'MRN-8812345');
    fs.mkdirSync(path.join(root, 'Series Smith 2'), { recursive: true });
    fs.copyFileSync(fixture('data/dicom/pydicom/CT_small.dcm'), path.join(root, 'Series Smith 2', 'IM-Smith-0001.dcm'));
    fs.copyFileSync(fixture('data/dicom/pydicom/MR_truncated.dcm'), path.join(root, 'IM-Smith-broken.dcm'));
    tinyArchive(path.join(root, 'smith-labels.npz'));
    const keyFile = path.join(top, 'Smith-secret.key');
    fs.writeFileSync(keyFile, `${SECRET}\n`);
    const config = path.join(top, 'exp.yaml');
    fs.writeFileSync(config, [
      `data: { inputs: [${JSON.stringify(root)}], privacyKeyFile: Smith-secret.key, hashPaths: true }`,
      'augment: { global: { count: 2, size: 8, scale: [0.5, 1] }, local: { count: 2, size: 4, scale: [0.2, 0.5] } }',
      'model: { width: 4, depth: [1, 1], projection: { hidden: 16, out: 8 }, prototypes: 8 }',
      'train: { batchSize: 16, optimizer: { name: sgd, lr: 0.05 } }',
      'evaluate:',
      '  pretrainImages: 200',
      '  fractions: [1]',
      '  seeds: [0]',
      '  protocols: [knn]',
      `  datasets: [{ file: ${JSON.stringify(path.join(root, 'smith-labels.npz'))}, modality: radiography }]`,
      '  arms: [{ name: none, kind: none }, { name: SwAV, kind: swav-multi-modal }]',
    ].join('\n'));
    const out = path.join(top, 'out');
    const cache = path.join(out, 'ingested');

    const outputs: Array<[string, string]> = [];
    const record = (what: string, r: ReturnType<typeof run>) => {
      outputs.push([`${what} stdout`, r.stdout], [`${what} stderr`, r.stderr]);
      return r;
    };
    const ingest = record('ingest', run(['ingest', root, '--cache', cache, '--config', config, '--json']));
    expect(ingest.status, ingest.stderr).toBe(0);
    const summary = JSON.parse(ingest.stdout);
    expect(summary.failures).toBe(1); // the truncated file, reported by its hashed name
    expect(ingest.stderr).toMatch(/^medssl: [0-9a-f]{16}: truncated: /m);
    expect(ingest.stderr).not.toMatch(/WARNING: no privacy secret/);
    const stats = record('stats', run(['cache', 'stats', cache, '--json']));
    expect(JSON.parse(stats.stdout).records).toBeGreaterThan(100);
    record('stats text', run(['cache', 'stats', cache]));
    record('verify', run(['cache', 'verify', cache]));
    const experiment = record('experiment', run(['experiment', '--config', config, '--out', out, '--quiet']));
    expect(experiment.status, experiment.stderr).toBe(0);
    for (const f of ['results.json', 'report.md', 'report.html', 'config.json']) expect(fs.existsSync(path.join(out, f))).toBe(true);
    for (const file of filesUnder(out)) outputs.push([path.relative(out, file), fs.readFileSync(file).toString('latin1')]);
    expect(outputs.length).toBeGreaterThan(15);

    // (The run folder and cache path the user chose are not input paths: they may be printed.)
    const forbidden = [SECRET, root, 'Hospital-Smith-John', 'MRN-8812345', 'Series Smith 2', 'IM-Smith', 'smith-labels', 'Smith-secret', 'Smith'];
    for (const [where, text] of outputs) {
      for (const word of forbidden) expect(text.includes(word), `${word} in ${where}`).toBe(false);
    }
    // The hashed names are the keyed hashes, consistently: the failure in stats is the one ingest reported.
    const failed = JSON.parse(stats.stdout).failures[0];
    expect(ingest.stderr).toContain(`medssl: ${failed.file}: truncated`);
  }, 300_000);
});

describe('without a secret', () => {
  it('every command that writes keys warns on stderr, and says how to set one', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-warn-'));
    const banner = /WARNING: no privacy secret set[\s\S]*MEDSSL_PRIVACY_KEY[\s\S]*data\.privacyKeyFile/;
    const ingest = run(['ingest', fixture('data/dicom/pydicom/CT_small.dcm'), '--cache', path.join(dir, 'c')]);
    expect(ingest.status).toBe(0);
    expect(ingest.stderr).toMatch(banner);
    const decode = run(['decode', fixture('data/dicom/pydicom/CT_small.dcm'), '--json']);
    expect(decode.stderr).toMatch(banner);
    expect(JSON.parse(decode.stdout).patientKey).toMatch(/^[0-9a-f]{32}$/);
    // A file without identifiers writes no key: no warning.
    expect(run(['decode', fixture('data/nifti/nibabel/anatomical.nii')]).stderr).not.toMatch(banner);
    // With a secret, nothing to warn about.
    const quiet = run(['ingest', fixture('data/dicom/pydicom/CT_small.dcm'), '--cache', path.join(dir, 'd')], { MEDSSL_PRIVACY_KEY: SECRET });
    expect(quiet.stderr).not.toMatch(banner);
    expect(quiet.stderr).not.toContain(SECRET);
  });
});
