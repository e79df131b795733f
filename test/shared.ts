// Test data that lives beside the project (../shared) and in fixtures/.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** `../shared/data/<rel>`: the real corpus and its reference decodes. */
export const sharedData = (rel = '') => path.join(projectRoot, '..', 'shared', 'data', rel);
export const sharedVectors = (rel = '') => path.join(projectRoot, '..', 'shared', 'vectors', rel);
export const fixture = (rel = '') => path.join(projectRoot, 'fixtures', rel);
/** The built CLI (npm test builds dist/ before running vitest). */
export const cli = path.join(projectRoot, 'dist', 'pipeline', 'cli.js');
export const readJson = <T = unknown>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;
