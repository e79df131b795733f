// Keys nobody can reverse: HMAC-SHA-256 under a secret from a key file or MEDSSL_PRIVACY_KEY, one key per patient
// across every format, a secret that appears in no output, and names of input files that carry no absolute path.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../pipeline/core/config.js';
import { MedsslError } from '../../pipeline/core/failures.js';
import { preparationConfig, preparationHash } from '../../pipeline/compose/prepare.js';
import { prepareItem } from '../support/prepare.js';
import { Keyring, PRIVACY_KEY_ENV, SourceNames, privacyKeyring } from '../../pipeline/core/privacy.js';
import { ConfigError } from '../../schemas/config.js';
import type { NormalizedImage, SourceItem } from '../../schemas/records.js';
import { decodeItem } from '../../stages/decode/decode.js';
import { writeNpy } from '../../stages/source/npy.js';
import { writeNpz } from '../support/tiny-npz.js';
import { fixture } from '../shared.js';

const SECRET = 'a site secret of more than sixteen bytes';
const hmac = (secret: string, message: string) => crypto.createHmac('sha256', secret).update(message).digest('hex');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-privacy-'));
const saved = process.env[PRIVACY_KEY_ENV];
afterEach(() => {
  if (saved === undefined) delete process.env[PRIVACY_KEY_ENV];
  else process.env[PRIVACY_KEY_ENV] = saved;
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('keys', () => {
  it('are HMAC-SHA-256 of kind NUL id under the secret, 128 bits, and differ by kind and by secret', () => {
    const ring = new Keyring(Buffer.from(SECRET), 'key file');
    expect(ring.key('patient', 'MRN123')).toBe(hmac(SECRET, 'patient\u0000MRN123').slice(0, 32));
    expect(ring.key('study', 'MRN123')).not.toBe(ring.key('patient', 'MRN123'));
    expect(new Keyring(Buffer.from(`${SECRET}!`), 'key file').key('patient', 'MRN123')).not.toBe(ring.key('patient', 'MRN123'));
    expect(ring.key('patient', '')).toBeUndefined();
    // The key id is an HMAC too: a guess at the secret costs a keyed hash, and the id is not a hash of the secret.
    expect(ring.id).toBe(hmac(SECRET, 'medssl key id').slice(0, 16));
    expect(ring.id).not.toBe(crypto.createHash('sha256').update(SECRET).digest('hex').slice(0, 16));
  });

  it('never show their secret: not in JSON, not in util.inspect, not in the preparation the cache stores', () => {
    process.env[PRIVACY_KEY_ENV] = SECRET;
    const ring = privacyKeyring();
    expect(ring.source).toBe(PRIVACY_KEY_ENV);
    expect(JSON.stringify(ring)).not.toContain(SECRET);
    expect(util.inspect(ring, { showHidden: true, depth: 5 })).not.toContain(SECRET);
    const config = loadConfig(undefined);
    const stored = JSON.stringify(preparationConfig(config));
    expect(stored).not.toContain(SECRET);
    expect(stored).toContain(ring.id);
    expect(JSON.stringify(config)).not.toContain(SECRET);
  });

  it('come from the key file named in the config first, then MEDSSL_PRIVACY_KEY, then the public key', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'key'), `${SECRET}\n`);
    fs.writeFileSync(path.join(dir, 'c.yaml'), 'data: { privacyKeyFile: key }\n');
    process.env[PRIVACY_KEY_ENV] = 'another secret, also long enough';
    const config = loadConfig(path.join(dir, 'c.yaml'));
    expect(config.data.privacyKeyFile).toBe(path.join(dir, 'key'));
    const fromFile = privacyKeyring({ keyFile: config.data.privacyKeyFile });
    expect(fromFile.source).toBe('key file');
    expect(fromFile.key('patient', 'P')).toBe(new Keyring(Buffer.from(SECRET), 'key file').key('patient', 'P')); // final newline dropped
    expect(privacyKeyring().key('patient', 'P')).toBe(hmac('another secret, also long enough', 'patient\u0000P').slice(0, 32));
    delete process.env[PRIVACY_KEY_ENV];
    expect(privacyKeyring().isPublic).toBe(true);
    // A secret change is a preparation change: old records miss.
    expect(preparationHash(config)).not.toBe(preparationHash(loadConfig(undefined)));
    expect(preparationHash(loadConfig(undefined, { data: { hashPaths: true } }))).not.toBe(preparationHash(loadConfig(undefined)));
  });

  it('refuse short secrets and unreadable key files instead of falling back to the public key', () => {
    process.env[PRIVACY_KEY_ENV] = 'short';
    expect(() => privacyKeyring()).toThrow(/5 bytes; at least 16/);
    expect(() => privacyKeyring({ keyFile: path.join(tmp(), 'missing') })).toThrow(MedsslError);
  });

  it('data.privacySalt is an error that names what replaces it', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'old.yaml'), 'data: { privacySalt: my-site }\n');
    let err: unknown;
    try {
      loadConfig(path.join(dir, 'old.yaml'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.join('\n')).toMatch(/^data\.privacySalt: removed: .*data\.privacyKeyFile.*MEDSSL_PRIVACY_KEY/);
  });

  it('give one patient one key in DICOM, NIfTI, .npz and .npy items', async () => {
    process.env[PRIVACY_KEY_ENV] = SECRET;
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'a.npy'), writeNpy(new Uint8Array(16).map((_, i) => i), [4, 4]));
    writeNpz(path.join(dir, 'b.npz'), { train_images: { data: new Uint8Array(32).map((_, i) => i), shape: [2, 4, 4] } });
    const config = loadConfig(undefined);
    const keys = new Set<string | undefined>();
    const items: SourceItem[] = [
      { id: 'ct', path: fixture('data/dicom/pydicom/CT_small.dcm') },
      { id: 'nii', path: fixture('data/nifti/nibabel/anatomical.nii') },
      { id: 'b.npz#train/1', path: path.join(dir, 'b.npz'), format: 'npz', entry: 'train/1' },
      { id: 'a.npy', path: path.join(dir, 'a.npy') },
    ];
    for (const item of items) {
      const images: NormalizedImage[] = await prepareItem(config, { ...item, patientId: 'MRN-0042' });
      expect(images.length, item.id).toBeGreaterThan(0);
      for (const image of images) keys.add(image.patientKey);
    }
    expect([...keys]).toEqual([privacyKeyring().key('patient', 'MRN-0042')]);
    // Without the manifest's id, a DICOM file's own PatientID is keyed the same way, with study and series keys.
    const [frame] = await collect(decodeItem({ id: 'ct', path: fixture('data/dicom/pydicom/CT_small.dcm') }, undefined, {}));
    for (const k of [frame.patientKey, frame.studyKey, frame.seriesKey]) expect(k).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('names of input files', () => {
  it('are relative to their input root, or keyed hashes of each component', () => {
    const dir = tmp();
    const root = path.join(dir, 'Hospital-Smith', 'MRN123');
    fs.mkdirSync(path.join(root, 'series 2'), { recursive: true });
    const ring = new Keyring(Buffer.from(SECRET), 'key file');
    const plain = new SourceNames([root], ring, false);
    const file = path.join(root, 'series 2', 'IM0001.dcm');
    expect(plain.file(file)).toBe('series 2/IM0001.dcm');
    expect(plain.text(`element (0028,0010) of ${file} is bad`)).toBe('element (0028,0010) of series 2/IM0001.dcm is bad');
    const hashed = new SourceNames([root], ring, true);
    const named = hashed.file(file);
    expect(named).toMatch(/^[0-9a-f]{16}\/[0-9a-f]{16}$/);
    expect(named).toBe(`${ring.key('path', 'series 2')!.slice(0, 16)}/${ring.key('path', 'IM0001.dcm')!.slice(0, 16)}`);
    expect(hashed.id('series 2/IM0001.dcm#train/3')).toBe(`${named}#train/3`);
    const f = hashed.failure({ kind: 'failure', file, stage: 'decode', code: 'not-found', reason: `image data file ${path.join(root, 'x.img')} is missing` });
    for (const word of ['Hospital-Smith', 'MRN123', 'series 2', 'IM0001', 'x.img', dir]) expect(JSON.stringify(f)).not.toContain(word);
    // The stamp key stands for the absolute path without showing it.
    expect(hashed.stampKey(file)).toBe(ring.key('path', file));
  });
});
