// The preparation as tests drive it: the product's decode -> normalize chain (prepareImages) on one source, and plain
// functions standing in for it where a test crafts the frames itself.
import { lastValueFrom, of, toArray } from 'rxjs';
import type { Config } from '../../schemas/config.js';
import type { NormalizedImage, SourceInput, SourceItem } from '../../schemas/records.js';
import { FailureLog, MedsslError, guard } from '../../pipeline/core/failures.js';
import { prepareImages } from '../../pipeline/compose/prepare.js';
import type { Prepare } from '../../stages/cache/ingest.js';

/** What ingestInputs gives ingest: prepareImages on each source's failure log. */
export const preparation = (config: Config): Prepare => (failures) => prepareImages(config, { failures });

/** One source's frames through prepareImages; its first failure is thrown. */
export async function prepareItem(config: Config, item: SourceItem, bytes?: Uint8Array): Promise<NormalizedImage[]> {
  const failures = new FailureLog();
  const images = await lastValueFrom(of<SourceInput>({ ...item, ...(bytes ? { bytes } : {}) }).pipe(prepareImages(config, { failures }), toArray()));
  const f = failures.records[0];
  if (f) throw new MedsslError(f.code, f.file, f.reason);
  return images;
}

/** A Prepare from a function of one source (a test's own frames, or errors). */
export function preparing(fn: (item: SourceItem, bytes: Uint8Array | undefined) => Iterable<NormalizedImage> | AsyncIterable<NormalizedImage> | Promise<Iterable<NormalizedImage>>): Prepare {
  return (failures) => guard<SourceInput, NormalizedImage>(({ bytes, ...item }) => fn(item, bytes) as AsyncIterable<NormalizedImage>, { stage: 'prepare', failures, fileOf: (i) => i.path, idOf: (i) => i.id });
}
