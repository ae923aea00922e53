/**
 * Bench results as a JSON-serializable report (adapter, features, date, probe, floor, points) and as
 * a text table for the CLI. No numeric logic beyond formatting: every figure comes from
 * decode-step-bench.ts.
 */
import { describeGpu, type AdapterSummary, type GpuContext, type OptionalFeature, type RaisedLimit } from '../gpu/gpu-context';
import { formatBytes } from '../kernels/gpu-buffers';
import type { DecodeTuning } from '../kernels/decode-tuning';
import { MODEL_PRESETS, type DecodeBenchRun, type PointResult, type ProbeResult, type TimingSummary } from './decode-step-bench';
import { STEADY_TOLERANCE, WALL_CLOCK_STEADY_TOLERANCE, type TimingMethod } from './gpu-timer';

export const BENCH_REPORT_SCHEMA = 'webgpu-int4-kv/bench-report@1';

export interface BenchReport {
  schema: typeof BENCH_REPORT_SCHEMA;
  /** ISO 8601 time the report was built. */
  date: string;
  /** One line: adapter and enabled optional features. */
  gpu: string;
  adapter: AdapterSummary;
  features: Record<OptionalFeature, boolean>;
  /** Dawn toggles enabled beyond the defaults (`--dawn-toggle`). */
  dawnToggles: string[];
  limits: Record<RaisedLimit, number>;
  timingMethod: TimingMethod;
  /** The roofline measured in the same run. */
  probe: ProbeResult;
  /** Empty dispatch (one workgroup, no bindings): the per-dispatch floor. */
  floor: TimingSummary;
  /** Empty dispatch that waits for the previous one (reads what it wrote): the floor of each dispatch in a chain. */
  dependentFloor: TimingSummary;
  quick: boolean;
  /** Bytes the "tokens in budget" column assumes (all layers of the preset). */
  capacityBudgetBytes: number;
  /** Points whose K+V pools exceed this were skipped. */
  maxCacheBytes: number;
  /** Decode-kernel tuning overrides ({}: each kernel's defaults). */
  decodeTuning: Partial<DecodeTuning>;
  /** Where split-K partials were merged (`bench --merge`; 'default': the plan's rule, each point's plan says which). */
  merge: 'dispatch' | 'kernel' | 'default';
  points: PointResult[];
  notes: string[];
}

/** Caveats printed with every report. */
export const REPORT_NOTES = [
  'Times are medians per call; one timed pass repeats the work back to back, so small caches are read from the GPU cache rather than DRAM and can exceed the probe.',
  'attention bytes = PreparedAttention.bytesRead (K/V rows + scale/min, block tables, context lengths, q); split-K partial results are not counted.',
  'step = one layer\'s decode step as the default plan runs it: the fused step ("fused µs": the cache write inside the decode kernel) where it fuses, else append + attention; "(off)": measured, not the default; tokens/s = batch / step; ratios within one run are what count (absolute times only on a real GPU).',
];

export function buildBenchReport(ctx: GpuContext, run: DecodeBenchRun, options: { quick?: boolean; date?: Date } = {}): BenchReport {
  return {
    schema: BENCH_REPORT_SCHEMA,
    date: (options.date ?? new Date()).toISOString(),
    gpu: describeGpu(ctx),
    adapter: { ...ctx.adapterInfo },
    features: { ...ctx.features },
    dawnToggles: [...(ctx.dawnToggles ?? [])],
    limits: { ...ctx.limits },
    timingMethod: run.timingMethod,
    probe: run.probe,
    floor: run.floor,
    dependentFloor: run.dependentFloor,
    quick: Boolean(options.quick),
    capacityBudgetBytes: run.capacityBudgetBytes,
    maxCacheBytes: run.maxCacheBytes,
    decodeTuning: run.decodeTuning,
    merge: run.merge,
    points: run.points,
    notes: [...REPORT_NOTES, ...unsteadyNotes(run.points)],
  };
}

/** A note naming the timings whose first sample sets were unsteady and measured again (none: no note). */
function unsteadyNotes(points: readonly PointResult[]): string[] {
  const redone: string[] = [];
  for (const p of points) {
    if (p.status !== 'ok') continue;
    for (const [part, t] of [['append', p.append], ['attention', p.attention], ['fused step', p.fusedStep]] as const) {
      if (t && t.unsteadyMediansNs.length) {
        redone.push(`${p.point.preset} ${p.variant} ${p.point.batch} × ${p.point.context} ${part} (${t.unsteadyMediansNs.map((ns) => fmtSig(ns / 1e3)).join(', ')} → ${fmtSig(t.medianNs / 1e3)} µs)`);
      }
    }
  }
  const limits = `${100 * STEADY_TOLERANCE} %, ${100 * WALL_CLOCK_STEADY_TOLERANCE} % with the wall clock`;
  return redone.length ? [`measured again because the first sample set was not steady (its halves' medians differ by > ${limits}; e.g. GPU clocks still ramping up): ${redone.join('; ')}`] : [];
}

/** The report as JSON text (2-space indent). */
export function reportToJson(report: BenchReport): string {
  return JSON.stringify(report, null, 2);
}

