import { describe, expect, it } from 'vitest';
import { Batch, ConfigError, CropSet, DecodedImage, FailureRecord, MetricsEvent, NormalizedImage, SourceItem, parseConfig } from '../../schemas/index.js';

const decoded = {
  id: 'ct/1.dcm#0', sourceId: 'ct/1.dcm', path: '/data/ct/1.dcm', format: 'dicom', frame: 0, frames: 1, modality: 'CT',
  rows: 2, cols: 2, samples: 1, dtype: 'int16', data: new Int16Array([-1000, 0, 40, 1000]), photometric: 'MONOCHROME2',
  rescale: { slope: 1, intercept: -1024 }, spacing: [0.7, 0.7],
};

describe('record schemas', () => {
  it('accept valid records', () => {
    expect(SourceItem.parse({ id: 'a/b.dcm', path: '/x/a/b.dcm' }).id).toBe('a/b.dcm');
    expect(DecodedImage.parse(decoded).data).toBeInstanceOf(Int16Array);
    expect(NormalizedImage.parse({ id: 'x#0', sourceId: 'x', frame: 0, modality: 'CT', height: 1, width: 2, channels: 1, data: new Float32Array(2), spacing: null, normalization: 'abc' }).width).toBe(2);
    expect(CropSet.parse({ id: 'x', epoch: 0, sample: 3, modality: 'MR', crops: [{ kind: 'global', size: 2, channels: 1, data: new Float32Array(4), params: { flip: true, box: [0, 0, 2, 2] } }] }).crops).toHaveLength(1);
    expect(Batch.parse({ epoch: 0, step: 0, ids: ['a'], modalities: ['CT'], views: [{ kind: 'local', size: 2, channels: 1, data: new Float32Array(4) }] }).numLabels).toBe(0);
    expect(FailureRecord.parse({ kind: 'failure', file: 'f', stage: 'decode', code: 'truncated', reason: 'ends at byte 12' }).code).toBe('truncated');
    expect(MetricsEvent.parse({ type: 'step', epoch: 0, step: 1, loss: 4.1, lr: 0.1, stepTimeMs: 10, imagesPerSec: 640, waitFraction: 0.01 }).type).toBe('step');
  });

  it('reject invalid records', () => {
    expect(() => SourceItem.parse({ id: '', path: 'x' })).toThrow();
    expect(() => DecodedImage.parse({ ...decoded, data: [1, 2, 3, 4] })).toThrow(/typed pixel array/);
    expect(() => DecodedImage.parse({ ...decoded, dtype: 'int64' })).toThrow();
    expect(() => FailureRecord.parse({ kind: 'failure', file: 'f', stage: 'decode', code: 'oops', reason: '' })).toThrow();
    expect(() => MetricsEvent.parse({ type: 'step', epoch: 0 })).toThrow();
    expect(() => Batch.parse({ epoch: 0, step: 0, ids: [], modalities: [], views: [{ kind: 'medium', size: 2, channels: 1, data: new Float32Array(4) }] })).toThrow();
  });
});

describe('config', () => {
  it('has defaults for everything', () => {
    const c = parseConfig({});
    expect(c.augment.global).toEqual({ count: 2, size: 224, scale: [0.14, 1] });
    expect(c.train.objective).toBe('swav');
    expect(c.evaluate.fractions).toEqual([1, 0.5, 0.25, 0.1]);
  });

  it('keeps given values and fills the rest', () => {
    const c = parseConfig({ train: { batchSize: 32, optimizer: { name: 'adamw' } } });
    expect(c.train.batchSize).toBe(32);
    expect(c.train.optimizer.name).toBe('adamw');
    expect(c.train.optimizer.momentum).toBe(0.9);
  });

  it('names the field, what was expected and what it got', () => {
    const err = (() => {
      try {
        parseConfig({ train: { batchSize: 'big', optimizr: {} }, augment: { gamma: { p: 2 } }, model: { arch: 'vgg' } }, 'run.yaml');
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('no error');
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^run\.yaml: invalid config/);
    expect(err.problems).toContain('train.batchSize: expected number, got string "big"');
    expect(err.problems).toContain('train: unknown key "optimizr"');
    expect(err.problems).toContain('augment.gamma.p: expected <= 1, got number 2');
    expect(err.problems.some((p) => p.startsWith('model.arch: expected one of "resnet18", "resnet50", "resnet", got string "vgg"'))).toBe(true);
  });
});
