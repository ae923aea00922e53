/**
 * The accuracy run and its results: builds the workload (synthetic, or the loaded file), calls the
 * library's runAccuracy (the real kernels, then float64 metrics), and shows each method's row as it
 * finishes: a sortable table (key columns, the rest under "More columns"), four uPlot charts (error
 * by method; error vs Hadamard block; bits vs error; K channels before and after the rotation) and
 * JSON/CSV downloads. A cancelled run keeps the rows it finished.
 */
import { accuracyReport, DEFAULT_TOP_K, runAccuracy, type AccuracyReport, type AccuracyWorkload, type MethodAccuracy } from '../accuracy/accuracy-lab';
import { CHART_METRICS, errorByMethod, errorVsBlockSize, type ChartMetricId } from '../accuracy/chart-data';
import { MODEL_PRESETS } from '../bench/decode-step-bench';
import type { GpuContext } from '../gpu/gpu-context';
import { generateWorkload } from '../workloads/synthetic';
import { renderChart, clearChart } from './charts';
import { accuracyMethodIds, accuracySizeProblem, type AppConfig } from './config';
import { byId, el } from './dom';
import { throwIfAborted } from './errors';
import { fileStamp, showDownloads, toCsv } from './export';
import { channelStats, type ChannelStats } from '../accuracy/channel-stats';
import { channelCaption, channelSpec, paretoSpec } from './figures';
import { formatNumber, renderTable, type Column } from './tables';

/** Reports a step of a run: value of max, and a line of text. */
export type ProgressFn = (value: number | null, max: number, text: string) => void;

/** Lets the browser paint (progress text) before CPU-heavy work. */
const nextFrame = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** The workload of a run: the loaded file, or the synthetic kind of the configuration. */
export function accuracyWorkload(config: AppConfig, file: AccuracyWorkload | null): AccuracyWorkload {
  if (file) return file;
  const tooBig = accuracySizeProblem(config);
  if (tooBig) throw new RangeError(tooBig);
  const p = MODEL_PRESETS[config.preset];
  return generateWorkload({
    kind: config.workload,
    numQueryHeads: p.numQueryHeads,
    numKvHeads: p.numKvHeads,
    headDim: p.headDim,
    contextLens: Array.from({ length: config.seqs }, () => config.context),
    seed: config.seed,
  });
}

/** A report of the rows finished so far, in the library's format (what the page shows and exports). */
export function partialReport(ctx: GpuContext, w: AccuracyWorkload, pageSize: number, rows: readonly MethodAccuracy[]): AccuracyReport {
  return accuracyReport(ctx, w, { pageSize, topK: DEFAULT_TOP_K, useSubgroups: true }, rows);
}

/** What a run shows as it goes: the workload once built, then the report after each finished method. */
export interface AccuracyViews {
  onWorkload(workload: AccuracyWorkload): void;
  onRows(report: AccuracyReport): void;
}

/** Runs the accuracy comparison; `signal` is checked between steps of each method. */
export async function runAccuracyPanel(
  ctx: GpuContext, config: AppConfig, file: AccuracyWorkload | null, signal: AbortSignal, progress: ProgressFn, views: AccuracyViews,
): Promise<AccuracyReport> {
  progress(null, 1, file ? 'Accuracy: preparing your file…' : `Accuracy: generating the ${config.workload} workload…`);
  await nextFrame();
  const workload = accuracyWorkload(config, file);
  throwIfAborted(signal);
  views.onWorkload(workload);
  const methods = accuracyMethodIds(config, workload.headDim);
  const rows: MethodAccuracy[] = [];
  return runAccuracy(ctx, workload, methods, { pageSize: config.pageSize }, (p) => {
    if (p.result) {
      rows.push(p.result);
      views.onRows(partialReport(ctx, workload, config.pageSize, rows));
    }
    throwIfAborted(signal);
    const step = p.index * 2 + (p.stage === 'gpu' ? 0 : p.stage === 'metrics' ? 1 : 2);
    const what = p.stage === 'gpu' ? 'running the kernels' : p.stage === 'metrics' ? 'measuring the error' : 'done';
    progress(step, p.total * 2, `Accuracy: ${p.methodId} (${p.index + 1} of ${p.total}), ${what}`);
  });
}

/** Short labels under the bars. */
export function shortLabel(m: MethodAccuracy): string {
  if (m.hadamardBlock === null) return m.kvMethod.toUpperCase();
  return `H${m.hadamardBlock}${m.rotateV ? ' K+V' : ''}${m.signSeed !== null ? ' ±' : ''}`;
}

const num = (digits = 4) => (v: number | string | null) => formatNumber(v, digits);

