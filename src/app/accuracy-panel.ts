/**
 * The accuracy run and its results: builds the workload (synthetic, or the loaded file), calls the
 * library's runAccuracy (the real kernels, then float64 metrics), and shows the report as a sortable
 * table, two uPlot charts (error by method; error vs Hadamard block) and JSON/CSV downloads.
 */
import { runAccuracy, type AccuracyReport, type AccuracyWorkload, type MethodAccuracy } from '../accuracy/accuracy-lab';
import { CHART_METRICS, errorByMethod, errorVsBlockSize, type ChartMetricId } from '../accuracy/chart-data';
import { MODEL_PRESETS } from '../bench/decode-step-bench';
import type { GpuContext } from '../gpu/gpu-context';
import { generateWorkload } from '../workloads/synthetic';
import { renderChart, clearChart } from './charts';
import { accuracyMethodIds, type AppConfig } from './config';
import { byId, el } from './dom';
import { throwIfAborted } from './errors';
import { fileStamp, showDownloads, toCsv } from './export';
import { formatNumber, renderTable, type Column } from './tables';

/** Reports a step of a run: value of max, and a line of text. */
export type ProgressFn = (value: number | null, max: number, text: string) => void;

/**
 * K (or V) elements of an accuracy run on the page, at most: the lab keeps f32 inputs and several
 * float64 copies (stored, un-rotated) of K and V on the CPU, about 40 bytes per element in all, so
 * 16 M elements peak near 0.7 GB — what a browser tab can be asked for.
 */
export const MAX_ACCURACY_ELEMENTS = 2 ** 24;

/** Lets the browser paint (progress text) before CPU-heavy work. */
const nextFrame = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** The workload of a run: the loaded file, or the synthetic kind of the configuration. */
export function accuracyWorkload(config: AppConfig, file: AccuracyWorkload | null): AccuracyWorkload {
  if (file) return file;
  const p = MODEL_PRESETS[config.preset];
  const elements = config.seqs * config.context * p.numKvHeads * p.headDim;
  if (elements > MAX_ACCURACY_ELEMENTS) {
    throw new RangeError(
      `the accuracy run keeps K and V in float64 on the CPU: ${config.seqs} × ${config.context} tokens × ${p.numKvHeads} kv heads × ${p.headDim} ` +
        `is ${elements.toLocaleString('en')} elements, over the page's ${MAX_ACCURACY_ELEMENTS.toLocaleString('en')}; ` +
        `lower the concurrency or the context (the CLI has no such cap)`,
    );
  }
  return generateWorkload({
    kind: config.workload,
    numQueryHeads: p.numQueryHeads,
    numKvHeads: p.numKvHeads,
    headDim: p.headDim,
    contextLens: Array.from({ length: config.seqs }, () => config.context),
    seed: config.seed,
  });
}

/** Runs the accuracy comparison; `signal` is checked between methods. */
export async function runAccuracyPanel(ctx: GpuContext, config: AppConfig, file: AccuracyWorkload | null, signal: AbortSignal, progress: ProgressFn): Promise<AccuracyReport> {
  progress(null, 1, file ? 'Accuracy: preparing your file…' : `Accuracy: generating the ${config.workload} workload…`);
  await nextFrame();
  const workload = accuracyWorkload(config, file);
  throwIfAborted(signal);
  const methods = accuracyMethodIds(config);
  return runAccuracy(ctx, workload, methods, { pageSize: config.pageSize }, (p) => {
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

export function accuracyColumns(report: AccuracyReport): Column<MethodAccuracy>[] {
  return [
    { key: 'method', label: 'Method', value: (m) => m.displayName },
    { key: 'id', label: 'Id', value: (m) => m.id },
    { key: 'bits_per_element', label: 'Bits / elem', title: 'Stored bits per K or V element, scale/min included', value: (m) => m.bitsPerElement, format: num(3) },
    { key: 'compression_vs_fp16', label: '× smaller than FP16', value: (m) => m.compressionVsFp16, format: num(3) },
    { key: 'rel_l2_vs_exact', label: 'Rel. L2 vs exact', title: 'Attention output ‖o − o_exact‖ / ‖o_exact‖, mean over heads (exact: float64 on the unquantized K/V)', value: (m) => m.vsExact.relL2, format: num() },
    { key: 'cosine_vs_exact', label: 'Cosine vs exact', value: (m) => m.vsExact.cosine, format: num(6) },
    { key: 'max_abs_vs_exact', label: 'Max |err|', title: 'Largest absolute output error vs exact', value: (m) => m.vsExact.maxAbs, format: num() },
    { key: 'rel_l2_vs_fp16', label: 'Rel. L2 vs FP16', title: "Against the GPU's own FP16 run", value: (m) => m.vsFp16.relL2, format: num() },
    { key: 'k_path_rel_l2', label: 'K-path rel. L2', title: 'Stored K with exact V, vs exact: what the rotation of K changes', value: (m) => m.kOnly.relL2, format: num() },
    { key: 'kl_mean', label: 'KL (nats)', title: 'KL(p_exact ‖ p_method) of the attention probabilities, mean over heads', value: (m) => m.klMean, format: num() },
    { key: 'top_k_overlap', label: `Top-${report.settings.topK} overlap`, value: (m) => m.topKOverlap, format: num(3) },
    { key: 'k_snr_db', label: 'K SNR dB', value: (m) => m.kSnrDb, format: (v) => (v === null ? 'lossless' : formatNumber(v, 3)) },
    { key: 'v_snr_db', label: 'V SNR dB', value: (m) => m.vSnrDb, format: (v) => (v === null ? 'lossless' : formatNumber(v, 3)) },
    { key: 'kernel_rel_l2', label: 'Kernel check', title: "GPU output vs float64 attention over the GPU's own stored bytes (should be ≪ the quantization error)", value: (m) => m.kernelRelL2, format: num(2) },
    { key: 'gpu_ms', label: 'GPU ms', title: 'Wall time of the GPU part (pipelines, write, attention, read-back)', value: (m) => m.gpuMs, format: num(3) },
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

/** Draws the two accuracy charts for the selected metric. */
export function drawAccuracyCharts(report: AccuracyReport): void {
  const metric = byId<HTMLSelectElement>('acc-metric').value as ChartMetricId;
  const m = CHART_METRICS[metric];
  const byMethod = errorByMethod(report, metric);
  renderChart(byId('acc-chart-methods'), {
    title: `${byMethod.title}${betterText(metric)}`,
    xLabel: 'method (H64: INT4 + Hadamard, block 64)',
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
}

/** Shows a finished report: summary, table, charts, downloads. */
export function showAccuracy(report: AccuracyReport): void {
  byId('accuracy-results').hidden = false;
  const w = report.workload;
  byId('acc-summary').textContent =
    `${w.description}. Page size ${report.settings.pageSize}; ${report.settings.useSubgroups ? 'subgroup' : 'workgroup-memory'} decode kernels; ` +
    `errors are against exact float64 attention on the unquantized K/V unless the column says FP16.`;
  const columns = accuracyColumns(report);
  renderTable(byId('acc-table'), 'Accuracy by method (click a header to sort)', columns, report.methods);
  drawAccuracyCharts(report);
  const stamp = fileStamp(new Date(report.date));
  showDownloads(byId('acc-downloads'), [
    { label: 'Download JSON', fileName: `accuracy-${stamp}.json`, mime: 'application/json', text: JSON.stringify(report, null, 2) },
    { label: 'Download CSV', fileName: `accuracy-${stamp}.csv`, mime: 'text/csv', text: toCsv(columns, report.methods) },
  ]);
}
