// The public API: `import { ... } from 'medssl'`.
export * from '../schemas/index.js';
export { random, RandomStream, philox4x32, hash32, type RandomKey, type RandomSource } from './random.js';
export { Gate, settle, pull, type GateOptions, type PullOptions } from './flow.js';
export { FailureLog, MedsslError, guard, toFailure, type GuardOptions } from './failures.js';
export { walkFiles, fromHighland, toHighland, writeJsonl, readJsonl } from './bridge.js';
export { loadConfig, stableHash } from './config.js';
export { listSources, detectFormat, type SourceOptions } from '../stages/source/source.js';
export { decode, decodeItem, decodeFile, privacyKey, type DecodeOptions, type DecodedFile } from '../stages/decode/decode.js';
export { normalize, normalizeImage, modalityRule, foregroundZScore, unitScale, resampleToSpacing, type NormalizeOptions, type ModalityRule } from '../stages/normalize/normalize.js';
export { hounsfieldWindow, modalityLut, percentiles, otsuThreshold } from '../stages/normalize/intensity.js';
export { augment, resolveWorkers, type AugmentOptions } from '../stages/augment/augment.js';
export { multiCrop, cropSet, randomResizedBox, drawIntensity, drawRendering, renderCrop, cropPlan, intensityRange, type CropBox, type IntensityParams } from '../stages/augment/crops.js';
export { toBatches, stackBatch, composeStratified, type BatchOptions } from '../stages/augment/batch.js';
