/**
 * Chart series from an accuracy report, ready for uPlot (`new uPlot(opts, data, el)` takes
 * AlignedData: [xs, ys₁, ys₂, …], null for a gap). The page plots; every number comes from here.
 *
 *   errorByMethod(report, 'relL2')     one value per method, in report order (a bar chart: x = index)
 *   errorVsBlockSize(report, 'klMean') one line per rotation variant (K only, K+V, ±signs) over the
 *                                      Hadamard block sizes in the report, plus flat reference levels
 *                                      (naive INT4, FP16) drawn as horizontal lines
 */
import type { AccuracyReport, MethodAccuracy } from './accuracy-lab';

export interface ChartMetric {
  /** Axis label. */
  label: string;
  /** Unit for the axis ('' for a ratio). */
  unit: string;
  /** Whether smaller is better (error) or larger is better (similarity, SNR). */
  lowerIsBetter: boolean;
  /** Suggests a log axis (errors spanning decades). */
  logScale: boolean;
  value(row: MethodAccuracy): number | null;
}

/** The metrics a chart can show, by id. */
export const CHART_METRICS = {
  relL2: { label: 'Output relative L2 vs exact', unit: '', lowerIsBetter: true, logScale: true, value: (r) => r.vsExact.relL2 },
  relL2VsFp16: { label: 'Output relative L2 vs FP16', unit: '', lowerIsBetter: true, logScale: true, value: (r) => r.vsFp16.relL2 },
  kOnlyRelL2: { label: 'Key-path output relative L2 (exact V)', unit: '', lowerIsBetter: true, logScale: true, value: (r) => r.kOnly.relL2 },
  cosine: { label: 'Output cosine similarity vs exact', unit: '', lowerIsBetter: false, logScale: false, value: (r) => r.vsExact.cosine },
  maxAbs: { label: 'Output max |error| vs exact', unit: '', lowerIsBetter: true, logScale: true, value: (r) => r.vsExact.maxAbs },
  klMean: { label: 'KL(p_exact ‖ p_method), mean', unit: 'nats', lowerIsBetter: true, logScale: true, value: (r) => r.klMean },
  topKOverlap: { label: 'Top-k attended-token overlap', unit: '', lowerIsBetter: false, logScale: false, value: (r) => r.topKOverlap },
  kSnrDb: { label: 'K reconstruction SNR', unit: 'dB', lowerIsBetter: false, logScale: false, value: (r) => r.kSnrDb },
  vSnrDb: { label: 'V reconstruction SNR', unit: 'dB', lowerIsBetter: false, logScale: false, value: (r) => r.vSnrDb },
  bitsPerElement: { label: 'Stored bits per element', unit: 'bits', lowerIsBetter: true, logScale: false, value: (r) => r.bitsPerElement },
} satisfies Record<string, ChartMetric>;

export type ChartMetricId = keyof typeof CHART_METRICS;

export interface ByMethodSeries {
  title: string;
  metric: ChartMetricId;
  /** Method display names, x = 0, 1, … */
  labels: string[];
  ids: string[];
  /** uPlot AlignedData: [x indices, values]. */
  data: [number[], (number | null)[]];
}

/** One bar per method of the report, in its order. */
export function errorByMethod(report: AccuracyReport, metric: ChartMetricId = 'relL2'): ByMethodSeries {
  const m = CHART_METRICS[metric];
  return {
    title: `${m.label} by method`,
    metric,
    labels: report.methods.map((r) => r.displayName),
    ids: report.methods.map((r) => r.id),
    data: [report.methods.map((_, i) => i), report.methods.map((r) => finiteOrNull(m.value(r)))],
  };
}

export interface BlockSizeSeries {
  title: string;
  metric: ChartMetricId;
  /** Hadamard block sizes present in the report, ascending (the x axis). */
  blocks: number[];
  /** One line per rotation variant that has at least one block in the report. */
  series: { label: string; variant: RotationVariant }[];
  /** uPlot AlignedData: [blocks, one array per entry of `series`]. */
  data: [number[], ...(number | null)[][]];
  /** Flat reference levels (naive INT4, FP16) when they are in the report. */
  references: { label: string; id: string; value: number | null }[];
}

export type RotationVariant = 'k' | 'kv' | 'k-signs' | 'kv-signs';

const VARIANT_LABELS: Record<RotationVariant, string> = {
  k: 'K rotated',
  kv: 'K+V rotated',
  'k-signs': 'K rotated, random signs',
  'kv-signs': 'K+V rotated, random signs',
};

function variantOf(r: MethodAccuracy): RotationVariant {
  return `${r.rotateV ? 'kv' : 'k'}${r.signSeed !== null ? '-signs' : ''}` as RotationVariant;
}

/** The metric over the Hadamard block size B, one line per rotation variant. */
export function errorVsBlockSize(report: AccuracyReport, metric: ChartMetricId = 'relL2'): BlockSizeSeries {
  const m = CHART_METRICS[metric];
  const rotated = report.methods.filter((r) => r.hadamardBlock !== null);
  const blocks = [...new Set(rotated.map((r) => r.hadamardBlock as number))].sort((a, b) => a - b);
  const variants = (Object.keys(VARIANT_LABELS) as RotationVariant[]).filter((v) => rotated.some((r) => variantOf(r) === v));
  const lines = variants.map((variant) =>
    blocks.map((b) => {
      const row = rotated.find((r) => r.hadamardBlock === b && variantOf(r) === variant);
      return row ? finiteOrNull(m.value(row)) : null;
    }),
  );
  const references = report.methods
    .filter((r) => r.hadamardBlock === null)
    .map((r) => ({ label: r.displayName, id: r.id, value: finiteOrNull(m.value(r)) }));
  return {
    title: `${m.label} vs Hadamard block size`,
    metric,
    blocks,
    series: variants.map((variant) => ({ label: VARIANT_LABELS[variant], variant })),
    data: [blocks, ...lines],
    references,
  };
}

function finiteOrNull(x: number | null): number | null {
  return x !== null && Number.isFinite(x) ? x : null;
}
