/**
 * uPlot charts of the page: categories (one value per method: bars from zero on linear metrics,
 * dots on log ones, so no value hides on a log floor), lines (values over an x axis, one series per
 * method or variant, flat dashed reference levels) and scatter points (series of single points). Every
 * number plotted comes from the library (src/accuracy/chart-data.ts, the bench's points) or from
 * src/app/figures.ts; this module only draws.
 *
 * What a reader can check: tick labels are real numbers (1e-4, 0.01, 0.5: log axes label decades, or
 * 1-2-5 steps over a short span); categorical charts print each value by its bar or dot; the legend
 * follows the cursor with the hovered values; the paragraph `#<box id>-values` under a chart lists
 * every value; the chart box is an image whose aria-label holds the title and the same values. A series
 * may carry a spread around each value (min–max over repeats): drawn as a faint band and whiskers with
 * caps (dodged a few pixels per series so that whiskers at one x stay apart), and read "value (lo–hi)"
 * in the legend, the values list and the aria-label; the drawn whiskers are listed in the box's
 * `data-spread-whiskers` (canvas pixels) for tests.
 * Charts follow their container's width (ResizeObserver) and the page's text colour.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatNumber } from './tables';
import { formatTick, logRange, logTickValues } from './ticks';

/** Colour-blind-safe palette (Okabe–Ito). */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#7f7f7f', '#000000'];

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  /** Drawn dashed, without points (a reference level). */
  reference?: boolean;
  /** Points only, no line (scatter). */
  dots?: boolean;
  /** A dashed line through its points (a frontier), listed like any series. */
  dashed?: boolean;
  /** Text drawn next to each point (null: none). */
  pointLabels?: (string | null)[];
  /** Fixed colour (default: the palette in order). */
  color?: string;
  /** A range around each value (e.g. min–max over repeats), [values.length] each; null: none at that x. */
  spread?: { lo: (number | null)[]; hi: (number | null)[] };
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  /** x values (categories: ignored, they sit at 0, 1, …). */
  xs: number[];
  series: ChartSeries[];
  /** Log-2 x axis (block sizes, concurrency, context). */
  xLog?: boolean;
  /** Log-10 y axis (errors spanning decades); falls back to linear when a value is ≤ 0. */
  yLog?: boolean;
  /** A categorical chart with these labels on the x axis: bars (linear y) or dots (log y), values printed. */
  barLabels?: string[];
  /** Height in CSS pixels (default 260). */
  height?: number;
  /** Many x values (a timeline): uPlot's own x ticks instead of one per value, no point markers. */
  dense?: boolean;
  /** Linear y axes start here (counts, percentages) instead of near the smallest value. */
  yMin?: number;
  /** Fixed x range (a scatter over a known span). */
  xRange?: [number, number];
  /** The x entry of the legend (default: xLabel). */
  xLegend?: string;
  /** How x values read in the values list and the legend (default: the number). */
  xText?: (x: number) => string;
  /** How y values read (default: 4 significant digits). */
  yText?: (y: number) => string;
  /** What the series' spreads are, for the aria-label and values list ("min–max over 3 repeats"). */
  spreadLabel?: string;
}

