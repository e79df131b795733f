// The examples run as users run them: compiled (dist/examples, after tsc), in a child process, with small sizes.
// Each prints one JSON line with its key results last; the assertions are on that line.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Tiny crops and encoders keep every run short on the pure-JS backend too (MEDSSL_BACKEND=cpu reaches the child).
const TINY = ['--crop', '12', '--width', '4'];
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function runExample(name: string, args: string[]): { status: number | null; stdout: string; stderr: string; result: Record<string, any> } {
  const script = path.join(root, 'dist', 'examples', `${name}.js`);
  if (!fs.existsSync(script)) throw new Error(`${script} is missing: run \`npx tsc -p tsconfig.json\` first`);
  const r = spawnSync(process.execPath, [script, ...args, ...TINY], { cwd: root, encoding: 'utf8', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } });
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  let result: Record<string, any> = {};
  try {
    result = JSON.parse(last);
  } catch {
    throw new Error(`${name} exited ${r.status} without a final JSON line:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, result };
}

const finite = (xs: number[]) => xs.every((x) => Number.isFinite(x));
const BROKEN = ['dicom/pydicom/JPEG2000-embedded-sequence-delimiter.dcm', 'dicom/pydicom/MR_truncated.dcm', 'nifti/NIFTI-Reader-JS/not-nifti.nii'];

describe('examples', () => {
  it('custom-pipeline trains a few steps, keeps frames in flight bounded, reports the broken files, and repeats itself', () => {
    // 160 images: enough for the pipeline to reach the last broken file (DICOM and NIfTI are listed first).
    const args = ['--steps', '10', '--batch', '16', '--per-archive', '8', '--seed', '3'];
    const first = runExample('custom-pipeline', args);
    expect(first.status).toBe(0);
    const r = first.result;
    expect(r.example).toBe('custom-pipeline');
    expect(r.losses).toHaveLength(10);
    expect(finite(r.losses)).toBe(true);
    expect(first.stdout).toMatch(/^step 9: loss /m);
    // Every broken fixture is a failure record of the decode stage; nothing else failed.
    expect(r.failures.map((f: { file: string }) => f.file).sort()).toEqual(BROKEN);
    expect(r.failures.every((f: { stage: string }) => f.stage === 'decode')).toBe(true);
    // Backpressure: frames alive between decode and the batcher stay within the gate's window times the frames of
    // the largest file, and the source did not run ahead of the trainer through all it was given.
    expect(r.peakFramesInFlight).toBeLessThanOrEqual(r.gateWindow + r.largestFileFrames);
    expect(r.peakFramesInFlight).toBeLessThan(r.framesDecoded);
    // Same seed, same output.
    const again = runExample('custom-pipeline', args);
    expect(again.status).toBe(0);
    expect(again.result.losses).toEqual(r.losses);
  });

  it('cache-replay-ablation replays without decoding, bit-identically, and the two settings differ on the same records', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-example-ablation-'));
    try {
      const { status, result: r } = runExample('cache-replay-ablation', ['--images', '64', '--steps', '3', '--batch', '8', '--out', out]);
      expect(status).toBe(0);
      expect(r.example).toBe('cache-replay-ablation');
      expect(r.brokenFiles).toBe(3);
      // Reopening decodes nothing; the source copy was deleted before the replays, the cache stayed.
      expect(r.reopen.decoded).toBe(0);
      expect(r.reopen.skipped).toBeGreaterThan(0);
      expect(fs.existsSync(path.join(out, 'data'))).toBe(false);
      expect(fs.existsSync(path.join(out, 'cache', 'data.mdb'))).toBe(true);
      for (const name of ['intensity', 'geometry-only']) {
        expect(r.replays[name].images).toBe(64);
        expect(r.replays[name].identical).toBe(true);
        expect(r.losses[name]).toHaveLength(3);
        expect(finite(r.losses[name])).toBe(true);
      }
      expect(r.sameRecords).toBe(true);
      expect(r.sameBoxes).toBe(true);
      expect(r.settingsDiffer).toBe(true);
      expect(r.replays.intensity.digest).not.toBe(r.replays['geometry-only'].digest);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });

  it('clustering-modes pre-trains both modes and reports an AUC with a 95% CI for each', () => {
    const { status, stdout, result: r } = runExample('clustering-modes', ['--steps', '4', '--batch', '16', '--seeds', '0,1']);
    expect(status).toBe(0);
    expect(r.example).toBe('clustering-modes');
    expect(r.results.map((x: { mode: string }) => x.mode)).toEqual(['multi-modal', 'uni-modal']);
    for (const x of r.results as Array<{ losses: number[]; auc: number; ci: [number, number]; perSeed: number[] }>) {
      expect(x.losses).toHaveLength(4);
      expect(finite(x.losses)).toBe(true);
      expect(x.perSeed).toHaveLength(2);
      expect(x.auc).toBeGreaterThanOrEqual(0);
      expect(x.auc).toBeLessThanOrEqual(1);
      expect(x.ci[0]).toBeGreaterThanOrEqual(0);
      expect(x.ci[1]).toBeLessThanOrEqual(1);
      expect(x.ci[0]).toBeLessThanOrEqual(x.auc);
      expect(x.auc).toBeLessThanOrEqual(x.ci[1]);
    }
    expect(stdout).toMatch(/^uni-modal\s+\d\.\d{3}\s+\[\d\.\d{3}, \d\.\d{3}\]$/m);
  });
});
