// Every command of the CLI, in the order `medssl --help` lists them.
import type { Command } from 'commander';
import { register as info } from './info.js';
import { register as run } from './run.js';
import { register as experiment } from './experiment.js';

export const commands: Array<(program: Command) => void> = [run, experiment, info];
