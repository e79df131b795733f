#!/usr/bin/env node
// Provisions the native TensorFlow binding for @tensorflow/tfjs-node (and -gpu where a GPU is present).
//
// tfjs-node's own install script downloads a prebuilt libtensorflow 2.9 from a CDN, which offline and
// air-gapped machines cannot reach; package.json denies that script (allowScripts) and runs this one instead.
// Sources, first that works wins:
//   1. a binding that already loads (node_modules as installed, or this script's cache);
//   2. MEDSSL_LIBTENSORFLOW: a libtensorflow folder (lib/ + include/) or a TensorFlow wheel (.whl);
//   3. `pip download --no-deps tensorflow-cpu==<version>` from the machine's configured pip index
//      (`tensorflow==<version>` for the GPU binding). The wheels in KNOWN_WHEELS are fetched by exact name with
//      pip's --require-hashes and checked again here; any other wheel is used only after a loud warning that it is
//      not pinned (or against MEDSSL_TENSORFLOW_SHA256 when set);
//   4. tfjs-node's own download (its own installer; not hash-pinned by this script).
// The binding is built from source against the chosen library (node-pre-gyp --build-from-source) and cached in
// $MEDSSL_CACHE_DIR (default ~/.cache/medssl), so a second run, or a fresh `npm ci`, only relinks it.
// If every source fails the project still installs and runs on the pure-JS backend; this script and the runtime
// both say so loudly. It never fails the install.
//
// Environment: MEDSSL_LIBTENSORFLOW (path), MEDSSL_TENSORFLOW_VERSION (default 2.21.0),
// MEDSSL_TENSORFLOW_SHA256 (the wheel's digest, for a wheel not in KNOWN_WHEELS),
// MEDSSL_SKIP_TENSORFLOW_SETUP=1, MEDSSL_CACHE_DIR, MEDSSL_TENSORFLOW_GPU=0|1 (default: auto-detect).

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { provisionCuda } from './setup-cuda.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const TF_VERSION = process.env.MEDSSL_TENSORFLOW_VERSION || '2.21.0';
const cacheRoot = process.env.MEDSSL_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'medssl');
// Only what the binding's sources include (tensorflow/c/c_api.h and eager/c_api.h pull in tsl and xla/tsl).
const HEADER_DIRS = ['tensorflow/c/', 'tensorflow/core/platform/', 'tsl/', 'xla/tsl/'];

const log = (msg) => process.stderr.write(`medssl setup: ${msg}\n`);

/**
 * SHA-256 of the wheels this script knows, from the wheel itself as the project's pip index serves it (PyPI's
 * published digest). tensorflow==2.21.0 (the GPU wheel) is not here: no copy could be had to check its digest.
 */
export const KNOWN_WHEELS = {
  'tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl': '2b847d217b02ee7731ed91431daf3250daa0196c3c94614d23be27232e6e5b6c',
};
/** pip's platform flags that select one known wheel whatever the local Python: only libtensorflow is taken from it. */
const PINNED_DOWNLOAD = {
  'tensorflow-cpu==2.21.0': { wheel: 'tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl', platform: 'manylinux_2_27_x86_64', python: '3.11', abi: 'cp311', arch: 'x64' },
};

