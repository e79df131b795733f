// The public API: `import { ... } from 'medssl'`.
export * from '../schemas/index.js';
export { random, RandomStream, philox4x32, hash32, type RandomKey, type RandomSource } from './random.js';
export { Gate, settle, pull, type GateOptions, type PullOptions } from './flow.js';
export { FailureLog, MedsslError, guard, toFailure, type GuardOptions } from './failures.js';
export { walkFiles, fromHighland, toHighland, writeJsonl, readJsonl } from './bridge.js';
export { loadConfig, stableHash } from './config.js';
export { batchesFor, stepsPerEpochFor, randomResizedCrop, type BatchesOptions, type PlainImage } from './batches.js';
export { sinkhornKnopp, type SinkhornOptions } from '../stages/train/sinkhorn.js';
export { swavLoss, type SwavLossOptions } from '../stages/train/swav-loss.js';
export { ntXentLoss } from '../stages/train/ntxent-loss.js';
export { sigmoidCrossEntropy } from '../stages/train/supervised-loss.js';
export { train, CollapseWatch, type TrainOptions } from '../stages/train/train.js';
export { Trainer, modalityGroups, type StepResult, type TrainerPosition } from '../stages/train/trainer.js';
export { pretrain, type PretrainOptions, type PretrainResult } from '../stages/train/pretrain.js';
export { loadEncoder, exportEncoder, saveCheckpoint, loadCheckpoint, type Encoder } from '../stages/train/checkpoint.js';
export { encoderSpec, encoderModel, type EncoderSpec } from '../stages/train/resnet.js';
export { learningRate, lambdaAt } from '../stages/train/schedule.js';
