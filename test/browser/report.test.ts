// The HTML report in a real browser (Debian chromium, headless): self-contained, no errors, the results table and
// one plot per figure are there, and text from configs is escaped, never executed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../shared.js';
import { tinyArchive } from '../support/tiny-npz.js';
import { render } from './render.js';

describe('report.html', () => {
  it('renders in chromium with its table and plots, makes no request, and escapes names from the config', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'medssl-report-'));
    tinyArchive(path.join(dir, 'tiny.npz'));
    fs.writeFileSync(path.join(dir, 'exp.yaml'), [
      'evaluate:',
      '  fractions: [1, 0.5, 0.25, 0.1]',
      '  seeds: [0]',
      '  protocols: [linear, knn]',
      '  datasets: [{ file: tiny.npz, modality: radiography, name: "tiny & <i>small</i>" }]',
      '  arms: [{ name: "<script>window.pwned = true</script>", kind: none }, { name: random, kind: random }]',
    ].join('\n'));
    const out = path.join(dir, 'out');
    const r = spawnSync(process.execPath, [cli, 'experiment', '--config', path.join(dir, 'exp.yaml'), '--out', out, '--quiet'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);

    const page = await render<{ rows: number; cells: string[]; svgs: number; titles: string[]; pwned: boolean; scripts: number; heading: string }>(
      path.join(out, 'report.html'),
      `({
        rows: document.querySelectorAll('#results tbody tr').length,
        cells: [...document.querySelectorAll('#results tbody tr td:first-child')].map((td) => td.textContent.trim()),
        svgs: document.querySelectorAll('svg').length,
        titles: [...document.querySelectorAll('svg > title')].map((t) => t.textContent),
        pwned: window.pwned === true,
        scripts: document.querySelectorAll('script').length,
        heading: document.body.textContent,
      })`,
    );
    expect(page.pageErrors).toEqual([]);
    expect(page.consoleErrors).toEqual([]);
    expect(page.requests).toEqual([]); // self-contained: no network
    expect(page.result.pwned).toBe(false);
    expect(page.result.scripts).toBe(0);
    expect(page.result.rows).toBeGreaterThanOrEqual(2);
    expect(page.result.cells.some((c) => c.includes('<script>window.pwned = true</script>'))).toBe(true); // shown as text
    expect(page.result.heading).toContain('tiny & <i>small</i>');
    // One plot per figure, each with a title: AUC against label fraction and the robustness curves at least.
    expect(page.result.svgs).toBeGreaterThanOrEqual(2);
    expect(page.result.titles.length).toBe(page.result.svgs);
    expect(page.result.titles.some((t) => /AUC/i.test(t))).toBe(true);
    expect(page.screenshot.length).toBeGreaterThan(10_000); // something was drawn
  });
});
