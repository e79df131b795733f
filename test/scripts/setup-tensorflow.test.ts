// The set-up script's wheel handling: entries that would write outside the binding's folder (zip slip) are refused,
// and a wheel is checked against its SHA-256 pin before anything is taken from it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../shared.js';

interface Setup {
  KNOWN_WHEELS: Record<string, string>;
  verifyWheel(wheel: string, env?: NodeJS.ProcessEnv): Promise<string>;
  depsFromWheel(wheel: string, deps: string): void;
}
const setup = () => import(path.join(projectRoot, 'scripts', 'setup-tensorflow.mjs')) as Promise<Setup>;

/** A stored zip holding `entries` (name -> content). */
function zip(file: string, entries: Record<string, string>): void {
  const locals: Buffer[] = [], centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, text] of Object.entries(entries)) {
    const body = Buffer.from(text), fname = Buffer.from(name), crc = zlib.crc32(body);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18); local.writeUInt32LE(body.length, 22); local.writeUInt16LE(fname.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(20, 4); central.writeUInt16LE(20, 6); central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20); central.writeUInt32LE(body.length, 24); central.writeUInt16LE(fname.length, 28); central.writeUInt32LE(offset, 42);
    locals.push(local, fname, body);
    centrals.push(central, fname);
    offset += 30 + fname.length + body.length;
  }
  const cd = Buffer.concat(centrals), end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(centrals.length / 2, 8); end.writeUInt16LE(centrals.length / 2, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  fs.writeFileSync(file, Buffer.concat([...locals, cd, end]));
}

const LIBS = { 'tensorflow/libtensorflow_cc.so.2': 'lib', 'tensorflow/libtensorflow_framework.so.2': 'lib' };

describe('setup-tensorflow', () => {
  it('takes the libraries and headers of a well-formed wheel', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-wheel-'));
    zip(path.join(dir, 'ok.whl'), { ...LIBS, 'tensorflow/include/tensorflow/c/c_api.h': 'header', 'tensorflow/include/other/x.h': 'skipped' });
    fs.mkdirSync(path.join(dir, 'deps', 'lib'), { recursive: true });
    (await setup()).depsFromWheel(path.join(dir, 'ok.whl'), path.join(dir, 'deps'));
    expect(fs.readFileSync(path.join(dir, 'deps', 'include', 'tensorflow', 'c', 'c_api.h'), 'utf8')).toBe('header');
    expect(fs.existsSync(path.join(dir, 'deps', 'include', 'other'))).toBe(false);
  });

  it('refuses wheel entries that climb out of the folder (zip slip)', async () => {
    const { depsFromWheel } = await setup();
    for (const evil of ['tensorflow/include/tensorflow/c/../../../../escaped.txt', 'tensorflow/include/../../escaped.txt', 'tensorflow/include/tsl/../../../escaped.txt']) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-wheel-'));
      zip(path.join(dir, 'evil.whl'), { ...LIBS, [evil]: 'owned' });
      fs.mkdirSync(path.join(dir, 'a', 'b', 'deps', 'lib'), { recursive: true });
      expect(() => depsFromWheel(path.join(dir, 'evil.whl'), path.join(dir, 'a', 'b', 'deps')), evil).toThrow(/escapes its folder/);
      const written = fs.readdirSync(dir, { recursive: true }).map(String);
      expect(written.filter((f) => f.endsWith('escaped.txt')), evil).toEqual([]);
    }
  });

  it('checks a wheel against its SHA-256 pin, and pins the CPU wheel it downloads', async () => {
    const { verifyWheel, KNOWN_WHEELS } = await setup();
    expect(Object.values(KNOWN_WHEELS).every((h) => /^[0-9a-f]{64}$/.test(h))).toBe(true);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-wheel-'));
    // A file that takes a known wheel's name but not its content is refused.
    const [name] = Object.keys(KNOWN_WHEELS);
    fs.writeFileSync(path.join(dir, name), 'not the wheel');
    await expect(verifyWheel(path.join(dir, name), {})).rejects.toThrow(/is not the pinned/);
    // An explicit pin is checked; a matching one passes.
    const other = path.join(dir, 'custom.whl');
    fs.writeFileSync(other, 'bytes');
    const digest = crypto.createHash('sha256').update('bytes').digest('hex');
    await expect(verifyWheel(other, { MEDSSL_TENSORFLOW_SHA256: '0'.repeat(64) })).rejects.toThrow(/is not the pinned/);
    expect(await verifyWheel(other, { MEDSSL_TENSORFLOW_SHA256: digest })).toBe(digest);
  });
});
