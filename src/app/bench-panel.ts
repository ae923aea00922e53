/**
 * The throughput run and its results: the library's decode-step bench (fused append of one token per
 * sequence + paged decode attention, one layer, real kernels) over a concurrency sweep and a context
 * sweep, with the bandwidth probe as the roofline; each point shown as it finishes in a sortable
 * table (key columns, the rest under "More columns") and two uPlot charts, with JSON/CSV downloads
 * once the run is complete. A cancelled run keeps the points it finished.
 */
import { buildBenchReport, fmtSig, formatProgress, reportToJson, type BenchReport } from '../bench/bench-report';
import {
  MODEL_PRESETS, QUICK_PROBE_BYTES, QUICK_TIMING, runDecodeBench, type MeasuredPoint, type PointResult,
} from '../bench/decode-step-bench';
import type { GpuContext } from '../gpu/gpu-context';
import { formatBytes } from '../kernels/gpu-buffers';
import type { ProgressFn } from './accuracy-panel';
import { clearChart, renderChart } from './charts';
import { benchPoints, type AppConfig } from './config';
import { byId, el } from './dom';
import { throwIfAborted } from './errors';
import { fileStamp, showDownloads, toCsv } from './export';
import { formatNumber, renderTable, type Column } from './tables';

/** Points whose K + V pools exceed this are skipped on the page (a browser tab is no place for 8 GiB). */
export const PAGE_MAX_CACHE_BYTES = 2 ** 30;

/**
 * A bench with the concurrency and context it was centred on (the charts' fixed axes): its points so
 * far, and the library's report once every point is done (null before, or when cancelled).
 */
export interface BenchResult {
  report: BenchReport | null;
  points: PointResult[];
  /** Points the run was asked for. */
  total: number;
  seqs: number;
  context: number;
}

/** Runs the bench for `config`; `signal` is checked after each point, and `onPoints` sees every point as it finishes. */
export async function runBenchPanel(
  ctx: GpuContext, config: AppConfig, signal: AbortSignal, progress: ProgressFn, onPoints: (result: BenchResult) => void,
): Promise<BenchResult> {
  const points = benchPoints(config);
  const partial: BenchResult = { report: null, points: [], total: points.length, seqs: config.seqs, context: config.context };
  progress(null, points.length, 'Throughput: measuring the bandwidth roofline…');
  const run = await runDecodeBench(ctx, points, {
    timing: config.quick ? QUICK_TIMING : undefined,
    probeBytes: config.quick ? QUICK_PROBE_BYTES : undefined,
    maxCacheBytes: PAGE_MAX_CACHE_BYTES,
    onProgress: (done, total, point) => {
      partial.points = [...partial.points, point];
      onPoints({ ...partial });
      throwIfAborted(signal);
      progress(done, total, `Throughput: ${formatProgress(done, total, point)}`);
    },
  });
  const report = buildBenchReport(ctx, run, { quick: config.quick });
  return { ...partial, report, points: report.points };
}

const ok = (r: PointResult): r is MeasuredPoint => r.status === 'ok';
const measured = <T>(f: (r: MeasuredPoint) => T) => (r: PointResult): T | null => (ok(r) ? f(r) : null);
const num = (digits = 4) => (v: number | string | null) => formatNumber(v, digits);

/** Why a point did not run, in a line. */
function statusText(r: PointResult): string {
  if (r.status === 'ok') return 'ok';
  if (r.status === 'failed') return `failed: ${r.error}`;
  return `skipped: ${r.reason}${r.wouldFit ? ` (fits: context ≤ ${r.wouldFit.maxContextAtBatch} or concurrency ≤ ${r.wouldFit.maxBatchAtContext})` : ''}`;
}

