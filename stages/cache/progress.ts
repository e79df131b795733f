// The ingest progress bar (files, images, MB/s, ETA, failures) on a terminal; one summary line otherwise, so logs
// and CI output stay readable.
import cliProgress from 'cli-progress';
import type { IngestProgress, IngestSummary } from './ingest.js';

export interface IngestProgressBar {
  update: (p: Readonly<IngestProgress>) => void;
  /** Ends the bar; with a summary, prints the final line. Safe to call twice. */
  stop: (summary?: IngestSummary) => void;
}

export function ingestProgressBar(out: NodeJS.WriteStream, opts: { total?: number } = {}): IngestProgressBar {
  const t0 = performance.now();
  const rate = (bytes: number) => (bytes / 1e6 / Math.max((performance.now() - t0) / 1000, 1e-3)).toFixed(1);
  let bar: cliProgress.SingleBar | undefined;
  let stopped = false;
  if (out.isTTY) {
    bar = new cliProgress.SingleBar({
      stream: out,
      format: opts.total
        ? 'ingest [{bar}] {value}/{total} files | {images} images | {mbps} MB/s | ETA {eta_formatted} | {failures} failures'
        : 'ingest {value} files ({skipped} cached) | {images} images | {mbps} MB/s | {duration_formatted} | {failures} failures',
      hideCursor: true,
      etaBuffer: 200,
    }, cliProgress.Presets.shades_classic);
    bar.start(opts.total ?? 0, 0, { images: 0, mbps: '0.0', failures: 0, skipped: 0 });
  }
  let last = 0;
  return {
    update(p) {
      const now = performance.now();
      if (!bar || now - last < 100) return;
      last = now;
      bar.update(p.files + p.otherShards, { images: p.images, mbps: rate(p.bytesRead), failures: p.failures, skipped: p.skipped });
    },
    stop(summary) {
      if (!stopped) {
        stopped = true;
        bar?.stop();
      }
      if (summary) {
        out.write(`ingest: ${summary.files} files (${summary.skipped} already cached), ${summary.images} images written, ` +
          `${(summary.bytesRead / 1e6).toFixed(1)} MB read at ${rate(summary.bytesRead)} MB/s, ${summary.failures} failures` +
          `${summary.otherShards ? `, ${summary.otherShards} in other shards` : ''}, ${summary.seconds.toFixed(1)} s\n`);
      }
    },
  };
}
