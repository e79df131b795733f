// Decode throughput per transfer syntax on one core: the same 512 x 512 CT slice (cornerstone3D test data, stored
// in 15 syntaxes), read from memory, parsed and decoded to its stored values by decodeItem. The peer is pydicom 3 on
// one core of the same machine: about 1,100-1,300 images/s uncompressed, 300 RLE, 600 JPEG baseline, 25-30 JPEG 2000.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codecStats, nativeJpegVersion } from '../stages/decode/codecs.js';
import { decodeItem } from '../stages/decode/decode.js';
import type { Benchmark, BenchResult } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, import.meta.url.includes('/dist/') ? '../..' : '..');
/** The slice in syntax `ts`: in fixtures/data (two of these syntaxes), else in the external corpus beside the project. */
const slice = (ts: string): string | undefined =>
  [path.join(root, 'fixtures', 'data'), path.join(root, '..', 'shared', 'data')]
    .map((dir) => path.join(dir, 'dicom', 'cornerstone3D', `CTImage.dcm_${ts}.dcm`))
    .find((f) => fs.existsSync(f));

const SYNTAXES: Array<[string, string]> = [
  ['explicit-le', 'LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1'],
  ['implicit-le', 'LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2'],
  ['explicit-be', 'BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2'],
  ['deflated', 'DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99'],
  ['rle', 'RLELosslessTransferSyntax_1.2.840.10008.1.2.5'],
  ['jpeg-baseline', 'JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50'],
  ['jpeg-extended-12bit', 'JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51'],
  ['jpeg-lossless', 'JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57'],
  ['jpeg-lossless-sv1', 'JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70'],
  ['jpeg-ls', 'JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80'],
  ['jpeg-ls-near', 'JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81'],
  ['jpeg2000-lossless', 'JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90'],
  ['jpeg2000', 'JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91'],
];
const PYDICOM: Record<string, number> = { 'explicit-le': 1200, 'implicit-le': 1200, 'explicit-be': 1200, rle: 300, 'jpeg-baseline': 600, jpeg2000: 27, 'jpeg2000-lossless': 27 };

async function measure(name: string, file: string, seconds: number): Promise<BenchResult[]> {
  const bytes = new Uint8Array(fs.readFileSync(file));
  const item = { id: name, path: file };
  let outBytes = 0;
  const once = async () => {
    for await (const f of decodeItem(item, bytes, {})) outBytes += f.data.byteLength;
  };
  for (let i = 0; i < 5; i++) await once(); // codec init, JIT warm-up
  outBytes = 0;
  const before = structuredClone(codecStats);
  let n = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  while (performance.now() - t0 < seconds * 1000) {
    await once();
    n++;
  }
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // Everything runs on the main thread (the codecs are single-threaded WebAssembly), so CPU seconds measure one core
  // even when other processes share the machine; wall-clock figures are given too.
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const config = { file: path.basename(file), fileBytes: bytes.length, codec: codecsUsed(before), images: n, wallSeconds: s, cpuSeconds, wallImagesPerSecond: n / s, pydicomImagesPerSecond: PYDICOM[name] ?? null };
  return [
    { name: `decode/${name}`, unit: 'images/s per core', value: n / cpuSeconds, config },
    { name: `decode/${name}/MB`, unit: 'MB/s per core (decoded stored values)', value: outBytes / cpuSeconds / 1e6, config },
  ];
}

const CODECS: Record<string, string> = {
  jpegTurbo: 'native libjpeg-turbo (TurboJPEG via koffi)',
  jpeg8: '@cornerstonejs/codec-libjpeg-turbo-8bit (WebAssembly)',
  jpegDct: 'jpeg-dct.ts (JavaScript)',
  jpegLossless: 'jpeg-lossless-decoder-js (JavaScript)',
  jpegLs: '@cornerstonejs/codec-charls (WebAssembly)',
  j2k: '@cornerstonejs/codec-openjpeg (WebAssembly)',
  htj2k: '@cornerstonejs/codec-openjph (WebAssembly)',
};

/** The codecs that decoded frames since `before` (the path a syntax took), or the stage's own code. */
function codecsUsed(before: typeof codecStats): string {
  const used = Object.entries(codecStats)
    .filter(([k, v]) => v.decoded > (before[k as keyof typeof codecStats]?.decoded ?? 0))
    .map(([k]) => (k === 'jpegTurbo' ? `${CODECS[k]} ${nativeJpegVersion()}` : CODECS[k] ?? k));
  return used.length ? used.join(' + ') : 'stages/decode (JavaScript, node:zlib)';
}

export const benchmarks: Benchmark[] = SYNTAXES.map(([name, ts]) => ({
  name: `decode/${name}`,
  run: async () => {
    const file = slice(ts);
    if (!file) {
      process.stderr.write(`bench: decode/${name} skipped: its CT slice is only in ../shared/data\n`);
      return [];
    }
    try {
      return await measure(name, file, 1.5);
    } catch (err) {
      process.stderr.write(`bench: decode/${name} skipped: ${(err as Error).message}\n`);
      return [];
    }
  },
}));
