// The streaming path over the fixture files: listSources -> Gate -> decode, as the pipeline runs it. Every file with
// a reference array yields exactly its frames (DICOM frames, NIfTI slices along k); every other file yields one
// failure record; nothing else is lost or duplicated.
import { concatMap, delay, of } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { FailureLog } from '../../../pipeline/core/failures.js';
import { Gate, pull, settle } from '../../../pipeline/core/flow.js';
import { decode } from '../../../stages/decode/decode.js';
import { fixture, sample } from '../../shared.js';
import { checkSourceToDecode } from './checks.js';
import { fixtureReferences } from './reference.js';

describe('decode with a gate', () => {
  it('lets no file in while another file\'s frame count is unknown: frames alive stay within the window plus one file', async () => {
    // Twelve 10-frame files through a window of 8, and a slow stage before the settle point. Were files let in while
    // a header is being read (the codec loads asynchronously), each would later bring 9 more frames on top of a full
    // window.
    const file = sample('dicom/pydicom-data/emri_small_jpeg_2k_lossless.dcm');
    const gate = new Gate({ window: 8 });
    const images$ = gate.source(Array.from({ length: 12 }, (_, i) => ({ id: `f${i}`, path: file }))).pipe(
      decode({ failures: new FailureLog(gate), gate }),
      concatMap((img) => of(img).pipe(delay(1))),
      settle(gate),
    );
    let n = 0, peak = 0;
    for await (const img of pull(images$, { gate, highWaterMark: 2 })) {
      expect(img.frames).toBe(10);
      n++;
      peak = Math.max(peak, gate.inFlight);
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(n).toBe(120);
    expect(gate.inFlight).toBe(0);
    expect(peak).toBeLessThanOrEqual(8 + 10);
  });
});

describe('source -> decode over the fixtures', () => {
  it('emits every frame of every decodable file and one failure per bad file', async () => {
    // pipeline.corpus.test.ts does the same over the whole corpus.
    const roots = ['data/dicom', 'data/nifti', 'corpus/dicom', 'corpus/nifti'].map((d) => fixture(d));
    await checkSourceToDecode(roots, [...fixtureReferences('dicom'), ...fixtureReferences('nifti')]);
  });
});