/** Fixed-point with `digits` decimals, or '–' for null/NaN. */
export function fmt(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);
}

/** Three significant figures, for values spanning many decades (µs, GB/s). */
export function fmtSig(value: number): string {
  if (!Number.isFinite(value)) return '–';
  const abs = Math.abs(value);
  return abs >= 100 ? value.toFixed(0) : abs >= 10 ? value.toFixed(1) : abs >= 1 ? value.toFixed(2) : value.toPrecision(3);
}

function fmtCount(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(2)}G`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  return String(Math.round(value));
}

const COLUMNS = [
  'preset', 'method', 'batch', 'context', 'page', 'kernel', 'splits', 'heads/wg', 'append µs', 'attn µs', 'fused µs', 'step µs', 'tok/s',
  'attn bytes', 'attn GB/s', '% probe', '× fp16', 'rot. %', 'B/token', 'tokens in budget',
] as const;

function row(r: PointResult): string[] {
  const p = r.point;
  const head = [MODEL_PRESETS[p.preset].name, r.variant, String(p.batch), String(p.context), String(p.pageSize)];
  const tail = [String(r.bytesPerToken), fmtCount(r.tokensInBudget)];
  if (r.status !== 'ok') {
    const why = r.status === 'skipped'
      ? `skipped: ${r.reason}${r.wouldFit ? ` (fits: context ≤ ${r.wouldFit.maxContextAtBatch} at batch ${p.batch}, or batch ≤ ${r.wouldFit.maxBatchAtContext} at context ${p.context})` : ''}`
      : `FAILED: ${r.error.split('\n')[0]}`;
    return [...head, why];
  }
  return [
    ...head,
    r.kernel,
    String(r.numSplits),
    String(r.headsPerWorkgroup),
    fmtSig(r.appendUs),
    fmtSig(r.attentionUs),
    r.fusedStepError !== null ? 'failed' : r.fusedStepUs === null ? '–' : `${fmtSig(r.fusedStepUs)}${r.fused ? '' : ' (off)'}`,
    fmtSig(r.stepUs),
    fmtCount(r.tokensPerSecond),
    formatBytes(r.attentionBytes),
    fmtSig(r.attentionGBps),
    fmt(r.attentionPctOfProbe, 1),
    r.speedupVsFp16 ? `${fmt(r.speedupVsFp16.step, 2)}` : '–',
    r.rotationOverheadPct ? `${r.rotationOverheadPct.step >= 0 ? '+' : ''}${fmt(r.rotationOverheadPct.step, 1)}` : '–',
    ...tail,
  ];
}

/** Aligns columns; a row shorter than the header (a skipped point) runs its last cell across. */
function alignTable(header: readonly string[], rows: string[][]): string {
  const full = rows.filter((r) => r.length === header.length);
  const widths = header.map((h, i) => Math.max(h.length, ...full.map((r) => r[i].length)));
  const numeric = (i: number) => i >= 2;
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (cells.length < header.length && i === cells.length - 1 ? c : numeric(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The CLI's text: a header (GPU, probe, floor), the table, then the notes. */
export function formatBenchTable(report: BenchReport): string {
  const probe = report.probe;
  const lines = [
    `GPU: ${report.gpu}`,
    `date: ${report.date}   timing: ${report.timingMethod}${report.quick ? '   (quick run)' : ''}`,
    `bandwidth probe: ${fmtSig(probe.gbps)} GB/s over ${probe.note} (median ${fmtSig(probe.timing.medianNs / 1e3)} µs, min ${fmtSig(probe.timing.minNs / 1e3)} µs)`,
    `empty dispatch (floor): median ${fmtSig(report.floor.medianNs / 1e3)} µs, min ${fmtSig(report.floor.minNs / 1e3)} µs (${report.floor.dispatchesPerSample} per timed pass)`,
    `dependent empty dispatch (each waits for the previous, as a step's append → attention → merge do): median ${fmtSig(report.dependentFloor.medianNs / 1e3)} µs, min ${fmtSig(report.dependentFloor.minNs / 1e3)} µs`,
    `tokens in budget: whole-model KV tokens in ${formatBytes(report.capacityBudgetBytes)}; points over ${formatBytes(report.maxCacheBytes)} of K+V are skipped`,
    '',
    alignTable(COLUMNS, report.points.map(row)),
    '',
    ...report.notes.map((n) => `note: ${n}`),
  ];
  return lines.join('\n');
}

/** One progress line for a finished point (the CLI prints it; the page may show it). */
export function formatProgress(done: number, total: number, r: PointResult): string {
  const p = r.point;
  const what = `${MODEL_PRESETS[p.preset].name} ${r.variant} batch ${p.batch} context ${p.context} page ${p.pageSize}`;
  const outcome = r.status === 'ok' ? `step ${fmtSig(r.stepUs)} µs, attention ${fmtSig(r.attentionGBps)} GB/s` : r.status === 'skipped' ? `skipped: ${r.reason}` : `FAILED: ${r.error.split('\n')[0]}`;
  return `[${done}/${total}] ${what}: ${outcome}`;
}
