// The public API: `import { ... } from 'medssl'`.
export * from '../schemas/index.js';
export { random, RandomStream, philox4x32, hash32, type RandomKey, type RandomSource } from './random.js';
export { Gate, settle, pull, type GateOptions, type PullOptions } from './flow.js';
export { FailureLog, MedsslError, guard, toFailure, type GuardOptions } from './failures.js';
export { walkFiles, fromHighland, toHighland, writeJsonl, readJsonl } from './bridge.js';
export { loadConfig, stableHash } from './config.js';
export {
  CacheStore, CACHE_SCHEMA_VERSION, CorruptRecordError, encodeRecord, decodeRecord, checkRecord, readHeader, recordKey, sourceKey, contentKey,
  type CacheStoreOptions, type SourceMarker, type RecordHeader, type PreparationInfo,
} from '../stages/cache/store.js';
export { ingest, shardOf, parseShard, type IngestOptions, type IngestProgress, type IngestSummary, type Prepare, type Shard } from '../stages/cache/ingest.js';
export { replay, replay$, CacheDataset, type ReplayOptions } from '../stages/cache/replay.js';
export { verifyCache, cacheStats, type VerifyReport, type CacheStats } from '../stages/cache/verify.js';
export { listInputs, prepareSource, prepareInWorkers, preparationHash, preparationConfig, saltedKey, PREPARE_VERSION } from './prepare.js';
