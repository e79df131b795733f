// Worker thread of the augment stage: makes the crop set of one image. The image's pixel buffer arrives
// transferred; the crops leave transferred (with the image's buffer when the caller asked to retain it), so nothing
// is copied either way.
import { Piscina } from 'piscina';
import { random } from '../../pipeline/random.js';
import type { AugmentConfig } from '../../schemas/config.js';
import type { CropSet, NormalizedImage } from '../../schemas/records.js';
import { cropSet } from './crops.js';

export interface AugmentTask {
  image: NormalizedImage;
  epoch: number;
  sample: number;
  retain: boolean;
  /** A reused buffer for the crops (CropBuffers), when the stage had one idle. */
  output?: ArrayBuffer;
}
export interface AugmentWorkerData { config: AugmentConfig; seed: number }

const { config, seed } = Piscina.workerData as AugmentWorkerData;
const source = random(seed);

export default function makeCropSet(task: AugmentTask): unknown {
  const set: CropSet = cropSet(task.image, config, source, task.epoch, task.sample, task.output);
  const value = task.retain ? { set, input: task.image.data } : { set };
  // The crops share one buffer (multiCrop); a buffer listed twice would make the transfer throw.
  const buffers = [...new Set([...(task.retain ? [task.image.data.buffer] : []), ...set.crops.map((c) => c.data.buffer)])];
  // move() marks the wrapper so Piscina transfers `buffers` and unwraps `value` on the other side.
  return Piscina.move({ [Piscina.transferableSymbol]: buffers, [Piscina.valueSymbol]: value } as never);
}
