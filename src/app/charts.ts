/**
 * uPlot charts of the page: bars (one value per method) and lines (values over an x axis, one
 * series per method or variant, flat dashed reference levels). Every number plotted comes from the
 * library (src/accuracy/chart-data.ts, the bench's points); this module only draws. Charts follow
 * their container's width (ResizeObserver) and the page's text colour (light and dark schemes).
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Colour-blind-safe palette (Okabe–Ito). */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#7f7f7f', '#000000'];

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  /** Drawn dashed, without points (a reference level). */
  reference?: boolean;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  /** x values (bars: ignored, the bars sit at 0, 1, …). */
  xs: number[];
  series: ChartSeries[];
  /** Log-2 x axis (block sizes, concurrency, context). */
  xLog?: boolean;
  /** Log-10 y axis (errors spanning decades); falls back to linear when a value is ≤ 0. */
  yLog?: boolean;
  /** A bar chart with these labels under the bars. */
  barLabels?: string[];
  /** Height in CSS pixels (default 260). */
  height?: number;
  /** Many x values (a timeline): uPlot's own x ticks instead of one per value, no point markers. */
  dense?: boolean;
  /** Linear y axes start here (counts, percentages) instead of near the smallest value. */
  yMin?: number;
}

/** Tick spacings of a dense x axis: whole numbers (steps), 1-2-5 per decade. */
const DENSE_X_INCREMENTS = Array.from({ length: 7 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

/** Axis labels: a little smaller than uPlot's bold 12px default, so long metric names fit. */
const LABEL_FONT = '11px system-ui, sans-serif';

interface Mounted {
  plot: uPlot;
  observer: ResizeObserver;
}

const mounted = new WeakMap<HTMLElement, Mounted>();

function plotWidth(container: HTMLElement): number {
  return Math.max(240, Math.floor(container.clientWidth || container.getBoundingClientRect().width || 320));
}

/** Removes the chart in `container`, if any. */
export function clearChart(container: HTMLElement): void {
  const old = mounted.get(container);
  if (old) {
    old.observer.disconnect();
    old.plot.destroy();
    mounted.delete(container);
  }
  container.replaceChildren();
}

/** Draws `spec` into `container`, replacing its previous chart. */
export function renderChart(container: HTMLElement, spec: ChartSpec): uPlot {
  clearChart(container);
  const ink = getComputedStyle(container).color || '#222';
  const grid = { stroke: 'rgba(128, 128, 128, 0.25)', width: 1 };
  const bars = spec.barLabels !== undefined;
  const n = bars ? spec.barLabels!.length : spec.xs.length;
  const xs = bars ? spec.barLabels!.map((_, i) => i) : spec.xs;
  const positive = spec.series.every((s) => s.values.every((v) => v === null || v > 0));
  const yLog = Boolean(spec.yLog) && positive;
  const narrow = plotWidth(container) < 480;

  const series: uPlot.Series[] = [{ label: spec.xLabel }];
  spec.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    if (bars) {
      series.push({
        label: s.label,
        stroke: color,
        fill: `${color}b3`,
        width: 1,
        paths: uPlot.paths.bars!({ size: [0.6, 80] }),
        points: { show: false },
        fillTo: (u) => (yLog ? (u.scales.y.min ?? 0) : 0),
      });
    } else {
      series.push({
        label: s.label,
        stroke: color,
        width: s.reference ? 1.5 : 2,
        dash: s.reference ? [6, 4] : undefined,
        points: { show: !s.reference && !spec.dense, size: 7 },
        spanGaps: true,
      });
    }
  });

  const labels = spec.barLabels ?? [];
  const xAxis: uPlot.Axis = {
    label: spec.xLabel,
    labelFont: LABEL_FONT,
    stroke: ink,
    grid: { ...grid, show: !bars },
    ticks: { ...grid },
  };
  if (bars) {
    Object.assign(xAxis, {
      splits: () => xs,
      values: (_u: uPlot, splits: number[]) => splits.map((i) => labels[i] ?? ''),
      rotate: narrow || labels.some((l) => l.length > 8) ? -30 : 0,
      size: narrow || labels.some((l) => l.length > 8) ? 80 : 40,
    });
  } else if (spec.dense) {
    Object.assign(xAxis, { incrs: DENSE_X_INCREMENTS });
  } else {
    Object.assign(xAxis, { splits: () => xs, values: (_u: uPlot, splits: number[]) => splits.map((v) => String(v)) });
  }

  const options: uPlot.Options = {
    title: spec.title,
    width: plotWidth(container),
    height: spec.height ?? 260,
    series,
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: bars
        ? { time: false, range: () => [-0.5, n - 0.5] }
        : { time: false, distr: spec.xLog ? 3 : 1, log: 2 },
      y: {
        distr: yLog ? 3 : 1,
        log: 10,
        ...(spec.yMin !== undefined && !yLog ? { range: (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [spec.yMin!, Math.max(max * 1.05, spec.yMin! + 1)] } : {}),
      },
    },
    axes: [xAxis, { label: spec.yLabel, labelFont: LABEL_FONT, labelSize: 24, stroke: ink, grid, ticks: grid, size: 64 }],
  };
  const data: uPlot.AlignedData = [xs, ...spec.series.map((s) => s.values.map((v) => (v !== null && Number.isFinite(v) ? v : null)))];
  const plot = new uPlot(options, data, container);

  let lastWidth = plotWidth(container);
  const observer = new ResizeObserver(() => {
    const width = plotWidth(container);
    if (width !== lastWidth) {
      lastWidth = width;
      plot.setSize({ width, height: spec.height ?? 260 });
    }
  });
  observer.observe(container);
  mounted.set(container, { plot, observer });
  return plot;
}
