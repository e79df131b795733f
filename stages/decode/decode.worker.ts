// Worker thread of the decode stage (decodeThreads): decodes one item. The frames come back with the error, if any,
// as data: a MedsslError loses its code when cloned across threads, and frames before a mid-file error are kept.
// Their pixels are moved, not copied.
import type { DecodedImage, SourceItem } from '../../schemas/records.js';
import { type ErrorData, errorData } from '../../pipeline/core/failures.js';
import { privacyKeyring } from '../../pipeline/core/privacy.js';
import { moving, ownBuffer } from '../../pipeline/core/workers.js';
import { type DecodeItemOptions, decodeItem } from './decode.js';

export interface DecodeTask {
  item: SourceItem;
  bytes?: Uint8Array;
  options: Omit<DecodeItemOptions, 'privacy'>;
  privacyKeyFile: string | null;
}

export interface DecodeResult {
  frames: DecodedImage[];
  error?: ErrorData;
}

export default async function decodeTask(task: DecodeTask): Promise<DecodeResult> {
  const frames: DecodedImage[] = [];
  try {
    const privacy = privacyKeyring({ keyFile: task.privacyKeyFile });
    for await (const frame of decodeItem(task.item, task.bytes, { ...task.options, privacy })) {
      // A frame may view a larger buffer (the file, the volume): sending the view would move or copy all of it.
      frame.data = ownBuffer(frame.data);
      frames.push(frame);
    }
    return await moving<DecodeResult>({ frames }, frames.map((f) => f.data.buffer));
  } catch (e) {
    return await moving<DecodeResult>({ frames, error: errorData(e, task.item.path) }, frames.map((f) => f.data.buffer));
  }
}
