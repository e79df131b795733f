import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../pipeline/core/config.js';
import { CONFIG_TEMPLATE } from '../../pipeline/app/config-template.js';
import { parseConfig } from '../../schemas/config.js';
import { cli, fixture } from '../shared.js';

describe('config files', () => {
  it('the starting config is valid and names every section and key the schema has', () => {
    const raw = parse(CONFIG_TEMPLATE) as Record<string, Record<string, unknown>>;
    const defaults = parseConfig({});
    expect(Object.keys(raw).sort()).toEqual(Object.keys(defaults).sort());
    for (const [section, value] of Object.entries(defaults)) {
      if (typeof value === 'object') expect(Object.keys(raw[section]).sort(), section).toEqual(Object.keys(value).sort());
    }
    expect(() => parseConfig(raw)).not.toThrow();
    // Keys without a default are shown commented out.
    for (const optional of ['arms', 'budgetSeconds', 'pretrainImages']) expect(CONFIG_TEMPLATE).toMatch(new RegExp(`^\\s*# ${optional}:`, 'm'));
  });

  it('shows the default value of every key, as it says (only the example inputs and datasets differ)', () => {
    const raw = parse(CONFIG_TEMPLATE) as Record<string, Record<string, unknown>>;
    const shown = parseConfig(raw) as unknown as Record<string, unknown>;
    const defaults = parseConfig({}) as unknown as Record<string, Record<string, unknown>>;
    const expected = { ...defaults, data: { ...defaults.data, inputs: raw.data.inputs }, evaluate: { ...defaults.evaluate, datasets: shown.evaluate && (shown.evaluate as Record<string, unknown>).datasets } };
    const mismatches: string[] = [];
    const compare = (a: unknown, b: unknown, where: string) => {
      if (typeof a === 'number' && typeof b === 'number') {
        if (Math.abs(a - b) > 1e-6 * Math.max(1, Math.abs(b))) mismatches.push(`${where}: template ${a}, default ${b}`);
      } else if (a && b && typeof a === 'object' && typeof b === 'object') {
        for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) compare((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${where}.${k}`);
      } else if (a !== b) mismatches.push(`${where}: template ${JSON.stringify(a)}, default ${JSON.stringify(b)}`);
    };
    compare(shown, expected, 'config');
    expect(mismatches).toEqual([]);
  });

  it('resolves relative paths against the config file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-config-'));
    fs.writeFileSync(path.join(dir, 'c.yaml'), 'data:\n  inputs: [./scans]\ncache:\n  path: cache\n');
    const c = loadConfig(path.join(dir, 'c.yaml'));
    expect(c.data.inputs).toEqual([path.join(dir, 'scans')]);
    expect(c.cache.path).toBe(path.join(dir, 'cache'));
  });

  it('extends: merges other files under this one, paths relative to the file that names them, cycles refused', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-config-'));
    fs.mkdirSync(path.join(dir, 'base'));
    fs.writeFileSync(path.join(dir, 'base', 'b.yaml'), [
      'data: { inputs: [./scans] }', 'model: { arch: resnet18, prototypes: 64 }', 'train: { batchSize: 32, optimizer: { name: sgd, lr: 0.1 } }',
      'evaluate: { datasets: [{ file: ./p.npz, modality: radiography }] }', '',
    ].join('\n'));
    fs.writeFileSync(path.join(dir, 'r.yaml'), 'model: { prototypes: 300 }\ntrain: { optimizer: { lr: 0.6 } }\n');
    fs.writeFileSync(path.join(dir, 'c.yaml'), 'extends: [./base/b.yaml, ./r.yaml]\ntrain: { batchSize: 64 }\nevaluate: { preset: standard }\n');
    const c = loadConfig(path.join(dir, 'c.yaml'));
    expect(c.data.inputs).toEqual([path.join(dir, 'base', 'scans')]);
    expect(c.evaluate.datasets[0].file).toBe(path.join(dir, 'base', 'p.npz'));
    // Mappings merge key by key, later files over earlier, the file itself last.
    expect([c.model.arch, c.model.prototypes, c.train.batchSize, c.train.optimizer.name, c.train.optimizer.lr, c.evaluate.preset])
      .toEqual(['resnet18', 300, 64, 'sgd', 0.6, 'standard']);
    fs.writeFileSync(path.join(dir, 'x.yaml'), 'extends: ./y.yaml\n');
    fs.writeFileSync(path.join(dir, 'y.yaml'), 'extends: ./x.yaml\n');
    expect(() => loadConfig(path.join(dir, 'x.yaml'))).toThrow(/extends: x\.yaml -> y\.yaml -> x\.yaml is a cycle/);
    fs.writeFileSync(path.join(dir, 'n.yaml'), 'extends: 3\n');
    expect(() => loadConfig(path.join(dir, 'n.yaml'))).toThrow(/extends: expected a config file or a list of them/);
  });

  it('the standard preset\'s config is the bundled experiment with the standard recipe, evaluated at its crop size', () => {
    const quick = loadConfig(fixture('experiment.yaml'));
    const standard = loadConfig(fixture('experiment-standard.yaml'));
    expect(standard.data).toEqual(quick.data);
    expect(standard.evaluate.datasets).toEqual(quick.evaluate.datasets);
    expect(standard.evaluate.arms).toEqual(quick.evaluate.arms);
    expect([standard.model.arch, standard.model.prototypes, standard.augment.global.size, standard.evaluate.size, standard.evaluate.preset])
      .toEqual(['resnet18', 300, 64, 64, 'standard']);
    expect(standard.train.queue.length).toBeGreaterThan(0);
    expect(standard.train.freezePrototypesSteps).toBeGreaterThan(0);
    expect(standard.train.optimizer.warmupSteps).toBeGreaterThan(0);
    expect(quick.evaluate.size).toBeNull();
  });

  it('the replicated, RetinaMNIST and ablation configs are the bundled experiment with what they say changed', () => {
    const quick = loadConfig(fixture('experiment.yaml'));
    const replicated = loadConfig(fixture('experiment-replicated.yaml'));
    expect({ ...replicated.evaluate, replicatePretraining: false, budgetSeconds: undefined }).toEqual({ ...quick.evaluate, budgetSeconds: undefined });
    expect(replicated.evaluate.replicatePretraining).toBe(true);
    const freeze = loadConfig(path.join(fixture('..'), 'examples', 'ablations', 'freeze-prototypes.yaml'));
    expect([freeze.data, freeze.train, freeze.evaluate.replicatePretraining]).toEqual([quick.data, quick.train, true]);
    expect(freeze.evaluate.arms!.map((a) => a.train?.freezePrototypesSteps ?? 0)).toEqual([0, 0, 100, 0, 100]);
    const queue = loadConfig(path.join(fixture('..'), 'examples', 'ablations', 'queue.yaml'));
    expect([queue.data, queue.train, queue.evaluate.replicatePretraining]).toEqual([quick.data, quick.train, true]);
    // Each SwAV arm with and without the queue, otherwise the same.
    const queued = queue.evaluate.arms!.filter((a) => (a.train?.queue as { length?: number } | undefined)?.length);
    expect(queued.map((a) => a.kind)).toEqual(['swav-multi-modal', 'swav-uni-modal', 'swav-target-modality']);
    for (const a of queued) expect(queue.evaluate.arms!.some((b) => b.kind === a.kind && JSON.stringify({ ...a.train, queue: undefined }) === JSON.stringify({ ...b.train, queue: undefined }) && b !== a)).toBe(true);
    // Recipe selection scores the validation split; each variant is a baseline arm with epsilon and/or per-modality prototypes changed.
    const selection = loadConfig(path.join(fixture('..'), 'examples', 'ablations', 'recipe-selection.yaml'));
    expect([selection.data, selection.train, selection.evaluate.replicatePretraining, selection.evaluate.scoreOn]).toEqual([quick.data, quick.train, true, 'validation']);
    for (const { arm, against } of selection.evaluate.contrasts) {
      const [a, b] = [arm, against].map((n) => selection.evaluate.arms!.find((x) => x.name === n)!);
      expect(a.kind).toBe(b.kind);
      expect({ ...a.train, epsilon: undefined, prototypesPerModality: undefined }).toEqual({ ...b.train });
    }
    // The run on the test set takes its arms from the selection as they were, and scores the test split.
    const selected = loadConfig(path.join(fixture('..'), 'examples', 'ablations', 'recipe-selected.yaml'));
    expect([selected.data, selected.train, selected.evaluate.replicatePretraining, selected.evaluate.scoreOn]).toEqual([quick.data, quick.train, true, 'test']);
    for (const a of selected.evaluate.arms!) expect(selection.evaluate.arms!.find((b) => b.name === a.name)).toEqual(a);
    // So does the target modality's epsilon run, and its peer config runs a subset of those arms.
    const target = loadConfig(path.join(fixture('..'), 'examples', 'ablations', 'target-modality-epsilon.yaml'));
    expect([target.data, target.train, target.evaluate.replicatePretraining, target.evaluate.scoreOn]).toEqual([quick.data, quick.train, true, 'test']);
    for (const a of target.evaluate.arms!) expect(selection.evaluate.arms!.find((b) => b.name === a.name)).toEqual(a);
    for (const peer of ['recipe-selected-peer.yaml', 'target-modality-epsilon-peer.yaml']) {
      const c = loadConfig(path.join(fixture('..'), 'examples', 'ablations', peer));
      const base = peer.startsWith('target') ? target : selected;
      expect([c.data, c.train, c.evaluate.replicatePretraining]).toEqual([quick.data, quick.train, true]);
      for (const a of c.evaluate.arms!) expect(base.evaluate.arms!.find((b) => b.name === a.name)).toEqual(a);
    }
    const retina = loadConfig(fixture('experiment-retina.yaml'));
    expect([retina.data, retina.train, retina.evaluate.arms]).toEqual([quick.data, quick.train, quick.evaluate.arms]);
    expect(retina.evaluate.datasets.map((d) => [d.name, fs.existsSync(d.file)])).toEqual([['RetinaMNIST', true], ['AdrenalMNIST3D', true]]);
    // Every contrast names arms of its own config (the experiment refuses one that does not).
    for (const c of [quick, replicated, freeze, queue, selection, selected, target, retina]) {
      const names = c.evaluate.arms!.map((a) => a.name);
      expect(c.evaluate.contrasts.length).toBeGreaterThan(0);
      for (const { arm, against } of c.evaluate.contrasts) expect([names.includes(arm), names.includes(against)]).toEqual([true, true]);
    }
  });

  it('`medssl config init` writes it and `config check` reports bad fields with exit 2', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-config-'));
    const file = path.join(dir, 'medssl.yaml');
    execFileSync(process.execPath, [cli, 'config', 'init', file], { stdio: 'ignore' });
    expect(fs.readFileSync(file, 'utf8')).toBe(CONFIG_TEMPLATE);
    fs.writeFileSync(path.join(dir, 'bad.yaml'), 'train:\n  batchSize: lots\n');
    const r = spawnSync(process.execPath, [cli, 'config', 'check', path.join(dir, 'bad.yaml')], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('train.batchSize: expected number, got string "lots"');
    // Writing over an existing file is refused as a usage error, and the file is untouched.
    fs.writeFileSync(file, 'mine\n');
    const again = spawnSync(process.execPath, [cli, 'config', 'init', file], { encoding: 'utf8' });
    expect(again.status).toBe(2);
    expect(again.stderr).toContain('exists (use --force to overwrite)');
    expect(fs.readFileSync(file, 'utf8')).toBe('mine\n');
  });
});
