// The records that flow between stages. Each is a zod schema plus its TypeScript type.
// Stages trust their inputs' types (no per-record validation in hot paths); the schemas are checked at the
// boundaries where data comes from outside the process: cache reads, manifests, worker messages in tests.
import { z } from 'zod';

/** Typed arrays a decoded image may hold: the DICOM/NIfTI stored values in their natural dtype. */
export const DTYPES = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'float32', 'float64'] as const;
export const Dtype = z.enum(DTYPES);
export type Dtype = z.infer<typeof Dtype>;
export type PixelArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array;

const isPixelArray = (v: unknown): v is PixelArray =>
  v instanceof Uint8Array || v instanceof Int8Array || v instanceof Uint16Array || v instanceof Int16Array ||
  v instanceof Uint32Array || v instanceof Int32Array || v instanceof Float32Array || v instanceof Float64Array;
export const PixelArraySchema = z.custom<PixelArray>(isPixelArray, { message: 'expected a typed pixel array' });
export const Float32ArraySchema = z.custom<Float32Array>((v) => v instanceof Float32Array, { message: 'expected Float32Array' });

export const FORMATS = ['dicom', 'nifti', 'npz', 'npy', 'image'] as const;
export const Format = z.enum(FORMATS);
export type Format = z.infer<typeof Format>;

/** One thing to read: a file, or one entry of a container (an image inside a MedMNIST .npz). */
export const SourceItem = z.object({
  /** Stable identity across runs and machines: the path relative to its input root, plus `#entry` for containers. */
  id: z.string().min(1),
  /** File to read. */
  path: z.string().min(1),
  /** Detected from the name and magic bytes when absent. */
  format: Format.optional(),
  /** Address inside a container, e.g. `train/12` for the 13th training image of an .npz. */
  entry: z.string().optional(),
  /** Labels, one entry per task (binary tasks have one entry, 0 or 1). */
  label: z.array(z.number()).optional(),
  /** Raw patient id from a manifest; the decode stage hashes it (see DecodedImage.patientKey). */
  patientId: z.string().optional(),
  /** Overrides the modality read from the file. */
  modality: z.string().optional(),
  split: z.enum(['train', 'val', 'test']).optional(),
  /**
   * Set by the source stage for an entry it will not read (a link not followed, a FIFO, an entry it cannot stat):
   * the item becomes this failure without being opened.
   */
  error: z.object({ code: z.enum(['unreadable', 'not-found']), reason: z.string() }).optional(),
});
export type SourceItem = z.infer<typeof SourceItem>;

/**
 * A SourceItem on its way into the decode stage, with the file's bytes when a step before has read them already
 * (ingest reads each file once, to hash it, and hands the bytes on). Without bytes, decode reads the file.
 */
export type SourceInput = SourceItem & { bytes?: Uint8Array };

/** One 2-D frame (DICOM frame, NIfTI slice, MedMNIST image) with the stored values before any LUT. */
export const DecodedImage = z.object({
  /** `${sourceId}#${frame}`: unique per frame. */
  id: z.string(),
  sourceId: z.string(),
  path: z.string(),
  format: Format,
  /** Index of this frame or slice, and how many the source has. */
  frame: z.number().int().nonnegative(),
  frames: z.number().int().positive(),
  /** DICOM (0008,0060) in upper case; 'OT' when unknown. */
  modality: z.string(),
  rows: z.number().int().positive(),
  cols: z.number().int().positive(),
  samples: z.number().int().positive(),
  dtype: Dtype,
  /** Row-major, samples interleaved: index = (r * cols + c) * samples + s. */
  data: PixelArraySchema,
  /** MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, PALETTE COLOR, ...; NIfTI and npz report MONOCHROME2 or RGB. */
  photometric: z.string(),
  bitsStored: z.number().int().positive().optional(),
  /** Modality LUT: value = slope * stored + intercept (DICOM rescale, NIfTI scl_*). */
  rescale: z.object({ slope: z.number(), intercept: z.number() }),
  window: z.object({ center: z.number(), width: z.number() }).optional(),
  /** Millimetres between rows and between columns; null when the file does not say. */
  spacing: z.tuple([z.number(), z.number()]).nullable(),
  /** Patient-space position of the first pixel and the row/column direction cosines, when known. */
  position: z.array(z.number()).length(3).optional(),
  orientation: z.array(z.number()).length(6).optional(),
  /** Keyed hashes (HMAC-SHA-256, pipeline/core/privacy.ts) of patient, study and series ids: enough for patient-level splits, no PHI. */
  patientKey: z.string().optional(),
  studyKey: z.string().optional(),
  seriesKey: z.string().optional(),
  label: z.array(z.number()).optional(),
  split: z.enum(['train', 'val', 'test']).optional(),
});
export type DecodedImage = z.infer<typeof DecodedImage>;

