// A pre-training pipeline wired in code, stage by stage: the program to copy when the CLI is not enough.
//
//   listInputs -> Gate.source -> prepareImages (decode -> normalize) -> augment -> settle -> toBatches -> train
//
// prepareImages is the chain `medssl ingest` runs on every source before caching it (same options, same
// preparation key), so the images trained on here are the images a cache of the same config would replay.
//
// It shows the two contracts every stage keeps:
// - backpressure: the Gate lets a source item in only while fewer than `window` are in flight, and the trainer pulls
//   batches (train() consumes with `pull`) and pauses the gate while its queue is full. The program prints the peak
//   number of frames alive between decode and the batcher: bounded by the window and the largest file, whatever
//   the number of files.
// - the failure side channel: the fixtures hold 3 broken files on purpose; each becomes a FailureRecord on the
//   FailureLog and the stream goes on. They are printed live and again at the end (the failures of the files read
//   before the step budget ran out: with the defaults, all three).
//
//   npx tsx examples/custom-pipeline.ts [--steps 12] [--batch 16] [--per-archive 24] [--seed 0] [--crop 28] [--width 8]
//   node dist/examples/custom-pipeline.js ...        (after `npx tsc -p tsconfig.json`)
//
// --crop is the global crop size (local crops are half), --width the encoder's first-stage channels.
// Prints one line per metrics event, the failures, then one JSON line with the key results. Writes nothing.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { lastValueFrom, take, tap, toArray } from 'rxjs';
import {
  FailureLog, Gate, augment, listInputs, parseConfig, prepareImages, settle, toBatches, train,
  type MetricsEvent, type SourceItem, type StepEvent, packageRoot } from 'medssl';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '12' },
    batch: { type: 'string', default: '16' },
    'per-archive': { type: 'string', default: '24' },
    seed: { type: 'string', default: '0' },
    crop: { type: 'string', default: '28' },
    width: { type: 'string', default: '8' },
  },
});
const steps = Number(args.steps), batchSize = Number(args.batch), perArchive = Number(args['per-archive']), seed = Number(args.seed);
const crop = Number(args.crop), width = Number(args.width);

// A tiny model and 28/14-pixel crops: this is about the wiring, not the representation.
const config = parseConfig({
  seed,
  augment: { global: { count: 2, size: crop, scale: [0.3, 1] }, local: { count: 2, size: Math.max(4, Math.round(crop / 2)), scale: [0.1, 0.3] }, workers: 1 },
  model: { width, depth: [1, 1], projection: { hidden: 32, out: 16 }, prototypes: 16 },
  train: { batchSize, epochs: 1, stepsPerEpoch: steps, highWaterMark: 2 },
});

const data = path.join(packageRoot, 'fixtures', 'data');
// DICOM and NIfTI first (the broken files are among them), then a few training images of each MedMNIST archive.
const inputs = ['dicom', 'nifti', 'medmnist/pneumoniamnist.npz', 'medmnist/adrenalmnist3d.npz'].map((p) => path.join(data, p));

// Room for the trainer's queued batches plus the one being assembled, counted in source items.
const gate = new Gate({ window: batchSize * (config.train.highWaterMark + 1) });
// Given the gate, the log releases it for each failed item, so a bad file never holds a place in flight.
const failures = new FailureLog(gate);
failures.failures$.subscribe((f) => console.log(`failure (live): ${f.stage} ${f.code} ${path.basename(f.file)}`));

let alive = 0, peakAlive = 0, frames = 0, largestFile = 0;
const batches$ = gate.source(sources(inputs, perArchive)).pipe(
  // Given the gate, decode admits the extra frames of each volume or multi-frame file into the flight, so the window
  // counts frames: frames alive stay within the window plus the frames of one file.
  // Frames of one value (padding slices) are dropped there and leave the flight (data.skipConstantFrames).
  prepareImages(config, { failures, gate }),
  tap((image) => {
    frames++;
    largestFile = Math.max(largestFile, image.frame + 1);
    peakAlive = Math.max(peakAlive, ++alive);
  }),
  // The budget, in images: unsubscribing here stops the source and the decoder, while augment sees its input
  // complete and finishes the crops it has in flight (its worker pool closes cleanly).
  take(steps * batchSize),
  augment({ failures, config: config.augment, seed, epoch: 0 }),
  tap(() => alive--),
  settle(gate), // this frame has left the flight: the gate may let the next item in
  toBatches({ batchSize, dropLast: true }),
);
const events$ = batches$.pipe(
  train({ config, totalSteps: steps, gate }), // pulls batches at its own pace (pull + gate.pause/resume)
  tap((e) => console.log(describe(e))),
);
const events = await lastValueFrom(events$.pipe(toArray()));
failures.complete();

console.log(`\n${failures.records.length} failure record(s):`);
for (const f of failures.records) console.log(`  ${f.stage.padEnd(9)} ${f.code.padEnd(14)} ${path.relative(data, f.file)}: ${f.reason}`);

const losses = events.filter((e): e is StepEvent => e.type === 'step').map((e) => e.loss);
console.log(JSON.stringify({
  example: 'custom-pipeline', seed, steps: losses.length, batchSize, losses, framesDecoded: frames, peakFramesInFlight: peakAlive,
  gateWindow: gate.window, largestFileFrames: largestFile, failures: failures.records.map((f) => ({ file: path.relative(data, f.file).split(path.sep).join('/'), stage: f.stage, code: f.code })),
}));

/** Source items of `inputs` in order, keeping at most `limit` training entries per MedMNIST archive. */
async function* sources(inputs: string[], limit: number): AsyncGenerator<SourceItem> {
  for (const input of inputs) {
    let kept = 0;
    for await (const item of listInputs([input])) {
      if (item.format !== 'npz') yield item;
      // Val and test images are for evaluation: never pre-train on them.
      else if (item.split === 'train' && kept++ < limit) yield item;
      else if (kept >= limit) break;
    }
  }
}

function describe(e: MetricsEvent): string {
  switch (e.type) {
    case 'step': return `step ${e.step}: loss ${e.loss.toFixed(4)} lr ${e.lr.toFixed(4)} prototypes used ${((e.prototypeUsage ?? 0) * 100).toFixed(0)}%`;
    case 'epoch': return `epoch ${e.epoch}: ${e.steps} steps, mean loss ${e.meanLoss.toFixed(4)}, ${e.images} images`;
    case 'alarm': return `alarm (${e.kind}): ${e.message}`;
    default: return JSON.stringify(e);
  }
}

