// The public API: `import { ... } from 'medssl'`.
export * from '../schemas/index.js';
export { random, RandomStream, IndexShuffle, philox4x32, hash32, type RandomKey, type RandomSource } from './core/random.js';
export { Gate, settle, pull, type GateOptions, type PullOptions } from './core/flow.js';
export { FailureLog, MedsslError, guard, toFailure, type GuardOptions } from './core/failures.js';
export { walkFiles, fromHighland, toHighland, writeJsonl, readJsonl, type ToHighlandOptions, type JsonlOptions } from './core/bridge.js';
export { loadConfig, stableHash } from './core/config.js';
export { listSources, detectFormat, medmnistModality, type SourceOptions } from '../stages/source/source.js';
export { decode, decodeItem, decodeFile, decodeThreads, arrayFrames, type DecodeOptions, type DecodeItemOptions, type DecodeThreads, type DecodedFile } from '../stages/decode/decode.js';
export { Keyring, privacyKeyring, warnPublicKey, SourceNames, PRIVACY_KEY_ENV, type KeyKind } from './core/privacy.js';
export { normalize, normalizeImage, normalizeThreads, modalityRule, foregroundZScore, unitScale, resampleToSpacing, type NormalizeOptions, type NormalizeThreads, type ModalityRule } from '../stages/normalize/normalize.js';
export { hounsfieldWindow, modalityLut, percentiles, otsuThreshold, minMax, toChannels } from '../stages/normalize/intensity.js';
export { augment, resolveWorkers, type AugmentOptions } from '../stages/augment/augment.js';
export { multiCrop, cropSet, cropSetValues, randomResizedBox, drawIntensity, drawRendering, renderCrop, cropPlan, intensityRange, type CropBox, type IntensityParams } from '../stages/augment/crops.js';
export { toBatches, stackBatch, composeStratified, type BatchOptions } from '../stages/batch/batch.js';
export { CropBuffers } from '../stages/augment/buffers.js';
// Evaluation (stages/evaluate): metrics, splits, protocols, perturbations, the experiment runner and its reports.
export { rocAuc, delongAuc, aucWithCi, combineSeeds, midranks, type AucResult } from '../stages/evaluate/auc.js';
export { labelFractions, type FractionOptions } from '../stages/evaluate/splits.js';
export { loadMedmnist, subset, imageAt, mapImages, maxAreaSlice, resizeDataset, withChannels, type LabelledDataset, type LabelledSplit } from '../stages/evaluate/datasets.js';
export {
  perturb, intensityScaleShift, gamma, rotate, zoom, describePerturbation, DEFAULT_GRID, type Image, type Perturbation, type Fill,
} from '../stages/evaluate/perturb.js';
export {
  linearProbe, knnProbe, finetune, extractFeatures, cloneEncoder, initialiseWeights, logisticRegression, selectRows,
  type Scorer, type ProtocolResult, type FinetuneResult, type FinetuneOptions, type LinearProbeOptions, type KnnOptions,
  type Features, type FeatureSet, type CurvePoint,
} from '../stages/evaluate/protocols.js';
export {
  runExperiment, robustness, addConvergence, PRESETS, PAPER_ARMS, QUICK_GRID,
  type ArmSpec, type ArmKind, type ArmContext, type ArmProvider, type ExperimentPlan, type ExperimentResult, type Preset, type Protocol,
  type DatasetSpec, type ArmResult, type DatasetResult, type FractionResult, type ConvergenceResult, type RobustnessResult,
} from '../stages/evaluate/experiment.js';
export { resultsDocument, writeReports, renderMarkdown, renderHtml, type ResultsDocument, type Provenance } from '../stages/evaluate/report.js';
export { experimentArms, trainerArms, armConfig, armSteps, armEpochs, freshEncoder, type TrainerDeps } from './compose/arms.js';
export {
  CacheStore, CACHE_SCHEMA_VERSION, CacheError, CorruptRecordError, encodeRecord, decodeRecord, checkRecord, readHeader, recordKey, sourceKey, contentKey,
  type CacheStoreOptions, type SourceMarker, type RecordHeader, type PreparationInfo,
} from '../stages/cache/store.js';
export { ingest, shardOf, parseShard, type IngestOptions, type IngestProgress, type IngestSummary, type Prepare, type Shard } from '../stages/cache/ingest.js';
export { replay, replay$, CacheDataset, type ReplayOptions, type DatasetOptions, type EpochOptions } from '../stages/cache/replay.js';
export { SPLIT_GROUPS, type SplitGroup } from '../stages/cache/ordinal-index.js';
export { verifyCache, cacheStats, indexCache, type VerifyReport, type CacheStats, type IndexSummary } from '../stages/cache/verify.js';
export { listInputs, prepareImages, preparationHash, preparationConfig, sourceNames, ingestInputs, prepareThreads, PREPARE_VERSION, type IngestInputsOptions, type PrepareOptions, type PrepareThreads } from './compose/prepare.js';
export { packageVersion, packageRoot } from './core/version.js';
export { tf, backendInfo, loadTensorflow, tensorflowLoaded, tensorflowEnvironment, type BackendInfo, type BackendName } from './core/tensorflow.js';
export { runExperimentJob, experimentSummary, presetFor } from './compose/job.js';
export { openTrainingPool, poolBatches, poolStepsPerEpoch, poolGate, labelWidth, rankPositions, localBatchSize, type TrainingPool, type PoolOptions, type BatchesOptions } from './compose/batches.js';
export { openWorld, currentWorld, mpiLaunch, mpiLibrary, placeRank, SelfCommunicator, type Communicator, type ReduceOp, type CollectiveStats } from './core/mpi.js';
export { sinkhornKnopp, type SinkhornOptions } from '../stages/train/sinkhorn.js';
export { swavLoss, type SwavLossOptions } from '../stages/train/swav-loss.js';
export { ntXentLoss } from '../stages/train/ntxent-loss.js';
export { sigmoidCrossEntropy } from '../stages/train/supervised-loss.js';
export { train, CollapseWatch, type TrainOptions } from '../stages/train/train.js';
export { Trainer, modalityGroups, type StepResult, type TrainerPosition, type TrainerOptions } from '../stages/train/trainer.js';
export { syncBatchNorm, distributedCodes, gatherRows } from '../stages/train/distributed.js';
export { pretrain, type PretrainOptions, type PretrainResult } from '../stages/train/pretrain.js';
export { summarizeRun, readRunSummary, SUMMARY_WINDOW } from '../stages/train/summary.js';
export { loadEncoder, exportEncoder, saveCheckpoint, loadCheckpoint } from '../stages/train/checkpoint.js';
export { encoderSpec, encoderModel, type EncoderSpec } from '../stages/train/resnet.js';
export { learningRate, lambdaAt } from '../stages/train/schedule.js';