/** The table's columns: the key ones first; `more` ones in the second table; the method in both. */
export function accuracyColumns(topK: number): Column<MethodAccuracy>[] {
  return [
    { key: 'method', label: 'Method', value: (m) => m.displayName, both: true },
    { key: 'id', label: 'Id', value: (m) => m.id, more: true },
    { key: 'bits_per_element', label: 'Bits / elem', title: 'Stored bits per K or V element, scale/min included', value: (m) => m.bitsPerElement, format: num(3) },
    { key: 'compression_vs_fp16', label: '× smaller', title: 'Times smaller than FP16 (bytes per token)', value: (m) => m.compressionVsFp16, format: num(3) },
    { key: 'rel_l2_vs_exact', label: 'Rel. L2 vs exact', title: 'Attention output ‖o − o_exact‖ / ‖o_exact‖, mean over heads (exact: float64 on the unquantized K/V)', value: (m) => m.vsExact.relL2, format: num() },
    { key: 'k_path_rel_l2', label: 'K-path rel. L2', title: 'Stored K with exact V, vs exact: what the rotation of K changes', value: (m) => m.kOnly.relL2, format: num() },
    { key: 'kl_mean', label: 'KL (nats)', title: 'KL(p_exact ‖ p_method) of the attention probabilities, mean over heads', value: (m) => m.klMean, format: num() },
    { key: 'top_k_overlap', label: `Top-${topK} overlap`, title: 'Share of the most attended tokens that stay the most attended', value: (m) => m.topKOverlap, format: num(3) },
    { key: 'cosine_vs_exact', label: 'Cosine vs exact', value: (m) => m.vsExact.cosine, format: num(6) },
    { key: 'k_snr_db', label: 'K SNR dB', title: 'Signal-to-noise ratio of the stored K', value: (m) => m.kSnrDb, format: (v) => (v === null ? 'lossless' : formatNumber(v, 3)) },
    { key: 'max_abs_vs_exact', label: 'Max |err|', title: 'Largest absolute output error vs exact', value: (m) => m.vsExact.maxAbs, format: num(), more: true },
    { key: 'rel_l2_vs_fp16', label: 'Rel. L2 vs FP16', title: "Against the GPU's own FP16 run", value: (m) => m.vsFp16.relL2, format: num(), more: true },
    { key: 'v_snr_db', label: 'V SNR dB', value: (m) => m.vSnrDb, format: (v) => (v === null ? 'lossless' : formatNumber(v, 3)), more: true },
    { key: 'kernel_rel_l2', label: 'Kernel check', title: "GPU output vs float64 attention over the GPU's own stored bytes (should be ≪ the quantization error)", value: (m) => m.kernelRelL2, format: num(2), more: true },
    { key: 'gpu_ms', label: 'GPU ms', title: 'Wall time of the GPU part (pipelines, write, attention, read-back)', value: (m) => m.gpuMs, format: num(3), more: true },
    { key: 'decode_plan', label: 'Decode plan', title: 'The decode kernel and its plan (heads per workgroup, splits)', value: (m) => m.decodePlan, more: true },
  ];
}

/** Metrics offered by the chart selector. */
export const ACCURACY_CHART_METRICS: ChartMetricId[] = ['relL2', 'relL2VsFp16', 'kOnlyRelL2', 'klMean', 'cosine', 'maxAbs', 'topKOverlap', 'kSnrDb'];

/** Fills #acc-metric once. */
export function initAccuracyMetricSelect(onChange: () => void): void {
  const metric = byId<HTMLSelectElement>('acc-metric');
  metric.replaceChildren(...ACCURACY_CHART_METRICS.map((id) => el('option', { value: id }, CHART_METRICS[id].label)));
  metric.addEventListener('change', onChange);
}

/** Axis titles short enough for a phone (the chart title carries the full name). */
const AXIS_TITLES: Record<ChartMetricId, string> = {
  relL2: 'relative L2', relL2VsFp16: 'relative L2 vs FP16', kOnlyRelL2: 'K-path relative L2', cosine: 'cosine', maxAbs: 'max |error|',
  klMean: 'KL (nats)', topKOverlap: 'top-k overlap', kSnrDb: 'K SNR (dB)', vSnrDb: 'V SNR (dB)', bitsPerElement: 'bits per element',
};

function unitText(id: ChartMetricId): string {
  return AXIS_TITLES[id];
}

function betterText(id: ChartMetricId): string {
  return CHART_METRICS[id].lowerIsBetter ? ' (lower is better)' : ' (higher is better)';
}

