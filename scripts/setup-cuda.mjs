// Provisions the CUDA libraries that the GPU build of libtensorflow loads at run time, beside the library.
//
// The `tensorflow` wheel does not carry CUDA: its `and-cuda` extra names NVIDIA's wheels (nvidia-cublas-cu12,
// nvidia-cudnn-cu12, ...), each holding shared objects under nvidia/<name>/lib/. TensorFlow dlopens them by soname at
// run time. This script asks pip which versions `tensorflow[and-cuda]==<version>` pins (a dry-run resolution with a
// JSON report, nothing installed), downloads exactly those wheels, and unpacks their lib/ folders into
// <deps>/nvidia/<name>/lib, i.e. `$ORIGIN/../nvidia/<name>/lib` from libtensorflow_cc.so.2, where the wheel's own
// loader looks. pipeline/core/tensorflow.ts also loads them by absolute path, in dependency order, before the GPU binding,
// so a library's later dlopen by soname finds it already loaded.
//
// Written from the TensorFlow (pip install guide: `tensorflow[and-cuda]`) and pip (`install --dry-run --report`)
// documentation. No GPU and no GPU wheel were available where it was written: it has not been run.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Unpacks every `nvidia/<name>/lib/*` entry of `wheel` into `deps/nvidia/<name>/lib`, refusing names that escape. */
export function unpackLibs(wheel, deps) {
  const py = `
import sys, zipfile, os, posixpath, shutil
wheel, deps = sys.argv[1], os.path.realpath(sys.argv[2])
for info in zipfile.ZipFile(wheel).infolist():
    name = posixpath.normpath(info.filename)
    parts = name.split('/')
    if len(parts) < 4 or parts[0] != 'nvidia' or parts[2] != 'lib' or name.endswith('/') or '..' in parts:
        continue
    dest = os.path.realpath(os.path.join(deps, *parts))
    if not dest.startswith(deps + os.sep):
        sys.exit('refusing entry outside the target: ' + info.filename)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with zipfile.ZipFile(wheel).open(info) as src, open(dest, 'wb') as out:
        shutil.copyfileobj(src, out, 1 << 20)
`;
  const r = spawnSync('python3', ['-c', py, wheel, deps], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot unpack ${path.basename(wheel)}: ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
}

/** The nvidia-* wheels (name==version) that `tensorflow[and-cuda]==version` resolves to, as pip reports them. */
function cudaRequirements(pip, version, tmp) {
  const report = path.join(tmp, 'report.json');
  const r = spawnSync(pip[0], [...pip.slice(1), 'install', '--dry-run', '--ignore-installed', '--quiet', '--report', report, `tensorflow[and-cuda]==${version}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pip could not resolve tensorflow[and-cuda]==${version}: ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
  const installs = JSON.parse(fs.readFileSync(report, 'utf8')).install ?? [];
  return installs.map((i) => i.metadata).filter((m) => /^nvidia-/.test(m.name)).map((m) => `${m.name}==${m.version}`);
}

/** Downloads and unpacks the CUDA libraries for TensorFlow `version` into `deps`; returns the wheels it used. */
export function provisionCuda(deps, version, pip = ['python3', '-m', 'pip']) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cuda-'));
  try {
    const wanted = cudaRequirements(pip, version, tmp);
    if (!wanted.length) throw new Error(`tensorflow[and-cuda]==${version} names no nvidia-* wheels`);
    const r = spawnSync(pip[0], [...pip.slice(1), 'download', '--no-deps', '--quiet', '-d', tmp, ...wanted], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`pip download of the CUDA wheels failed: ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
    for (const whl of fs.readdirSync(tmp).filter((f) => f.endsWith('.whl'))) unpackLibs(path.join(tmp, whl), deps);
    return wanted;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
