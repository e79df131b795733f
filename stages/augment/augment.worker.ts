// Worker thread of the augment stage: renders the crops of a few images. Each image's pixel buffer arrives
// transferred; its crops leave as their one buffer (transferred) and their params as numbers (renderCrops), with
// the image's buffer when the caller asked to retain it. Nothing is copied, and no crop record is structured-cloned:
// the main thread builds the records (cropsFrom), which costs it a fraction of deserializing them.
import { Piscina } from 'piscina';
import { random } from '../../pipeline/core/random.js';
import type { AugmentConfig } from '../../schemas/config.js';
import type { NormalizedImage } from '../../schemas/records.js';
import { renderCrops } from './crops.js';

export interface AugmentTask {
  items: Array<{
    image: NormalizedImage;
    retain: boolean;
    /** A reused buffer for the crops (CropBuffers), when the stage had one idle. */
    output?: ArrayBuffer;
  }>;
  epoch: number;
}
export interface AugmentWorkerData { config: AugmentConfig; seed: number }
/** Per item: renderCrops' output (the crops' values from offset 0 of `buffer`, and their params), or what it threw. */
export type AugmentResult = { buffer: ArrayBuffer; params: Float64Array; input?: Float32Array } | { error: unknown };

const { config, seed } = Piscina.workerData as AugmentWorkerData;
const source = random(seed);

export default function render(task: AugmentTask): unknown {
  const transfer: ArrayBuffer[] = [];
  const results = task.items.map(({ image, retain, output }): AugmentResult => {
    try {
      const { values, params } = renderCrops(image, config, source, task.epoch, output);
      const buffer = values.buffer as ArrayBuffer;
      transfer.push(buffer, ...(retain ? [image.data.buffer as ArrayBuffer] : []));
      return { buffer, params, ...(retain ? { input: image.data } : {}) };
    } catch (error) {
      // One bad image fails alone; the others of its task go on.
      return { error };
    }
  });
  // move() marks the wrapper so Piscina transfers the buffers and unwraps `results` on the other side.
  return Piscina.move({ [Piscina.transferableSymbol]: transfer, [Piscina.valueSymbol]: results } as never);
}
