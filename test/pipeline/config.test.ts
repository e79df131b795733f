import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../pipeline/config.js';
import { CONFIG_TEMPLATE } from '../../pipeline/config-template.js';
import { parseConfig } from '../../schemas/config.js';
import { cli } from '../shared.js';

describe('config files', () => {
  it('the starting config is valid and names every section and key the schema has', () => {
    const raw = parse(CONFIG_TEMPLATE) as Record<string, Record<string, unknown>>;
    const defaults = parseConfig({});
    expect(Object.keys(raw).sort()).toEqual(Object.keys(defaults).sort());
    for (const [section, value] of Object.entries(defaults)) {
      if (typeof value === 'object') expect(Object.keys(raw[section]).sort(), section).toEqual(Object.keys(value).sort());
    }
    expect(() => parseConfig(raw)).not.toThrow();
  });

  it('resolves relative paths against the config file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-config-'));
    fs.writeFileSync(path.join(dir, 'c.yaml'), 'data:\n  inputs: [./scans]\ncache:\n  path: cache\n');
    const c = loadConfig(path.join(dir, 'c.yaml'));
    expect(c.data.inputs).toEqual([path.join(dir, 'scans')]);
    expect(c.cache.path).toBe(path.join(dir, 'cache'));
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
  });
});
