// Every command of the CLI, in the order `medssl --help` lists them.
import type { Command } from 'commander';
import { register as info } from './info.js';
import { register as pretrain } from './pretrain.js';
import { register as run } from './run.js';

export const commands: Array<(program: Command) => void> = [run, pretrain, info];
