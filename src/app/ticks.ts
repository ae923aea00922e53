/**
 * Axis ticks a reader can trust, without uPlot (so Node tests reach them): numbers as people write
 * them, log axes labelled at decades (or 1-2-5 steps over a short span), and log ranges padded so
 * the smallest and largest values sit clear of the frame instead of on its floor.
 */

/** Log axes end at least this many decades beyond the data. */
export const LOG_PAD_DECADES = 0.25;

/**
 * Large ticks (tokens/s, bytes, tokens) with a suffix, so one axis never mixes 100000 with 1e6:
 * [from, suffix, divisor].
 */
const LARGE_TICK_UNITS: readonly (readonly [number, string, number])[] = [[1e12, 'T', 1e12], [1e9, 'G', 1e9], [1e6, 'M', 1e6], [1e4, 'k', 1e3]];

/** A tick or value as people write it: 0.25, 120, 5000, 20k, 3.2M, 1e-4. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const abs = Math.abs(v);
  if (abs < 1e15) {
    for (const [from, suffix, divisor] of LARGE_TICK_UNITS) {
      if (abs >= from) return `${Number((v / divisor).toPrecision(3))}${suffix}`;
    }
    if (abs >= 1e-3) return String(Number(v.toPrecision(3)));
  }
  const [mantissa, exponent] = v.toExponential(1).split('e');
  return `${mantissa.replace(/\.0$/, '')}e${exponent.replace('+', '')}`;
}

/** Labels of a log axis: decades over a wide span, 1-2-5 over a short one, all over a very short one. */
export function logTickValues(splits: number[], min: number, max: number): string[] {
  const span = Math.log10(max / min);
  const keep = span > 2.5 ? [1] : span > 0.8 ? [1, 2, 5] : null;
  return splits.map((v) => {
    if (v === null || v === undefined) return '';
    const mantissa = Math.round(v / 10 ** Math.floor(Math.log10(v) + 1e-9));
    return keep === null || keep.includes(mantissa) ? formatTick(v) : '';
  });
}

/** The y range of a log axis over [min, max] (both > 0): whole decades, at least LOG_PAD_DECADES beyond the data. */
export function logRange(min: number, max: number): [number, number] {
  // Number('1e-5') is exact where 10 ** -5 is not.
  return [Number(`1e${Math.floor(Math.log10(min) - LOG_PAD_DECADES)}`), Number(`1e${Math.ceil(Math.log10(max) + LOG_PAD_DECADES)}`)];
}
