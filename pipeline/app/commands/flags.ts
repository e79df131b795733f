// Flags that several commands share, validated the same way everywhere: a bad value is a usage error (exit 2).
import { InvalidArgumentError } from 'commander';
import { PRESET_NAMES, type PresetName } from '../../../schemas/config.js';

/** `--workers N`: a positive integer. */
export function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag}: expected a positive integer, got "${value}"`);
    return n;
  };
}

/** One failure record as every command prints it on stderr: `medssl: FILE [entry]: code: reason`. */
export function failureLine(f: { file: string; id?: string; code: string; reason: string }): string {
  return `medssl: ${f.file}${f.id && !f.file.endsWith(f.id) ? ` [${f.id}]` : ''}: ${f.code}: ${f.reason}\n`;
}

/** `--preset NAME`: one of the evaluation presets. */
export const PRESET_HELP = 'quick (the main job, within 15 minutes on 2 cores), standard (ResNet-18 at 64 px, about 70 minutes; run defaults to fixtures/experiment-standard.yaml) or full (about 4 hours)';
export function presetName(value: string): PresetName {
  if (!(PRESET_NAMES as readonly string[]).includes(value)) throw new InvalidArgumentError(`--preset: expected ${PRESET_NAMES.join(', ')}, got "${value}"`);
  return value as PresetName;
}
