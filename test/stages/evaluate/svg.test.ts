// The report's charts: AUC axes that end at 1, ticks at round values, legends that fit.
import { describe, expect, it } from 'vitest';
import { lineChart, niceAxis, niceStep } from '../../../stages/evaluate/svg.js';

const ticksOf = (svg: string) => [...svg.matchAll(/class="tick">([^<]+)</g)].map((m) => m[1]);

describe('niceAxis', () => {
  it('puts ticks at multiples of 1, 2, 2.5 or 5 times a power of ten and never past the bounds', () => {
    expect(niceStep(0.13)).toBe(0.05);
    expect(niceStep(40)).toBe(10);
    const a = niceAxis(0.871, 1.006, [0, 1]);
    expect(a.range).toEqual([0.85, 1]);
    expect(a.ticks).toEqual([0.85, 0.9, 0.95, 1]);
  });
});

describe('lineChart', () => {
  const series = [
    { name: 'no pre-training', points: [{ x: 0, y: 0.88, lo: 0.85, hi: 0.91 }, { x: 1, y: 0.99, lo: 0.975, hi: 1 }] },
    { name: 'a rather long arm name, BN re-estimated, as in the table', points: [{ x: 0, y: 0.9 }, { x: 1, y: 0.95 }] },
  ];
  it('ends an AUC axis at 1.0 with round ticks', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'AUC', series, xTicks: [{ value: 0, label: '10%' }, { value: 1, label: '100%' }], yBounds: [0, 1] });
    const y = ticksOf(svg).filter((t) => !t.endsWith('%')).map(Number);
    expect(Math.max(...y)).toBe(1);
    for (const v of y) expect(Math.round(v * 1000) / 1000).toBe(v);
  });
  it('gives the legend room for its longest name', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series });
    const width = Number(/viewBox="0 0 (\d+)/.exec(svg)![1]);
    const legendX = Math.max(...[...svg.matchAll(/<text x="([\d.]+)"[^>]*class="legend"/g)].map((m) => Number(m[1])));
    expect(legendX + 7 * series[1].name.length).toBeLessThanOrEqual(width);
  });
});
