// Reads a YAML or JSON config file, validates it, and resolves its relative paths against the file's folder.
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type Config, ConfigError, parseConfig } from '../../schemas/config.js';

export function loadConfig(file: string | undefined, overrides: Record<string, unknown> = {}): Config {
  if (!file) return parseConfig(overrides, 'defaults');
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
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(file, ['(top level): expected a mapping of sections']);
  const config = parseConfig(deepMerge(raw as Record<string, unknown>, overrides), file);
  const dir = path.dirname(path.resolve(file));
  config.data.inputs = config.data.inputs.map((p) => (path.isAbsolute(p) ? p : path.resolve(dir, p)));
  if (config.cache.path && !path.isAbsolute(config.cache.path)) config.cache.path = path.resolve(dir, config.cache.path);
  if (config.data.privacyKeyFile && !path.isAbsolute(config.data.privacyKeyFile)) config.data.privacyKeyFile = path.resolve(dir, config.data.privacyKeyFile);
  for (const arm of config.evaluate.arms ?? []) if (arm.encoder && !path.isAbsolute(arm.encoder)) arm.encoder = path.resolve(dir, arm.encoder);
  return config;
}

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
