// The CUDA set-up unpacks only nvidia/<name>/lib/* from NVIDIA's wheels, into deps/nvidia/<name>/lib, and refuses
// entries that would land outside (the zip-slip pattern). The download itself needs a GPU machine's index: not run here.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../shared.js';

const { unpackLibs } = (await import(path.join(projectRoot, 'scripts', 'setup-cuda.mjs'))) as { unpackLibs: (wheel: string, deps: string) => void };

function wheel(file: string, entries: string[]): void {
  const py = 'import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], "w")\nfor n in sys.argv[2:]: z.writestr(n, "x" * 8)\nz.close()';
  expect(spawnSync('python3', ['-c', py, file, ...entries]).status).toBe(0);
}

describe('setup-cuda', () => {
  it('unpacks the libraries of a wheel beside libtensorflow and nothing else', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-cuda-'));
    const deps = path.join(dir, 'deps');
    fs.mkdirSync(deps);
    wheel(path.join(dir, 'ok.whl'), ['nvidia/cublas/lib/libcublas.so.12', 'nvidia/cublas/lib/libcublasLt.so.12', 'nvidia/cublas/include/cublas.h', 'nvidia_cublas_cu12-12.5.dist-info/METADATA']);
    unpackLibs(path.join(dir, 'ok.whl'), deps);
    expect(fs.readdirSync(path.join(deps, 'nvidia', 'cublas', 'lib')).sort()).toEqual(['libcublas.so.12', 'libcublasLt.so.12']);
    expect(fs.existsSync(path.join(deps, 'nvidia', 'cublas', 'include'))).toBe(false);
    wheel(path.join(dir, 'evil.whl'), ['nvidia/x/lib/../../../../escaped.so']);
    expect(() => unpackLibs(path.join(dir, 'evil.whl'), deps)).not.toThrow();
    expect(fs.existsSync(path.join(dir, 'escaped.so'))).toBe(false);
    expect(fs.existsSync(path.join(deps, 'escaped.so'))).toBe(false);
  });
});
