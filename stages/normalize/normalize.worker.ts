// Worker thread of the normalize stage (normalizeThreads): normalizes one image. The image comes back with the
// error, if any, as data: a MedsslError loses its code when cloned across threads. Its pixels are moved, not copied.
import { Piscina } from 'piscina';
import type { NormalizeConfig } from '../../schemas/config.js';
import type { DecodedImage, NormalizedImage } from '../../schemas/records.js';
import { MedsslError } from '../../pipeline/core/failures.js';
import { isConstant, normalizeImage, ownBuffer } from './normalize.js';

export interface NormalizeTask {
  image: DecodedImage;
  config: NormalizeConfig;
  preparation: string;
}

export interface NormalizeResult {
  image?: NormalizedImage;
  /** The image is of one value (normalize drops it when skipConstantFrames is on); computed here, off the caller's thread. */
  constant?: boolean;
  error?: { code: string; file: string; reason: string };
}

export default function normalizeTask(task: NormalizeTask): NormalizeResult {
  try {
    const image = normalizeImage(task.image, task.config, undefined, task.preparation);
    image.data = ownBuffer(image.data);
    const result: NormalizeResult = { image, constant: isConstant(image.data) };
    // A transferable wrapper: piscina moves the listed buffers with the reply instead of copying them.
    return Piscina.move({ [Piscina.transferableSymbol]: [image.data.buffer], [Piscina.valueSymbol]: result } as never) as never;
  } catch (e) {
    const error = e instanceof MedsslError
      ? { code: e.code, file: e.file, reason: e.message }
      : { code: 'internal', file: task.image.path, reason: (e as Error)?.message ?? String(e) };
    return { error };
  }
}
