/**
 * What the page's charts compute and print, without a browser: tick labels are numbers a reader can
 * use (no "0, 0, 0" on a log axis), log ranges keep every value clear of the floor, the bits-vs-error
 * frontier keeps only methods nothing beats, and the K channel figure shows the rotation flattening
 * outlier channels while keeping their energy.
 */
import { describe, expect, it } from 'vitest';
import type { MethodAccuracy } from '../../src/accuracy/accuracy-lab';
import { generateWorkload } from '../../src/workloads/synthetic';
import { channelStats, spread } from '../../src/accuracy/channel-stats';
import { paretoFrontier } from '../../src/app/figures';
import { formatDuration } from '../../src/app/headline';
import { formatTick, LOG_PAD_DECADES, logRange, logTickValues } from '../../src/app/ticks';

describe('durations in the headline', () => {
  it('read in the unit that fits: µs up to 10 ms, then ms, then s', () => {
    expect([0.5, 86.2, 9994, 9999, 218_000, 999_400, 999_999, 1_250_000].map(formatDuration)).toEqual(['0.5 µs', '86.2 µs', '9990 µs', '10 ms', '218 ms', '999 ms', '1 s', '1.25 s']);
  });
});

describe('axis ticks', () => {
  it('reads like numbers at every magnitude', () => {
    expect([1e-7, 1e-4, 0.001, 0.01, 0.25, 1, 120, 5000, 1e5, 3.2e6].map(formatTick)).toEqual(['1e-7', '1e-4', '0.001', '0.01', '0.25', '1', '120', '5000', '100k', '3.2M']);
    // one axis of tokens/s never mixes plain digits with exponents (the page showed 100000 beside 1e6)
    expect([1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 2.5e9, -2e6, 1.5e12, 3e15].map(formatTick)).toEqual(['10k', '20k', '50k', '100k', '200k', '500k', '1M', '2M', '2.5G', '-2M', '1.5T', '3e15']);
  });

  it('labels decades on a wide log axis and 1-2-5 on a short one, never the same label twice', () => {
    const wide = [1e-7, 1e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2];
    expect(logTickValues(wide, 1e-7, 1e-2).filter(Boolean)).toEqual(['1e-7', '1e-6', '1e-5', '1e-4', '0.001', '0.01']);
    const short = [10, 20, 30, 50, 100];
    expect(logTickValues(short, 10, 100).filter(Boolean)).toEqual(['10', '20', '50', '100']);
    const labels = logTickValues([1e-7, 2e-7, 1e-6, 1e-5], 1e-7, 1e-5).filter(Boolean);
    expect(new Set(labels).size).toBe(labels.length);
  });

  it('log ranges leave room on both sides of the data (the smallest value is not on the floor)', () => {
    for (const [min, max] of [[3.39e-7, 0.045], [6.6e-4, 0.25], [1e-3, 1e-3], [95, 140]]) {
      const [lo, hi] = logRange(min, max);
      expect(Math.log10(min / lo)).toBeGreaterThanOrEqual(LOG_PAD_DECADES - 1e-9);
      expect(Math.log10(hi / max)).toBeGreaterThanOrEqual(LOG_PAD_DECADES - 1e-9);
    }
  });
});

describe('figures', () => {
  const method = (id: string, bits: number, relL2: number) => ({ id, bitsPerElement: bits, vsExact: { relL2 } }) as MethodAccuracy;

  it('the bits-vs-error frontier keeps the methods nothing beats on both', () => {
    const methods = [method('fp16', 16, 6e-4), method('int4', 4.25, 0.36), method('h16', 4.25, 0.18), method('h128', 4.25, 0.16), method('int8', 8.5, 0.2)];
    expect(paretoFrontier(methods, (m) => m.vsExact.relL2).map((m) => m.id)).toEqual(['h128', 'fp16']);
  });

  it('K channels: the rotation keeps the energy and flattens the outlier channels', () => {
    const w = generateWorkload({ kind: 'outlier-keys', numQueryHeads: 8, numKvHeads: 2, headDim: 64, contextLens: [200], seed: 3 });
    const stats = channelStats(w, 64);
    expect(stats.tokens).toBe(200);
    expect(stats.before).toHaveLength(64);
    const energy = (rms: number[]) => rms.reduce((s, r) => s + r * r, 0);
    expect(energy(stats.after)).toBeCloseTo(energy(stats.before), 6);
    expect(spread(stats.before)).toBeGreaterThan(5);
    expect(spread(stats.after)).toBeLessThan(spread(stats.before) / 3);
  });
});