/** Tick spacings of a dense x axis: whole numbers (steps), 1-2-5 per decade. */
const DENSE_X_INCREMENTS = Array.from({ length: 7 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();
/** Axis labels: a little smaller than uPlot's bold 12px default, so long metric names fit. */
const LABEL_FONT = '11px system-ui, sans-serif';
/** Printed values and point labels on the canvas (CSS pixels; scaled by the device pixel ratio). */
const VALUE_FONT_PX = 11;
/** Dots of categorical and scatter charts (CSS pixels). */
const DOT_SIZE = 11;
/** At most this many values in a chart's aria-label and values list per series (timelines are summarised). */
const MAX_LISTED_VALUES = 24;
/** Spread whiskers: half the cap's width, the line width, and the dodge between series at one x (CSS pixels). */
const WHISKER_CAP_PX = 4;
const WHISKER_WIDTH_PX = 1.5;
const WHISKER_DODGE_PX = 5;
/** Opacity of a spread's band (hex alpha appended to the series colour). */
const BAND_ALPHA = '2e';

/** "12.3 (11.9–12.5)": a value and its spread at index i, or the value alone. */
function withSpread(s: ChartSeries, i: number, v: number, yText: (y: number) => string): string {
  const lo = s.spread?.lo[i];
  const hi = s.spread?.hi[i];
  return lo !== null && lo !== undefined && hi !== null && hi !== undefined ? `${yText(v)} (${yText(lo)}–${yText(hi)})` : yText(v);
}

/** Smallest and largest finite spread bound of all series (null when none). */
function spreadExtent(spec: ChartSpec): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of spec.series) {
    for (const v of [...(s.spread?.lo ?? []), ...(s.spread?.hi ?? [])]) {
      if (v !== null && Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

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
  container.removeAttribute('aria-label');
  delete container.dataset.spreadWhiskers;
  const values = document.getElementById(`${container.id}-values`);
  if (values) values.textContent = '';
}

/** The values of `spec` as lines of text: one per category, or one per series (x → value). */
export function chartValues(spec: ChartSpec): string[] {
  const yText = spec.yText ?? ((y: number) => formatNumber(y, 3));
  const xText = spec.xText ?? ((x: number) => String(x));
  if (spec.barLabels && spec.series.length === 1) {
    return spec.barLabels.map((label, i) => `${label}: ${spec.series[0].values[i] === null ? '—' : yText(spec.series[0].values[i]!)}`);
  }
  return spec.series.filter((s) => !s.reference || s.values.some((v) => v !== null)).map((s) => {
    const points = s.values.flatMap((v, i) => (v === null ? [] : [`${spec.barLabels ? spec.barLabels[i] : xText(spec.xs[i])} → ${withSpread(s, i, v, yText)}`]));
    if (s.reference) return `${s.label}: ${points.length ? yText(s.values.find((v) => v !== null)!) : '—'}`;
    const listed = points.length > MAX_LISTED_VALUES
      ? `${points.length} points from ${points[0]} to ${points[points.length - 1]}`
      : points.join(', ') || '—';
    return `${s.label}: ${listed}`;
  });
}

/** y range with room for the data (spreads included): log: padded whole-ish decades; linear categories: from zero. */
function yRange(spec: ChartSpec, yLog: boolean, categorical: boolean): uPlot.Scale['range'] {
  const extent = spreadExtent(spec);
  const widen = (min: number | null, max: number | null): [number | null, number | null] =>
    extent ? [Math.min(min ?? extent[0], extent[0]), Math.max(max ?? extent[1], extent[1])] : [min, max];
  if (yLog) {
    return (_u, dataMin, dataMax) => {
      const [min, max] = widen(dataMin, dataMax);
      return min === null || max === null || !(min > 0) ? [min, max] : logRange(min, max);
    };
  }
  const floor = spec.yMin ?? (categorical ? 0 : undefined);
  if (floor === undefined) {
    if (!extent) return undefined;
    return (_u, dataMin, dataMax) => {
      const [min, max] = widen(dataMin, dataMax);
      return uPlot.rangeNum(min as number, max as number, 0.1, true);
    };
  }
  return (_u, dataMin, dataMax): uPlot.Range.MinMax => {
    const [min, max] = widen(dataMin, dataMax);
    const lo = Math.min(floor, min ?? floor);
    const hi = Math.max(max ?? floor + 1, lo);
    return [lo, hi === lo ? lo + 1 : hi + (hi - lo) * 0.12];
  };
}

/**
 * Draws each point's label (scatter) or printed value (categories) next to it on the canvas. Scatter
 * labels of points that share an x alternate right and left; one that would overlap a label already
 * drawn on its side is left out (the legend and the values list hold every point).
 */
function labelHook(spec: ChartSpec, ink: string, yText: (y: number) => string): (u: uPlot) => void {
  return (u) => {
    const ctx = u.ctx;
    const dpr = uPlot.pxRatio;
    const lineHeight = (VALUE_FONT_PX + 2) * dpr;
    ctx.save();
    ctx.font = `${VALUE_FONT_PX * dpr}px system-ui, sans-serif`;
    ctx.fillStyle = ink;
    const drawn = new Map<string, number[]>();
    const seenAtX = new Map<number, number>();
    spec.series.forEach((s) => {
      const printValues = spec.barLabels !== undefined && !s.reference;
      if (!printValues && !s.pointLabels) return;
      s.values.forEach((v, i) => {
        if (v === null) return;
        const text = s.pointLabels ? s.pointLabels[i] : yText(v);
        if (!text) return;
        const x = u.valToPos(u.data[0][i], 'x', true);
        const y = u.valToPos(v, 'y', true);
        if (s.pointLabels) {
          const nth = seenAtX.get(i) ?? 0;
          seenAtX.set(i, nth + 1);
          const right = nth % 2 === 0;
          const side = `${i}${right ? 'r' : 'l'}`;
          const taken = drawn.get(side) ?? [];
          if (taken.some((ty) => Math.abs(ty - y) < lineHeight)) return;
          drawn.set(side, [...taken, y]);
          ctx.textAlign = right ? 'left' : 'right';
          ctx.textBaseline = 'middle';
          ctx.fillText(text, x + (right ? 1 : -1) * (DOT_SIZE * 0.7 + 2) * dpr, y);
        } else {
          ctx.textAlign = 'center';
          ctx.textBaseline = 'bottom';
          ctx.fillText(text, x, Math.max(u.bbox.top + VALUE_FONT_PX * dpr, y - DOT_SIZE * 0.6 * dpr));
        }
      });
    });
    ctx.restore();
  };
}

/**
 * Draws each series' spread: a faint band between its bounds along x (line series), then at each x a
 * whisker from lo to hi with caps, dodged per series; lists the whiskers in `data-spread-whiskers`.
 */
function spreadHook(spec: ChartSpec, container: HTMLElement, colors: string[]): (u: uPlot) => void {
  return (u) => {
    const ctx = u.ctx;
    const dpr = uPlot.pxRatio;
    const withSpreads = spec.series.map((s, si) => ({ s, si })).filter(({ s }) => s.spread);
    const whiskers: { series: number; x: number; top: number; bottom: number }[] = [];
    ctx.save();
    // Clipped to the plot's height only: a dodged whisker at the first or last x may stand a few
    // pixels into the axis gutter, as the point markers do.
    ctx.beginPath();
    ctx.rect(0, u.bbox.top, u.ctx.canvas.width, u.bbox.height);
    ctx.clip();
    withSpreads.forEach(({ s, si }, k) => {
      const { lo, hi } = s.spread!;
      const color = colors[si];
      const at = (i: number) => lo[i] !== null && hi[i] !== null && Number.isFinite(lo[i]) && Number.isFinite(hi[i]);
      if (!s.dots && spec.barLabels === undefined) {
        // The band: along the hi bounds, back along the lo bounds, for each run of consecutive points.
        ctx.fillStyle = `${color}${BAND_ALPHA}`;
        let run: number[] = [];
        const flush = () => {
          if (run.length > 1) {
            ctx.beginPath();
            run.forEach((i, j) => (j === 0 ? ctx.moveTo : ctx.lineTo).call(ctx, u.valToPos(u.data[0][i], 'x', true), u.valToPos(hi[i]!, 'y', true)));
            [...run].reverse().forEach((i) => ctx.lineTo(u.valToPos(u.data[0][i], 'x', true), u.valToPos(lo[i]!, 'y', true)));
            ctx.closePath();
            ctx.fill();
          }
          run = [];
        };
        s.values.forEach((_, i) => (at(i) ? run.push(i) : flush()));
        flush();
      }
      const dodge = (k - (withSpreads.length - 1) / 2) * WHISKER_DODGE_PX * dpr;
      const cap = WHISKER_CAP_PX * dpr;
      ctx.strokeStyle = color;
      ctx.lineWidth = WHISKER_WIDTH_PX * dpr;
      s.values.forEach((v, i) => {
        if (v === null || !at(i)) return;
        const x = Math.round(u.valToPos(u.data[0][i], 'x', true) + dodge);
        const top = u.valToPos(hi[i]!, 'y', true);
        const bottom = u.valToPos(lo[i]!, 'y', true);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, bottom);
        ctx.moveTo(x - cap, top);
        ctx.lineTo(x + cap, top);
        ctx.moveTo(x - cap, bottom);
        ctx.lineTo(x + cap, bottom);
        ctx.stroke();
        whiskers.push({ series: si, x, top: Math.round(top), bottom: Math.round(bottom) });
      });
    });
    ctx.restore();
    container.dataset.spreadWhiskers = JSON.stringify(whiskers);
  };
}

/** Draws `spec` into `container`, replacing its previous chart. */
export function renderChart(container: HTMLElement, spec: ChartSpec): uPlot {
  clearChart(container);
  const ink = getComputedStyle(container).color || '#222';
  const grid = { stroke: 'rgba(128, 128, 128, 0.25)', width: 1 };
  const categorical = spec.barLabels !== undefined;
  const n = categorical ? spec.barLabels!.length : spec.xs.length;
  const xs = categorical ? spec.barLabels!.map((_, i) => i) : spec.xs;
  const positive = spec.series.every((s) => [...s.values, ...(s.spread?.lo ?? []), ...(s.spread?.hi ?? [])].every((v) => v === null || v > 0));
  const yLog = Boolean(spec.yLog) && positive;
  const narrow = plotWidth(container) < 480;
  const yText = spec.yText ?? ((y: number) => formatNumber(y, 3));
  const xText = spec.xText ?? ((x: number) => String(x));

  const series: uPlot.Series[] = [{
    label: spec.xLegend ?? spec.xLabel,
    value: (_u, v) => (v === null || v === undefined ? '' : categorical ? (spec.barLabels![v] ?? '') : xText(v)),
  }];
  const colors = spec.series.map((s, i) => s.color ?? PALETTE[i % PALETTE.length]);
  spec.series.forEach((s, i) => {
    const color = colors[i];
    // Empty until the cursor is over the chart: the legend then reads the hovered values (and spreads).
    const value = (_u: uPlot, v: number | null, _si: number, idx: number | null) => (v === null || v === undefined ? '' : idx === null ? yText(v) : withSpread(s, idx, v, yText));
    if (categorical && !yLog && !s.reference) {
      series.push({
        label: s.label, value, stroke: color, fill: `${color}b3`, width: 1,
        paths: uPlot.paths.bars!({ size: [0.6, 80] }),
        points: { show: false },
        fillTo: 0,
      });
    } else if ((categorical && !s.reference) || s.dots) {
      series.push({
        label: s.label, value, stroke: color, width: 0,
        paths: () => null,
        points: { show: true, size: DOT_SIZE, width: 1.5, fill: `${color}cc`, stroke: color },
      });
    } else {
      series.push({
        label: s.label, value, stroke: color,
        width: s.reference || s.dashed ? 1.5 : 2,
        dash: s.reference || s.dashed ? [6, 4] : undefined,
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
    grid: { ...grid, show: !categorical },
    ticks: { ...grid },
  };
  if (categorical) {
    const long = narrow || labels.some((l) => l.length > 8);
    Object.assign(xAxis, {
      splits: () => xs,
      values: (_u: uPlot, splits: number[]) => splits.map((i) => labels[i] ?? ''),
      rotate: long ? -30 : 0,
      size: long ? 80 : 40,
    });
  } else if (spec.dense || spec.xRange) {
    Object.assign(xAxis, { incrs: DENSE_X_INCREMENTS, values: (_u: uPlot, splits: number[]) => splits.map((v) => formatTick(v)) });
  } else {
    Object.assign(xAxis, { splits: () => xs, values: (_u: uPlot, splits: number[]) => splits.map((v) => xText(v)) });
  }
  const yAxis: uPlot.Axis = {
    label: spec.yLabel, labelFont: LABEL_FONT, labelSize: 24, stroke: ink, grid, ticks: grid, size: 64,
    values: (u: uPlot, splits: number[]) => (yLog ? logTickValues(splits, u.scales.y.min!, u.scales.y.max!) : splits.map((v) => formatTick(v))),
  };

  const options: uPlot.Options = {
    title: spec.title,
    width: plotWidth(container),
    height: spec.height ?? 260,
    series,
    legend: { show: true, live: true },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: categorical
        ? { time: false, range: () => [-0.5, n - 0.5] }
        : spec.xRange
          ? { time: false, range: () => spec.xRange! }
          : { time: false, distr: spec.xLog ? 3 : 1, log: 2 },
      y: { distr: yLog ? 3 : 1, log: 10, range: yRange(spec, yLog, categorical) },
    },
    axes: [xAxis, yAxis],
    hooks: {
      draw: [
        ...(spec.series.some((s) => s.spread) ? [spreadHook(spec, container, colors)] : []),
        labelHook(spec, ink, yText),
        // The drawn y range, for readers and tests: every value lies inside it.
        (u) => {
          container.dataset.yMin = String(u.scales.y.min);
          container.dataset.yMax = String(u.scales.y.max);
          container.dataset.yLog = String(yLog);
        },
      ],
    },
  };
  const data: uPlot.AlignedData = [xs, ...spec.series.map((s) => s.values.map((v) => (v !== null && Number.isFinite(v) ? v : null)))];
  const plot = new uPlot(options, data, container);

  const values = chartValues(spec);
  container.setAttribute('role', 'img');
  container.setAttribute('aria-label', `${spec.title}.${spec.spreadLabel ? ` Values with their ${spec.spreadLabel} in parentheses.` : ''} ${values.join('; ')}.`);
  const list = document.getElementById(`${container.id}-values`);
  if (list) list.textContent = (spec.spreadLabel ? `In parentheses: ${spec.spreadLabel}. ` : '') + values.join(' · ');

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
