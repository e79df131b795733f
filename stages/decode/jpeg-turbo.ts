// 8-bit JPEG DCT decoding on native libjpeg-turbo (with its x86/Arm SIMD): about 2.5 times the WebAssembly build's
// speed per core (stages/decode/README.md, Throughput). The library is the TurboJPEG 3 shared object that
// @julusian/jpeg-turbo ships prebuilt inside its npm package (Linux x64/arm64/arm); it is called through koffi's FFI
// (also prebuilt inside npm). Not that package's own binding: it decodes with TJFLAG_FASTDCT, libjpeg's "ifast" IDCT,
// which is off by up to 12 grey levels from the reference on the CT test slice. Called directly, TurboJPEG keeps
// libjpeg's defaults (islow IDCT, smooth chroma upsampling), which pydicom (pillow) and the WebAssembly build use.
// Where the library or koffi does not load, nothing is lost: the WebAssembly build decodes everything.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** turbojpeg.h (libjpeg-turbo 3.x): the TJINIT, TJPARAM and TJPF values used here. */
const TJINIT_DECOMPRESS = 1;
const TJPARAM_STOPONWARNING = 0;
const TJPARAM_JPEGWIDTH = 5;
const TJPARAM_JPEGHEIGHT = 6;
const TJPARAM_PRECISION = 7;
const TJPARAM_FASTUPSAMPLE = 9;
const TJPARAM_FASTDCT = 10;
const TJPF_RGB = 0;
const TJPF_GRAY = 6;

export interface JpegTurbo {
  /** libjpeg-turbo's version string, as the library reports it. */
  version: string;
  /** Decodes an 8-bit stream with `components` (1 or 3) components; throws TurboJPEG's message when it cannot. */
  decode(stream: Uint8Array, components: 1 | 3): { width: number; height: number; data: Uint8Array };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Fn = (...args: any[]) => any;

/** The shared library inside @julusian/jpeg-turbo for this platform, or undefined. */
export function turboJpegLibrary(): string | undefined {
  if (process.platform !== 'linux') return undefined; // elsewhere the package links libjpeg-turbo statically
  let dir: string;
  try {
    dir = path.dirname(require.resolve('@julusian/jpeg-turbo/package.json'));
  } catch {
    return undefined;
  }
  const musl = !(process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  const file = path.join(dir, 'prebuilds', `jpeg-turbo-linux-${process.arch}${musl ? '-musl' : ''}`, 'libturbojpeg.so.0');
  return fs.existsSync(file) ? file : undefined;
}

/** Loads the library (throws when it or koffi cannot be loaded). One decompressor, reused frame after frame. */
export function jpegTurbo(library: string): JpegTurbo {
  const koffi = require('koffi') as { load(p: string): { func(sig: string): Fn } };
  const lib = koffi.load(library);
  const tj3Init: Fn = lib.func('void *tj3Init(int initType)');
  const tj3Destroy: Fn = lib.func('void tj3Destroy(void *handle)');
  const tj3Set: Fn = lib.func('int tj3Set(void *handle, int param, int value)');
  const tj3Get: Fn = lib.func('int tj3Get(void *handle, int param)');
  const tj3GetErrorStr: Fn = lib.func('const char *tj3GetErrorStr(void *handle)');
  const tj3DecompressHeader: Fn = lib.func('int tj3DecompressHeader(void *handle, const uint8_t *jpegBuf, size_t jpegSize)');
  const tj3Decompress8: Fn = lib.func('int tj3Decompress8(void *handle, const uint8_t *jpegBuf, size_t jpegSize, uint8_t *dstBuf, int pitch, int pixelFormat)');

  let handle: unknown;
  const open = () => {
    const h = tj3Init(TJINIT_DECOMPRESS);
    if (!h) throw new Error(`tj3Init failed: ${tj3GetErrorStr(null)}`);
    // libjpeg only warns about corrupt entropy data (a bad Huffman code, a marker hit early, a premature end) and
    // decodes on with zeros; stop instead, as the WebAssembly build does, so a damaged frame is an error, not an image.
    // islow IDCT and smooth upsampling are TurboJPEG's defaults; set anyway, since exactness depends on them.
    for (const [param, value] of [[TJPARAM_STOPONWARNING, 1], [TJPARAM_FASTDCT, 0], [TJPARAM_FASTUPSAMPLE, 0]]) {
      if (tj3Set(h, param, value) !== 0) throw new Error(`tj3Set(${param}) failed: ${tj3GetErrorStr(h)}`);
    }
    return h;
  };
  handle = open();
  const fail = (what: string): never => {
    const message = String(tj3GetErrorStr(handle));
    // A decompressor that failed mid-stream is not reused.
    tj3Destroy(handle);
    handle = open();
    throw new Error(`${what}${message}`);
  };
  const version = String(/libjpeg-turbo version ([\d.]+)/.exec(fs.readFileSync(library, 'latin1'))?.[1] ?? 'unknown');

  return {
    version,
    decode(stream, components) {
      if (tj3DecompressHeader(handle, stream, stream.length) !== 0) fail('header: ');
      if (tj3Get(handle, TJPARAM_PRECISION) !== 8) throw new Error('not an 8-bit stream');
      const width = tj3Get(handle, TJPARAM_JPEGWIDTH);
      const height = tj3Get(handle, TJPARAM_JPEGHEIGHT);
      // Decoded straight into the array handed to the caller: no copy.
      const data = new Uint8Array(width * height * components);
      if (tj3Decompress8(handle, stream, stream.length, data, 0, components === 1 ? TJPF_GRAY : TJPF_RGB) !== 0) fail('');
      return { width, height, data };
    },
  };
}
