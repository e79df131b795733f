// Worker thread of the normalize stage (normalizeThreads): normalizes one image. The image comes back with the
// error, if any, as data: a MedsslError loses its code when cloned across threads. Its pixels are moved, not copied.
import type { NormalizeConfig } from '../../schemas/config.js';
import type { DecodedImage, NormalizedImage } from '../../schemas/records.js';
import { type ErrorData, errorData } from '../../pipeline/core/failures.js';
import { moving, ownBuffer } from '../../pipeline/core/workers.js';
import { isConstant, normalizeImage } from './normalize.js';

export interface NormalizeTask {
  image: DecodedImage;
  config: NormalizeConfig;
  preparation: string;
}

export interface NormalizeResult {
  image?: NormalizedImage;
  /** The image is of one value (normalize drops it when skipConstantFrames is on); computed here, off the caller's thread. */
  constant?: boolean;
  error?: ErrorData;
}

export default async function normalizeTask(task: NormalizeTask): Promise<NormalizeResult> {
  try {
    const image = normalizeImage(task.image, task.config, undefined, task.preparation);
    image.data = ownBuffer(image.data);
    return await moving<NormalizeResult>({ image, constant: isConstant(image.data) }, [image.data.buffer]);
  } catch (e) {
    return { error: errorData(e, task.image.path) };
  }
}
