// Worker thread of the decode stage (decodeThreads): decodes one item. The frames come back with the error, if any,
// as data: a MedsslError loses its code when cloned across threads, and frames before a mid-file error are kept.
import type { DecodedImage, SourceItem } from '../../schemas/records.js';
import { MedsslError } from '../../pipeline/core/failures.js';
import { privacyKeyring } from '../../pipeline/core/privacy.js';
import { type DecodeItemOptions, decodeItem } from './decode.js';

export interface DecodeTask {
  item: SourceItem;
  bytes?: Uint8Array;
  options: Omit<DecodeItemOptions, 'privacy'>;
  privacyKeyFile: string | null;
}

export interface DecodeResult {
  frames: DecodedImage[];
  error?: { code: string; file: string; reason: string };
}

export default async function decodeTask(task: DecodeTask): Promise<DecodeResult> {
  const frames: DecodedImage[] = [];
  try {
    const privacy = privacyKeyring({ keyFile: task.privacyKeyFile });
    for await (const frame of decodeItem(task.item, task.bytes, { ...task.options, privacy })) {
      // A frame may view a larger buffer (the file, the volume): sending the view would copy all of it.
      if (frame.data.byteLength !== frame.data.buffer.byteLength) frame.data = frame.data.slice();
      frames.push(frame);
    }
    return { frames };
  } catch (e) {
    const error = e instanceof MedsslError
      ? { code: e.code, file: e.file, reason: e.message }
      : { code: 'internal', file: task.item.path, reason: (e as Error)?.message ?? String(e) };
    return { frames, error };
  }
}
