// Renders a local HTML file in headless Debian chromium (installed by scripts/setup-chromium.mjs) and reports what a
// user would see (playwright-core drives it; it uses a fresh temporary profile per launch): page errors, console errors, failed requests, and a DOM query result.
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

export interface Rendered<T> {
  pageErrors: string[];
  consoleErrors: string[];
  requests: string[];
  result: T;
  screenshot: Buffer;
}

export function chromiumPath(): string {
  const p = [process.env.MEDSSL_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((c) => c && fs.existsSync(c));
  if (!p) throw new Error('chromium is not installed: npm test installs Debian\'s chromium (scripts/setup-chromium.mjs), or set MEDSSL_CHROMIUM');
  return p;
}

/** `inspect` is a JavaScript expression evaluated in the page (a string: the project is compiled without DOM types). */
export async function render<T>(file: string, inspect: string): Promise<Rendered<T>> {
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    const consoleErrors: string[] = [];
    const requests: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) requests.push(r.url()); });
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    const result = (await page.evaluate(inspect)) as T;
    const screenshot = await page.screenshot({ fullPage: true });
    return { pageErrors, consoleErrors, requests, result, screenshot };
  } finally {
    await browser.close();
  }
}
