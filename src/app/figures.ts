/**
 * Two figures the library has no series for, computed here from what the page already holds:
 *
 *   paretoSpec     bits per element against output error, one point per method of the report, with
 *                  the Pareto frontier (the methods no other beats on both): memory against accuracy.
 *   channelSpec    per-channel RMS of K for one kv head of the current workload, before and after the
 *                  block-diagonal Hadamard rotation the INT4 + Hadamard method applies
 *                  (channelStats, src/accuracy/channel-stats.ts): why the rotation works.
 */
import type { AccuracyReport, AccuracyWorkload, MethodAccuracy } from '../accuracy/accuracy-lab';
import { channelStats, spread, type ChannelStats } from '../accuracy/channel-stats';
import type { ChartSeries, ChartSpec } from './charts';
import { formatNumber } from './tables';


export function channelSpec(stats: ChannelStats): ChartSpec {
  const channels = stats.before.map((_, c) => c);
  return {
    title: `K channel RMS, kv head ${stats.kvHead}: before and after the Hadamard rotation (B = ${stats.block})`,
    xLabel: 'channel of head_dim',
    yLabel: 'RMS over tokens',
    xs: channels,
    dense: true,
    yMin: 0,
    series: [
      { label: `before (largest / median ${formatNumber(spread(stats.before), 3)}×)`, values: stats.before },
      { label: `after H (largest / median ${formatNumber(spread(stats.after), 3)}×)`, values: stats.after },
    ],
  };
}

/** One line under the figure: what it shows, with the numbers. */
export function channelCaption(stats: ChannelStats): string {
  return (
    `Over ${stats.tokens.toLocaleString('en')} tokens. Per-token INT4 spreads its 16 levels over the largest channel: before the rotation ` +
    `the largest channel is ${formatNumber(spread(stats.before), 3)}× the median one, after it ${formatNumber(spread(stats.after), 3)}×. ` +
    'The rotation keeps the total (H is orthogonal) and spreads the outliers over their block, so the levels fit every channel.'
  );
}

/** Methods no other beats on both bits and error (ties in bits: the lower error), ascending in bits. */
export function paretoFrontier(methods: readonly MethodAccuracy[], error: (m: MethodAccuracy) => number): MethodAccuracy[] {
  const sorted = [...methods].filter((m) => Number.isFinite(error(m))).sort((a, b) => a.bitsPerElement - b.bitsPerElement || error(a) - error(b));
  const frontier: MethodAccuracy[] = [];
  for (const m of sorted) {
    const last = frontier[frontier.length - 1];
    if (!last || (m.bitsPerElement > last.bitsPerElement && error(m) < error(last))) frontier.push(m);
  }
  return frontier;
}

/** Bits per element (x) against output relative L2 vs exact (y, log): every method, and the frontier. */
export function paretoSpec(report: AccuracyReport, shortLabel: (m: MethodAccuracy) => string): ChartSpec {
  const error = (m: MethodAccuracy) => m.vsExact.relL2;
  const xs = [...new Set(report.methods.map((m) => m.bitsPerElement))].sort((a, b) => a - b);
  const at = (m: MethodAccuracy) => xs.indexOf(m.bitsPerElement);
  const series: ChartSeries[] = report.methods.map((m) => ({
    label: shortLabel(m),
    dots: true,
    values: xs.map((_, i) => (i === at(m) ? error(m) : null)),
    pointLabels: xs.map((_, i) => (i === at(m) ? shortLabel(m) : null)),
  }));
  const frontier = paretoFrontier(report.methods, error);
  if (frontier.length >= 2) {
    series.push({ label: 'Pareto frontier', dashed: true, color: '#7f7f7f', values: xs.map((x) => frontier.find((m) => m.bitsPerElement === x)?.vsExact.relL2 ?? null) });
  }
  return {
    title: 'Bits per element vs output error (relative L2 vs exact; lower left is better)',
    xLabel: 'stored bits per K/V element',
    yLabel: 'relative L2',
    xs,
    xRange: [0, Math.ceil(Math.max(...xs, 16) + 2)],
    xText: (x) => `${formatNumber(x, 3)} bits`,
    yLog: true,
    series,
  };
}
