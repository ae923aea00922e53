/**
 * The spread of a run's timed figures over its repeats: `simulate` runs every (method, cap) several
 * times over the same schedule and the same K/V/q values (so every count is the same in each repeat),
 * and reports the median with min, quartiles and max of what the GPU timed. Pure arithmetic, no GPU.
 */
import type { RunSummary } from './simulator';

/** Repeats of every run when none is asked for (the CLI's --repeats, the page's "Repeats"). */
export const DEFAULT_SIMULATE_REPEATS = 3;
/** Repeats of one run at most. */
export const MAX_SIMULATE_REPEATS = 100;

/** Order statistics of one figure over the repeats: min ≤ q1 ≤ median ≤ q3 ≤ max. */
export interface Spread {
  min: number;
  /** First quartile (linear interpolation between order statistics, as numpy's default). */
  q1: number;
  /** The median (the mean of the middle two for an even count). */
  median: number;
  q3: number;
  max: number;
}

/** The timed figures of a RunSummary whose spread is reported (the counts do not vary). */
export const SPREAD_METRICS = ['decodeTokensPerSec', 'outputTokensPerSec', 'medianDecodeStepNs', 'decodeNs', 'decodeAppendNs', 'attentionNs', 'prefillNs'] as const;
export type SpreadMetric = (typeof SPREAD_METRICS)[number];
export type RunSpread = Record<SpreadMetric, Spread>;

/** The value at fraction `p` of sorted `values` (linear interpolation). */
function quantile(sorted: readonly number[], p: number): number {
  const at = p * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

/** The spread of `values` (at least one, all finite). */
export function spreadOf(values: readonly number[]): Spread {
  if (values.length === 0) throw new RangeError('a spread needs at least one value');
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0], q1: quantile(sorted, 0.25), median: quantile(sorted, 0.5), q3: quantile(sorted, 0.75), max: sorted[sorted.length - 1] };
}

/** Every SPREAD_METRICS figure's spread over `repeats`. */
export function runSpread(repeats: readonly RunSummary[]): RunSpread {
  return Object.fromEntries(SPREAD_METRICS.map((key) => [key, spreadOf(repeats.map((r) => r[key]))])) as RunSpread;
}

/**
 * The repeat whose decode tokens/s is the median (for an even count the lower of the middle two), so
 * the run's summary and step records are one measured repeat; ties go to the earlier repeat.
 */
export function medianRepeatIndex(repeats: readonly RunSummary[]): number {
  const order = repeats.map((r, i) => ({ i, v: r.decodeTokensPerSec })).sort((a, b) => a.v - b.v || a.i - b.i);
  return order[(order.length - 1) >> 1].i;
}
