// Flags that several commands share, validated the same way everywhere: a bad value is a usage error (exit 2).
import { InvalidArgumentError } from 'commander';

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