function packageDir(name) {
  try {
    return path.dirname(require.resolve(`${name}/package.json`));
  } catch {
    return null;
  }
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  return { ok: r.status === 0, stdout: r.stdout ?? '', out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** Loads the package in a child process, so a bad binding cannot crash this script; returns the TF version. */
function probe(pkg) {
  const code = `const tf=require(${JSON.stringify(pkg)});const b=tf.backend();` +
    `process.stdout.write(JSON.stringify({backend:tf.getBackend(),tf:b.binding&&b.binding.TF_Version}))`;
  const r = run(process.execPath, ['-e', code], { cwd: root, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' }, timeout: 120_000 });
  try {
    const info = JSON.parse(r.stdout.trim().split('\n').pop());
    return info.backend === 'tensorflow' ? info.tf : null;
  } catch {
    return null;
  }
}

function gpuPresent() {
  if (process.env.MEDSSL_TENSORFLOW_GPU === '0') return false;
  if (process.env.MEDSSL_TENSORFLOW_GPU === '1') return true;
  return run('nvidia-smi', ['-L']).ok;
}

/**
 * Checks a wheel against its pin: MEDSSL_TENSORFLOW_SHA256 when set, else KNOWN_WHEELS by file name. A mismatch is an
 * error; a wheel with no pin is used after a loud warning that names its digest, so it can be pinned.
 */
export async function verifyWheel(wheel, env = process.env) {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(wheel)) hash.update(chunk);
  const digest = hash.digest('hex');
  const expected = env.MEDSSL_TENSORFLOW_SHA256?.trim().toLowerCase() || KNOWN_WHEELS[path.basename(wheel)];
  if (expected && expected !== digest) throw new Error(`${path.basename(wheel)}: SHA-256 ${digest} is not the pinned ${expected}`);
  if (!expected) {
    log(`WARNING: ${path.basename(wheel)} is not hash-pinned (SHA-256 ${digest}); set MEDSSL_TENSORFLOW_SHA256 to pin it`);
  }
  return digest;
}

/**
 * Copies the chosen pieces of a TensorFlow wheel (a zip) into `deps` with Python's zipfile (pip needs Python).
 * Entry names are normalised and must stay inside `deps` (an entry such as `tensorflow/include/../../x` is refused:
 * the zip-slip pattern).
 */
export function depsFromWheel(wheel, deps) {
  const py = `
import sys, zipfile, os, shutil
wheel, deps, dirs = sys.argv[1], sys.argv[2], sys.argv[3].split(',')
z = zipfile.ZipFile(wheel)
libs = {'tensorflow/libtensorflow_cc.so.2': 'lib/libtensorflow_cc.so.2',
        'tensorflow/libtensorflow_framework.so.2': 'lib/libtensorflow_framework.so.2'}
root = os.path.realpath(deps)
found = set()
for info in z.infolist():
    name = info.filename
    if name in libs:
        dest = os.path.join(deps, libs[name]); found.add(name)
    elif name.startswith('tensorflow/include/') and not name.endswith('/'):
        rel = os.path.normpath(name[19:])
        if os.path.isabs(rel) or rel == '..' or rel.startswith('..' + os.sep) or chr(92) in rel:
            sys.exit('wheel entry escapes its folder: ' + name)
        if not any(rel.startswith(d) for d in dirs):
            continue
        dest = os.path.join(deps, 'include', rel)
    else:
        continue
    if os.path.commonpath([root, os.path.realpath(dest)]) != root:
        sys.exit('wheel entry escapes its folder: ' + name)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with z.open(info) as src, open(dest, 'wb') as out:
        shutil.copyfileobj(src, out, 1 << 20)
missing = set(libs) - found
if missing: sys.exit('wheel lacks ' + ', '.join(sorted(missing)))
`;
  const r = run('python3', ['-c', py, wheel, deps, HEADER_DIRS.join(',')]);
  if (!r.ok) throw new Error(`cannot unpack ${wheel}: ${r.out.trim()}`);
  fs.symlinkSync('libtensorflow_cc.so.2', path.join(deps, 'lib', 'libtensorflow.so'));
  fs.symlinkSync('libtensorflow_framework.so.2', path.join(deps, 'lib', 'libtensorflow_framework.so'));
}

/** A libtensorflow folder as released (lib/libtensorflow.so*, include/tensorflow/c/...). */
function depsFromFolder(folder, deps) {
  if (!fs.existsSync(path.join(folder, 'include', 'tensorflow', 'c', 'c_api.h'))) {
    throw new Error(`${folder} has no include/tensorflow/c/c_api.h`);
  }
  const lib = path.join(folder, 'lib');
  const names = fs.readdirSync(lib);
  if (!names.some((n) => n.startsWith('libtensorflow.so') || n.startsWith('libtensorflow_cc.so'))) {
    throw new Error(`${lib} has no libtensorflow.so`);
  }
  fs.cpSync(folder, deps, { recursive: true, verbatimSymlinks: true });
  const libDir = path.join(deps, 'lib');
  const ensureLink = (link, prefix) => {
    if (fs.existsSync(path.join(libDir, link))) return;
    const target = fs.readdirSync(libDir).find((n) => n.startsWith(prefix));
    if (target) fs.symlinkSync(target, path.join(libDir, link));
  };
  ensureLink('libtensorflow.so', 'libtensorflow_cc.so');
  ensureLink('libtensorflow_framework.so', 'libtensorflow_framework.so');
}

export function pipWheel(gpu, dir) {
  const spec = `${gpu ? 'tensorflow' : 'tensorflow-cpu'}==${TF_VERSION}`;
  const pin = PINNED_DOWNLOAD[spec];
  let what = [spec];
  if (pin && process.platform === 'linux' && process.arch === pin.arch) {
    // The known wheel by its exact tags, and pip refuses it unless its SHA-256 is the pinned one.
    const req = path.join(dir, 'requirements.txt');
    fs.writeFileSync(req, `${spec} --hash=sha256:${KNOWN_WHEELS[pin.wheel]}\n`);
    what = ['--only-binary=:all:', '--platform', pin.platform, '--python-version', pin.python, '--implementation', 'cp', '--abi', pin.abi, '--require-hashes', '-r', req];
  }
  for (const pip of [['python3', '-m', 'pip'], ['pip3'], ['pip']]) {
    const r = run(pip[0], [...pip.slice(1), 'download', '--no-deps', '--retries', '1', '--timeout', '30', '-d', dir, ...what]);
    if (r.ok) {
      const whl = fs.readdirSync(dir).find((n) => n.endsWith('.whl'));
      if (whl) return path.join(dir, whl);
    }
    if (!/No module named pip|ENOENT/.test(r.out)) throw new Error(`pip download ${spec} failed: ${lastLine(r.out)}`);
  }
  throw new Error('pip is not available');
}

const lastLine = (s) => s.trim().split('\n').filter(Boolean).pop() ?? '';

function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  // Node's own headers next to the executable (Debian's nodejs, official tarballs), so node-gyp needs no download.
  const dir = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h')) ? dir : null;
}

/** Builds tfjs_binding.node in `pkgDir` against `pkgDir/deps`. */
function buildBinding(pkgDir) {
  const preGyp = createRequire(path.join(pkgDir, 'package.json')).resolve('@mapbox/node-pre-gyp/bin/node-pre-gyp');
  const args = [preGyp, 'install', '--build-from-source'];
  const nd = nodeDir();
  if (nd) args.push(`--nodedir=${nd}`);
  const r = run(process.execPath, args, { cwd: pkgDir });
  if (!r.ok) throw new Error(`building the binding failed: ${r.out.trim().split('\n').slice(-8).join(' | ')}`);
}

function bindingDir(pkgDir) {
  const binary = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).binary;
  return path.join(pkgDir, binary.module_path.replace('{napi_build_version}', chooseNapi(binary.napi_versions)));
}

function chooseNapi(versions) {
  const have = Number(process.versions.napi);
  return String(Math.max(...versions.filter((v) => v <= have)));
}

/** Points the package at a cached build: deps/ becomes a link, the .node file a copy. */
function linkFromCache(pkgDir, entry) {
  fs.rmSync(path.join(pkgDir, 'deps'), { recursive: true, force: true });
  fs.symlinkSync(path.join(entry, 'deps'), path.join(pkgDir, 'deps'));
  const dest = bindingDir(pkgDir);
  fs.mkdirSync(dest, { recursive: true });
  fs.copyFileSync(path.join(entry, 'tfjs_binding.node'), path.join(dest, 'tfjs_binding.node'));
}

async function provision(pkg, gpu) {
  const pkgDir = packageDir(pkg);
  if (!pkgDir) return { ok: false, why: `${pkg} is not installed` };
  const version = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;

  const have = probe(pkg);
  if (have) return { ok: true, how: `${pkg} already loads (TensorFlow ${have})`, tf: have };

  const source = process.env.MEDSSL_LIBTENSORFLOW;
  const key = `${pkg.replace('@tensorflow/', '')}-${version}-tf${source ? 'custom-' + hash(source) : TF_VERSION}` +
    `-napi${process.versions.napi}-${process.platform}-${process.arch}`;
  const entry = path.join(cacheRoot, 'tensorflow', key);
  if (fs.existsSync(path.join(entry, 'tfjs_binding.node'))) {
    linkFromCache(pkgDir, entry);
    const tf = probe(pkg);
    if (tf) return { ok: true, how: `cached build ${entry}`, tf };
    log(`cached build ${entry} does not load; rebuilding`);
    fs.rmSync(entry, { recursive: true, force: true });
  }

  const errors = [];
  const sources = [];
  if (source) sources.push(['MEDSSL_LIBTENSORFLOW', async (deps) => (source.endsWith('.whl') ? (await verifyWheel(source), depsFromWheel(source, deps)) : depsFromFolder(source, deps))]);
  sources.push([`pip (${gpu ? 'tensorflow' : 'tensorflow-cpu'}==${TF_VERSION})`, async (deps, tmp) => {
    const wheel = pipWheel(gpu, tmp);
    await verifyWheel(wheel);
    depsFromWheel(wheel, deps);
  }]);

  for (const [name, fill] of sources) {
    const staging = `${entry}.partial-${process.pid}`;
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-tf-'));
    try {
      fs.rmSync(staging, { recursive: true, force: true });
      fs.mkdirSync(path.join(staging, 'deps', 'lib'), { recursive: true });
      log(`building the ${pkg} binding from ${name} ...`);
      await fill(path.join(staging, 'deps'), tmp);
      fs.rmSync(path.join(pkgDir, 'deps'), { recursive: true, force: true });
      fs.symlinkSync(path.join(staging, 'deps'), path.join(pkgDir, 'deps'));
      buildBinding(pkgDir);
      fs.copyFileSync(path.join(bindingDir(pkgDir), 'tfjs_binding.node'), path.join(staging, 'tfjs_binding.node'));
      // Publish the cache entry atomically, then point the package at its final place.
      fs.rmSync(entry, { recursive: true, force: true });
      fs.renameSync(staging, entry);
      linkFromCache(pkgDir, entry);
      const tf = probe(pkg);
      if (tf) return { ok: true, how: `built from ${name}, cached in ${entry}`, tf };
      errors.push(`${name}: the built binding does not load`);
    } catch (e) {
      errors.push(`${name}: ${e.message}`);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }

  // Last resort: tfjs-node's own installer (downloads libtensorflow 2.9.1 and a prebuilt binding).
  log(`trying ${pkg}'s own download ...`);
  fs.rmSync(path.join(pkgDir, 'deps'), { recursive: true, force: true });
  const own = run(process.execPath, ['scripts/install.js', gpu ? 'gpu' : 'cpu', 'download'], { cwd: pkgDir, timeout: 600_000 });
  const tf = own.ok && probe(pkg);
  if (tf) return { ok: true, how: `${pkg}'s own download`, tf };
  errors.push(`${pkg}'s own download: ${lastLine(own.out) || 'failed'}`);
  return { ok: false, why: errors.join('\n  ') };
}

function hash(s) {
  let h = 2166136261;
  for (const c of s) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h.toString(16);
}

/** The CUDA libraries beside the GPU libtensorflow (scripts/setup-cuda.mjs); a failure leaves the binding on the CPU. */
function cuda(depsLink) {
  const deps = fs.realpathSync(depsLink);
  if (fs.existsSync(path.join(deps, 'nvidia'))) return log(`CUDA libraries already beside the GPU library (${path.join(deps, 'nvidia')})`);
  try {
    const wheels = provisionCuda(deps, TF_VERSION);
    log(`CUDA libraries for TensorFlow ${TF_VERSION} unpacked beside it: ${wheels.join(', ')}`);
  } catch (e) {
    log(`CUDA libraries not provisioned (${e.message}); TensorFlow will place ops on the CPU unless the system provides CUDA and cuDNN. \`medssl info\` tells.`);
  }
}

async function main() {
  if (process.env.MEDSSL_SKIP_TENSORFLOW_SETUP === '1') {
    log('MEDSSL_SKIP_TENSORFLOW_SETUP=1: skipped');
    return;
  }
  const results = [];
  if (gpuPresent() && packageDir('@tensorflow/tfjs-node-gpu')) {
    const gpu = await provision('@tensorflow/tfjs-node-gpu', true);
    results.push(['tensorflow-gpu', gpu]);
    if (!gpu.ok) log(`GPU binding not available, using the CPU binding:\n  ${gpu.why}`);
    else cuda(path.join(packageDir('@tensorflow/tfjs-node-gpu'), 'deps'));
  }
  const cpu = await provision('@tensorflow/tfjs-node', false);
  results.push(['tensorflow', cpu]);
  if (results.some(([, r]) => r.ok)) {
    for (const [backend, r] of results) if (r.ok) log(`backend "${backend}" ready: ${r.how}`);
    return;
  }
  const bar = '!'.repeat(78);
  log(`\n${bar}\n` +
    `  WARNING: no native TensorFlow backend. medssl will run on the pure-JS "cpu" backend,\n` +
    `  which trains about 700x slower (fine for tests, useless for real pre-training).\n` +
    `  Why:\n  ${cpu.why}\n` +
    `  Fix: make pip able to download tensorflow-cpu==${TF_VERSION}, or set MEDSSL_LIBTENSORFLOW to a\n` +
    `  libtensorflow folder or a TensorFlow wheel, then run: npm run setup:tensorflow\n${bar}`);
}

// Run when executed (npm's postinstall, `npm run setup:tensorflow`), not when a test imports its helpers.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) await main();