/** The table's columns: the key ones first; `more` ones in the second table; method and shape in both. */
export const BENCH_COLUMNS: Column<PointResult>[] = [
  { key: 'method', label: 'Method', value: (r) => r.variant, both: true },
  { key: 'preset', label: 'Model', value: (r) => MODEL_PRESETS[r.point.preset].name, csvOnly: true },
  { key: 'batch', label: 'Conc.', title: 'Concurrency: sequences decoded together', value: (r) => r.point.batch, both: true },
  { key: 'context', label: 'Context', value: (r) => r.point.context, both: true },
  { key: 'page_size', label: 'Page', value: (r) => r.point.pageSize, csvOnly: true },
  { key: 'splits', label: 'Splits', title: 'Split-K partitions of the attention (1: no merge pass)', value: measured((r) => r.numSplits), more: true },
  { key: 'heads_per_wg', label: 'Heads/WG', title: 'Query heads per attention workgroup (fewer than the GQA group on small grids)', value: measured((r) => r.headsPerWorkgroup), more: true },
  { key: 'append_us', label: 'Append µs', title: 'Fused rotate + quantize + paged write of one token per sequence (median)', value: measured((r) => r.appendUs), format: num(), more: true },
  { key: 'attention_us', label: 'Attention µs', title: 'Paged decode attention over context + 1 tokens (median)', value: measured((r) => r.attentionUs), format: num(), more: true },
  { key: 'step_us', label: 'Step µs', title: 'One layer\'s decode step as the default plan runs it: the fused step (cache write inside the decode kernel) where it fuses, else append + attention (medians)', value: measured((r) => r.stepUs), format: num() },
  { key: 'speedup_vs_fp16', label: '× vs FP16', title: 'FP16 step time / this step time at the same shape (> 1: faster)', value: measured((r) => r.speedupVsFp16?.step ?? null), format: num(3) },
  { key: 'tokens_per_s', label: 'Tokens/s', title: 'Concurrency / step time (one layer)', value: measured((r) => r.tokensPerSecond), format: num(4) },
  { key: 'pct_of_roofline', label: '% of roofline', title: 'Attention GB/s as a percent of the bandwidth probe in the same run', value: measured((r) => r.attentionPctOfProbe), format: num(3) },
  { key: 'rotation_overhead_pct', label: 'Rotation +%', title: 'INT4 + Hadamard step time over plain INT4, percent', value: measured((r) => r.rotationOverheadPct?.step ?? null), format: num(3) },
  { key: 'kernel', label: 'Kernel', title: 'The decode kernel the attention ran (subgroup, workgroup-memory or matrix)', value: measured((r) => r.kernel) },
  { key: 'attention_gbps', label: 'Attention GB/s', value: measured((r) => r.attentionGBps), format: num(), more: true },
  { key: 'bytes_per_token', label: 'Bytes/token', title: 'Cache bytes of one token in one layer (K + V, all kv heads)', value: (r) => r.bytesPerToken, more: true },
  { key: 'plan', label: 'Decode plan', title: 'The decode plan in one line (kernel, heads per workgroup, splits)', value: measured((r) => r.plan), more: true },
  { key: 'status', label: 'Status', title: 'ok, or why the point did not run', value: statusText },
];

export const BENCH_CHART_METRICS = {
  stepUs: { label: 'µs per decode step (one layer)', axis: 'µs per step', value: (r: MeasuredPoint) => r.stepUs, log: true },
  tokensPerSecond: { label: 'tokens/s (one layer)', axis: 'tokens/s', value: (r: MeasuredPoint) => r.tokensPerSecond, log: true },
  attentionPctOfProbe: { label: 'attention, % of roofline', axis: '% of roofline', value: (r: MeasuredPoint) => r.attentionPctOfProbe, log: false },
  attentionGBps: { label: 'attention GB/s', axis: 'GB/s', value: (r: MeasuredPoint) => r.attentionGBps, log: true },
} as const;
export type BenchChartMetric = keyof typeof BENCH_CHART_METRICS;

/** Fills #bench-metric once. */
export function initBenchMetricSelect(onChange: () => void): void {
  const metric = byId<HTMLSelectElement>('bench-metric');
  metric.replaceChildren(...Object.entries(BENCH_CHART_METRICS).map(([id, m]) => el('option', { value: id }, m.label)));
  metric.addEventListener('change', onChange);
}

