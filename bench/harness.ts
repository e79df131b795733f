// The benchmark contract: a bench file exports `benchmarks`; each run() resolves to results that the runner prints
// as one JSON line each: {"name", "unit", "value", "config"}.
export interface BenchResult {
  name: string;
  unit: string;
  value: number;
  config: Record<string, unknown>;
}

export interface Benchmark {
  name: string;
  run(): Promise<BenchResult[]>;
}

/** Median of repeated timings (ms) of `fn`, after `warmup` untimed calls. */
export async function timeIt(fn: () => unknown | Promise<unknown>, opts: { repeats: number; warmup?: number }): Promise<number> {
  for (let i = 0; i < (opts.warmup ?? 1); i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < opts.repeats; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
