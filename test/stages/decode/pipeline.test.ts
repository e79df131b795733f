// The streaming path over the whole corpus: listSources -> Gate -> decode, as the pipeline runs it. Every file with
// a reference array yields exactly its frames (DICOM frames, NIfTI slices along k); every other file yields one
// failure record; nothing else is lost or duplicated.
import path from 'node:path';
import { concatMap, delay, of } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { FailureLog } from '../../../pipeline/failures.js';
import { Gate, pull, settle } from '../../../pipeline/flow.js';
import { decode } from '../../../stages/decode/decode.js';
import { listSources } from '../../../stages/source/source.js';
import { sharedData } from '../../shared.js';
import { references } from './reference.js';

describe('decode with a gate', () => {
  it('lets no file in while another file\'s frame count is unknown: frames alive stay within the window plus one file', async () => {
    // Twelve 10-frame files through a window of 8, and a slow stage before the settle point. Were files let in while
    // a header is being read (the codec loads asynchronously), each would later bring 9 more frames on top of a full
    // window.
    const file = sharedData('dicom/pydicom-data/emri_small_jpeg_2k_lossless.dcm');
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

describe('source -> decode over the corpus', () => {
  it('emits every frame of every decodable file and one failure per bad file', async () => {
    const gate = new Gate({ window: 8 });
    const failures = new FailureLog(gate);
    const roots = [sharedData('dicom'), sharedData('nifti')];
    const frames = new Map<string, number>();
    // decode admits the extra frames of each file into the gate's flight; failures release theirs.
    const images$ = gate.source(listSources(roots)).pipe(decode({ failures, gate }), settle(gate));
    let peak = 0;
    for await (const img of pull(images$, { gate, highWaterMark: 4 })) {
      frames.set(img.path, (frames.get(img.path) ?? 0) + 1);
      expect(img.data.length).toBe(img.rows * img.cols * img.samples);
      peak = Math.max(peak, gate.inFlight);
    }
    // Every frame let in was accounted for, and the flight never exceeded the window plus one file's frames.
    expect(gate.inFlight).toBe(0);
    expect(peak).toBeLessThanOrEqual(8 + Math.max(...frames.values()));
    const expected = new Map<string, number>();
    const bad = new Set<string>();
    for (const ref of [...references('dicom'), ...references('nifti')]) {
      if (ref.array) {
        const shape = ref.json.shape as number[] | undefined;
        expected.set(ref.file, ref.rel.startsWith('dicom') ? ref.array.shape[0] : (shape ?? []).slice(2).reduce((a, d) => a * d, 1));
      } else bad.add(ref.file);
    }
    // The one file medssl reads although pydicom does not (see corpus.test.ts).
    const tooShort = sharedData('dicom/pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm');
    bad.delete(tooShort);
    expected.set(tooShort, 10);
    expect(Object.fromEntries(frames)).toEqual(Object.fromEntries(expected));
    expect(new Set(failures.records.map((f) => path.resolve(f.file)))).toEqual(new Set([...bad].map((f) => path.resolve(f))));
    expect(failures.records).toHaveLength(bad.size);
    expect(failures.records.every((f) => f.stage === 'decode')).toBe(true);
  });
});