/** Draws the accuracy charts of the rows so far: error by method, vs Hadamard block, and bits vs error. */
export function drawAccuracyCharts(report: AccuracyReport): void {
  const metric = byId<HTMLSelectElement>('acc-metric').value as ChartMetricId;
  const m = CHART_METRICS[metric];
  const byMethod = errorByMethod(report, metric);
  renderChart(byId('acc-chart-methods'), {
    title: `${byMethod.title}${betterText(metric)}`,
    xLabel: 'method (H64: INT4 + Hadamard, block 64)',
    xLegend: 'method',
    yLabel: unitText(metric),
    xs: byMethod.data[0],
    barLabels: report.methods.map(shortLabel),
    series: [{ label: m.label, values: byMethod.data[1] }],
    yLog: m.logScale,
  });
  const byBlock = errorVsBlockSize(report, metric);
  const blockBox = byId('acc-chart-blocks');
  const note = byId('acc-blocks-note');
  if (byBlock.blocks.length >= 2) {
    note.hidden = true;
    renderChart(blockBox, {
      title: `${byBlock.title}${betterText(metric)}`,
      xLabel: 'Hadamard block B',
      yLabel: unitText(metric),
      xs: byBlock.blocks,
      xLog: true,
      series: [
        ...byBlock.series.map((s, i) => ({ label: s.label, values: byBlock.data[i + 1] as (number | null)[] })),
        ...byBlock.references.map((r) => ({ label: r.label, values: byBlock.blocks.map(() => r.value), reference: true })),
      ],
      yLog: m.logScale,
    });
  } else {
    clearChart(blockBox);
    note.hidden = false;
  }
  if (report.methods.length) renderChart(byId('acc-chart-pareto'), paretoSpec(report, shortLabel));
  else clearChart(byId('acc-chart-pareto'));
}

/** The channel figure of a workload: K before and after the rotation with `block`. */
export function drawChannelChart(stats: ChannelStats): void {
  renderChart(byId('acc-chart-channels'), channelSpec(stats));
  byId('acc-channels-caption').textContent = channelCaption(stats);
}

/** A run starts on `workload`: the section shows it (and its channels), with no rows yet. */
export function showAccuracyWorkload(workload: AccuracyWorkload, block: number): void {
  byId('accuracy-results').hidden = false;
  byId('acc-summary').textContent = `${workload.description}. Running the methods; each row appears when it finishes.`;
  renderTable(byId('acc-table'), 'Accuracy by method (click a header to sort)', accuracyColumns(DEFAULT_TOP_K), []);
  for (const id of ['acc-chart-methods', 'acc-chart-blocks', 'acc-chart-pareto']) clearChart(byId(id));
  byId('acc-blocks-note').hidden = true;
  drawChannelChart(channelStats(workload, Math.min(block, workload.headDim)));
  showDownloads(byId('acc-downloads'), []);
}

/** 'running': rows so far, no downloads; 'complete': the library's report; 'partial': a cancelled run's rows, with downloads. */
export type ReportState = 'running' | 'complete' | 'partial';

/** Shows a report (or the rows so far): summary, table, charts, downloads. */
export function showAccuracy(report: AccuracyReport, state: ReportState = 'complete'): void {
  byId('accuracy-results').hidden = false;
  const w = report.workload;
  const progress = state === 'running' ? ` ${report.methods.length} method${report.methods.length === 1 ? '' : 's'} done so far.`
    : state === 'partial' ? ` Cancelled: the ${report.methods.length} methods that finished.` : '';
  byId('acc-summary').textContent =
    `${w.description}. Page size ${report.settings.pageSize}; ${report.settings.useSubgroups ? 'subgroup' : 'workgroup-memory'} decode kernels; ` +
    `errors are against exact float64 attention on the unquantized K/V unless the column says FP16.${progress}`;
  const columns = accuracyColumns(report.settings.topK);
  renderTable(byId('acc-table'), 'Accuracy by method (click a header to sort)', columns, report.methods);
  drawAccuracyCharts(report);
  if (state === 'running') {
    showDownloads(byId('acc-downloads'), []);
    return;
  }
  const stamp = fileStamp(new Date(report.date));
  const suffix = state === 'partial' ? ` (${report.methods.length} methods, cancelled)` : '';
  showDownloads(byId('acc-downloads'), [
    { label: `Download JSON${suffix}`, fileName: `accuracy-${stamp}.json`, mime: 'application/json', text: JSON.stringify(report, null, 2) },
    { label: `Download CSV${suffix}`, fileName: `accuracy-${stamp}.csv`, mime: 'text/csv', text: toCsv(columns, report.methods) },
  ]);
}
