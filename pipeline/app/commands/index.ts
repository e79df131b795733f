// Every command of the CLI, in the order `medssl --help` lists them.
import type { Command } from 'commander';
import { register as cache } from './cache.js';
import { register as config } from './config.js';
import { register as decode } from './decode.js';
import { register as experiment } from './experiment.js';
import { register as info } from './info.js';
import { register as ingest } from './ingest.js';
import { register as pretrain } from './pretrain.js';
import { register as preview } from './preview.js';
import { register as run } from './run.js';

export const commands: Array<(program: Command) => void> = [run, ingest, cache, decode, preview, pretrain, experiment, config, info];
