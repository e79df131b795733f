// Reads a YAML or JSON config file, validates it, and resolves its relative paths against the file's folder.
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type Config, ConfigError, parseConfig } from '../../schemas/config.js';

/**
 * A config file, validated. `extends: FILE` (or a list) merges other config files under this one, in order: mappings
 * merge key by key, lists and values are replaced. Relative paths are relative to the file that names them.
 */
export function loadConfig(file: string | undefined, overrides: Record<string, unknown> = {}): Config {
  if (!file) return parseConfig(overrides, 'defaults');
  return parseConfig(deepMerge(readLayers(path.resolve(file), []), overrides), file);
}

/** One file with its `extends` merged under it, paths made absolute; `chain` names the files that led here. */
function readLayers(file: string, chain: string[]): Record<string, unknown> {
  if (chain.includes(file)) throw new ConfigError(chain[0], [`extends: ${[...chain, file].map((f) => path.basename(f)).join(' -> ')} is a cycle`]);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [`cannot read: ${(e as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (e) {
    throw new ConfigError(file, [`not valid YAML/JSON: ${(e as Error).message.split('\n')[0]}`]);
  }
  if (!isMapping(raw)) throw new ConfigError(file, ['(top level): expected a mapping of sections']);
  const { extends: bases = [], ...own } = raw;
  const list = typeof bases === 'string' ? [bases] : bases;
  if (!Array.isArray(list) || !list.every((b): b is string => typeof b === 'string' && b.length > 0)) {
    throw new ConfigError(file, ['extends: expected a config file or a list of them']);
  }
  const dir = path.dirname(file);
  resolvePaths(own, dir);
  let merged: Record<string, unknown> = {};
  for (const b of list) merged = deepMerge(merged, readLayers(path.resolve(dir, b), [...chain, file]));
  return deepMerge(merged, own);
}

/** The config's file paths (pool inputs, cache, key file, labelled datasets, exported encoders) made absolute. */
function resolvePaths(raw: Record<string, unknown>, dir: string): void {
  const abs = (p: unknown) => (typeof p === 'string' && p && !path.isAbsolute(p) ? path.resolve(dir, p) : p);
  const { data, cache, evaluate } = raw;
  if (isMapping(data)) {
    if (Array.isArray(data.inputs)) data.inputs = data.inputs.map(abs);
    if ('privacyKeyFile' in data) data.privacyKeyFile = abs(data.privacyKeyFile);
  }
  if (isMapping(cache) && 'path' in cache) cache.path = abs(cache.path);
  if (isMapping(evaluate)) {
    for (const d of Array.isArray(evaluate.datasets) ? evaluate.datasets : []) if (isMapping(d) && 'file' in d) d.file = abs(d.file);
    for (const a of Array.isArray(evaluate.arms) ? evaluate.arms : []) if (isMapping(a) && 'encoder' in a) a.encoder = abs(a.encoder);
  }
}

const isMapping = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
      ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
      : v;
  }
  return out;
}

/** A short stable hash of any JSON value (config sections in cache keys and run records). */
export function stableHash(value: unknown): string {
  const json = stableStringify(value);
  let h1 = 0x811c9dc5, h2 = 0x01000193;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
  }
  return h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0');
}

export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const keys = Object.keys(value as object).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify((value as Record<string, unknown>)[k])}`).join(',')}}`;
}