/** One line per method over `axis`, the other axis held at `fixed` (a selection of measured points). */
function seriesOver(points: PointResult[], axis: 'batch' | 'context', fixed: number, metric: BenchChartMetric) {
  const other = axis === 'batch' ? 'context' : 'batch';
  const chosen = points.filter((p) => p.point[other] === fixed);
  const xs = [...new Set(chosen.map((p) => p.point[axis]))].sort((a, b) => a - b);
  const variants = [...new Set(chosen.map((p) => p.variant))];
  return {
    xs,
    series: variants.map((variant) => ({
      label: variant,
      values: xs.map((x) => {
        const p = chosen.find((c) => c.variant === variant && c.point[axis] === x);
        return p && ok(p) ? BENCH_CHART_METRICS[metric].value(p) : null;
      }),
    })),
  };
}

export function drawBenchCharts(result: BenchResult): void {
  const metric = byId<HTMLSelectElement>('bench-metric').value as BenchChartMetric;
  const m = BENCH_CHART_METRICS[metric];
  const model = MODEL_PRESETS[result.points[0]?.point.preset ?? 'llama-3.1-8b'].name;
  const yMin = m.log ? undefined : 0;
  const byBatch = seriesOver(result.points, 'batch', result.context, metric);
  renderChart(byId('bench-chart-batch'), { title: `${model}: ${m.label} vs concurrency (context ${result.context})`, xLabel: 'concurrency (sequences)', yLabel: m.axis, xLog: true, yLog: m.log, yMin, ...byBatch });
  const byContext = seriesOver(result.points, 'context', result.seqs, metric);
  renderChart(byId('bench-chart-context'), { title: `${model}: ${m.label} vs context (concurrency ${result.seqs})`, xLabel: 'context (tokens)', yLabel: m.axis, xLog: true, yLog: m.log, yMin, ...byContext });
}

/** Shows the points so far (the summary and downloads once the report exists; `cancelled`: what stays). */
export function showBench(result: BenchResult, cancelled = false): void {
  const { report } = result;
  byId('bench-results').hidden = false;
  const first = result.points[0]?.point;
  const shape = first ? el('li', {}, `Every point: one layer of ${MODEL_PRESETS[first.preset].name}, pages of ${first.pageSize} tokens.`) : '';
  if (report) {
    const probe = report.probe;
    byId('bench-summary').replaceChildren(
      shape,
      el('li', {}, `Roofline: ${fmtSig(probe.gbps)} GB/s, a read-only stream of ${formatBytes(probe.bytes)} in the same run — ${probe.note}.`),
      el('li', {}, `Timing: ${report.timingMethod === 'timestamp' ? 'GPU timestamps' : 'wall clock'}${report.quick ? ', quick (short warm-up, few samples)' : ''}; an empty dispatch takes ${fmtSig(report.floor.medianNs / 1e3)} µs, one that waits for the previous (as each dispatch of a decode step does) ${fmtSig(report.dependentFloor.medianNs / 1e3)} µs.`),
      el('li', {}, el('details', { class: 'notes' }, el('summary', {}, 'How to read these numbers'), el('ul', {}, ...report.notes.map((n) => el('li', {}, n))))),
    );
  } else {
    const done = `${result.points.length} of ${result.total} points`;
    byId('bench-summary').replaceChildren(shape, el('li', {}, cancelled
      ? `Cancelled after ${done}: they stay below (the roofline and timing floors are reported with a complete run).`
      : `${done} done; each appears when it is timed.`));
  }
  renderTable(byId('bench-table'), 'Decode-step throughput (click a header to sort)', BENCH_COLUMNS, result.points);
  if (result.points.length) drawBenchCharts(result);
  else for (const id of ['bench-chart-batch', 'bench-chart-context']) clearChart(byId(id));
  if (!report) {
    showDownloads(byId('bench-downloads'), []);
    return;
  }
  const stamp = fileStamp(new Date(report.date));
  showDownloads(byId('bench-downloads'), [
    { label: 'Download JSON', fileName: `bench-${stamp}.json`, mime: 'application/json', text: reportToJson(report) },
    { label: 'Download CSV', fileName: `bench-${stamp}.csv`, mime: 'text/csv', text: toCsv(BENCH_COLUMNS, report.points) },
  ]);
}