/** A decoded frame after modality normalization: float32, channels last, ready for augmentation. */
export const NormalizedImage = z.object({
  id: z.string(),
  sourceId: z.string(),
  frame: z.number().int().nonnegative(),
  modality: z.string(),
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  channels: z.number().int().positive(),
  /** (height, width, channels), row-major. Range depends on the modality rule (documented in stages/normalize). */
  data: Float32ArraySchema,
  spacing: z.tuple([z.number(), z.number()]).nullable(),
  patientKey: z.string().optional(),
  label: z.array(z.number()).optional(),
  split: z.enum(['train', 'val', 'test']).optional(),
  /** Hash of the normalization config that produced it (part of the cache key). */
  normalization: z.string(),
  /**
   * The value range the modality rule guarantees ([0, 1] for windows and percentile rules, the clipped range in
   * z units for MR); augmentations such as gamma work on it. Absent: augment uses the data's min and max.
   */
  range: z.tuple([z.number(), z.number()]).optional(),
  /**
   * Alternative renderings stacked along the channel axis (CT 'random' window mode: one per window), each of
   * channels / renderings channels; augment draws one per sample and epoch. Absent means 1.
   */
  renderings: z.number().int().positive().optional(),
});
export type NormalizedImage = z.infer<typeof NormalizedImage>;

export const CropKind = z.enum(['global', 'local']);
export type CropKind = z.infer<typeof CropKind>;

export const Crop = z.object({
  kind: CropKind,
  size: z.number().int().positive(),
  channels: z.number().int().positive(),
  /** (size, size, channels) float32. */
  data: Float32ArraySchema,
  /** Every random parameter that produced this crop (box, flip, gamma, ...), for logs and replay checks. */
  params: z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.array(z.number())])),
});
export type Crop = z.infer<typeof Crop>;

/** The multi-crop views of one sample in one epoch. */
export const CropSet = z.object({
  id: z.string(),
  epoch: z.number().int().nonnegative(),
  /** Position of the sample in the epoch's order. */
  sample: z.number().int().nonnegative(),
  modality: z.string(),
  crops: z.array(Crop).min(1),
  label: z.array(z.number()).optional(),
  patientKey: z.string().optional(),
});
export type CropSet = z.infer<typeof CropSet>;

/** B crop sets stacked per view: views[v].data is (B, size, size, channels). */
export const Batch = z.object({
  epoch: z.number().int().nonnegative(),
  step: z.number().int().nonnegative(),
  ids: z.array(z.string()),
  modalities: z.array(z.string()),
  views: z.array(z.object({ kind: CropKind, size: z.number().int().positive(), channels: z.number().int().positive(), data: Float32ArraySchema })),
  /** (B, numLabels); rows of unlabelled samples are 0 and masked out by labelMask. */
  labels: Float32ArraySchema.optional(),
  labelMask: z.custom<Uint8Array>((v) => v instanceof Uint8Array).optional(),
  numLabels: z.number().int().nonnegative().default(0),
});
export type Batch = z.infer<typeof Batch>;

/** Why an item could not be processed. Stages emit these on the failure channel instead of erroring the stream. */
export const FAILURE_CODES = [
  'not-found', 'unreadable', 'wrong-format', 'truncated', 'corrupt', 'too-large', 'unsupported', 'no-pixel-data',
  'decode-error', 'invalid-value', 'internal',
] as const;
export const FailureCode = z.enum(FAILURE_CODES);
export type FailureCode = z.infer<typeof FailureCode>;

export const FailureRecord = z.object({
  kind: z.literal('failure'),
  /** The file the item came from (as given by the user). */
  file: z.string(),
  /** The stage that failed: 'source', 'decode', 'normalize', 'augment', 'cache', 'train', ... */
  stage: z.string(),
  code: FailureCode,
  /** One line for people: what is wrong with the file. */
  reason: z.string(),
  /** Item id when known (frame-level failures). */
  id: z.string().optional(),
});
export type FailureRecord = z.infer<typeof FailureRecord>;
