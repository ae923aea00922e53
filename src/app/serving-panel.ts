/**
 * The serving section: continuous batching of many requests over ONE paged cache per method, sized
 * by the same memory budget, through the real kernels (the library's runSimulateSweep, as the
 * `simulate` CLI runs it), every (method, cap) repeated. Its controls live in the URL next to the run
 * section's; its results are a fits table, three uPlot charts (tokens/s vs concurrency cap, the median
 * with min–max whiskers over the repeats; pages in use and running sequences per step at the largest
 * cap, the same in every repeat), a sortable table of the runs and JSON/CSV downloads.
 */
import type { GpuContext } from '../gpu/gpu-context';
import { formatBytes } from '../kernels/gpu-buffers';
import type { KvMethod } from '../layout';
import { REGIMES, type RegimeName } from '../serving/requests';
import { checkServingBudget } from '../serving/simulator';
import { simulateReportJson } from '../serving/simulate-report';
import type { Spread } from '../serving/repeat-spread';
import { runSimulateSweep, type SimulateMethodResult, type SimulateResult, type SimulateRun } from '../serving/simulate-sweep';
import type { ProgressFn } from './accuracy-panel';
import { renderChart, type ChartSeries } from './charts';
import type { AppConfig } from './config';
import { byId, el, emptyReason, plural } from './dom';
import { throwIfAborted } from './errors';
import { fileStamp, showDownloads, toCsv } from './export';
import { noPlanText, showFieldProblem, type Problem } from './validation';
import {
  MAX_BUDGET_MIB, MAX_CAP, MAX_CAPS, MAX_SERVING_REPEATS, MAX_SERVING_STEPS, parseBudgetMib, parseCaps, parseRepeats, parseSteps, scaleText, servingBudgetBytes, servingFits,
  servingHadamardBlock, SERVING_METHODS, SERVING_SCALES, servingLengths, servingModel, servingSweepOptions, type ServingConfig,
} from './serving-config';
import { formatNumber, renderTable, type Column } from './tables';

const input = (id: string) => byId<HTMLInputElement>(id);
const select = (id: string) => byId<HTMLSelectElement>(id);

/** The serving form: shows a configuration, reads it back on every change, says what a run will do. */
export class ServingControls {
  private current: ServingConfig;
  /** Fields that cannot be read (from read()). */
  private fieldProblems: Problem[] = [];
  /** The budget holds no page of some method (from describe(): depends on the run section's model). */
  private budgetTooSmall: Problem | null = null;

  /**
   * @param app the run section's configuration (model shape, page size, seed)
   * @param onChange called after every accepted change (main.ts writes the URL)
   */
  constructor(initial: ServingConfig, private readonly app: () => AppConfig, private readonly onChange: () => void) {
    this.current = { ...initial, caps: [...initial.caps], methods: [...initial.methods] };
    select('sim-regime').replaceChildren(...Object.values(REGIMES).map((r) => el('option', { value: r.name }, `${r.name}: ${r.description}`)));
    input('sim-budget').max = String(MAX_BUDGET_MIB);
    this.show();
    const form = byId<HTMLFormElement>('serving-controls');
    form.addEventListener('change', () => this.read());
    form.addEventListener('input', (e) => {
      if ((e.target as HTMLElement).matches('input:not([type=checkbox])')) this.read();
    });
    form.addEventListener('submit', (e) => e.preventDefault());
  }

  get config(): ServingConfig {
    return { ...this.current, caps: [...this.current.caps], methods: [...this.current.methods] };
  }

  /** What keeps the serving run from starting (empty: it may run). */
  get problems(): Problem[] {
    return [...this.fieldProblems, ...(this.budgetTooSmall ? [this.budgetTooSmall] : [])];
  }

  setDisabled(disabled: boolean): void {
    byId<HTMLFieldSetElement>('serving-fieldset').disabled = disabled;
  }

  private show(): void {
    const c = this.current;
    select('sim-regime').value = c.regime;
    input('sim-budget').value = String(c.budgetMib);
    input('sim-caps').value = c.caps.join(',');
    input('sim-steps').value = String(c.steps);
    input('sim-repeats').value = String(c.repeats);
    for (const m of SERVING_METHODS) input(`sim-method-${m}`).checked = c.methods.includes(m);
    this.fillScales();
    this.describe();
  }

  /** Scale options with the lengths each gives in the chosen regime (from the library). */
  private fillScales(): void {
    const regime = this.current.regime;
    select('sim-scale').replaceChildren(...SERVING_SCALES.map((s) => {
      const { promptLen, outputLen } = servingLengths({ ...this.current, regime, scale: s });
      return el('option', { value: String(s) }, `×${scaleText(s)}: ${promptLen} in / ${outputLen} out`);
    }));
    select('sim-scale').value = String(this.current.scale);
  }

  /**
   * Reads the form; an invalid field says why under it, leaves its value as it was and is listed in
   * `problems` (which disable the run: nothing runs with a value other than the one shown).
   */
  private read(): void {
    const next: ServingConfig = { ...this.current };
    next.regime = select('sim-regime').value as RegimeName;
    next.scale = Number(select('sim-scale').value);
    const problems: Problem[] = [];
    const field = <T>(id: string, parse: (text: string) => T | null, apply: (value: T) => void, expected: string) => {
      const text = input(id).value.trim();
      const value = parse(text);
      const message = value === null ? `${expected} (${text === '' ? emptyReason(input(id)) : `got ${JSON.stringify(text)}`}).` : null;
      showFieldProblem(id, message);
      if (message) problems.push({ field: id, message, blocks: 'serving' });
      if (value !== null) apply(value);
    };
    field('sim-budget', parseBudgetMib, (v) => (next.budgetMib = v), `KV budget must be a number of MiB above 0 and at most ${MAX_BUDGET_MIB}`);
    field('sim-caps', parseCaps, (v) => (next.caps = v), `Concurrency caps must be a comma list of at most ${MAX_CAPS} whole numbers from 1 to ${MAX_CAP}`);
    field('sim-steps', parseSteps, (v) => (next.steps = v), `Steps per run must be a whole number from 0 to ${MAX_SERVING_STEPS.toLocaleString('en')}`);
    field('sim-repeats', parseRepeats, (v) => (next.repeats = v), `Repeats must be a whole number from 1 to ${MAX_SERVING_REPEATS}`);
    const methods = SERVING_METHODS.filter((m) => input(`sim-method-${m}`).checked);
    const noMethod = methods.length === 0 ? 'Tick at least one method.' : null;
    showFieldProblem('sim-methods', noMethod);
    if (noMethod) problems.push({ field: 'sim-methods', message: noMethod, blocks: 'serving' });
    if (methods.length) next.methods = methods;
    const regimeChanged = next.regime !== this.current.regime;
    this.current = next;
    this.fieldProblems = problems;
    if (regimeChanged) this.fillScales();
    this.describe();
    this.onChange();
  }

  /**
   * Whether the budget buys a pool the library accepts for every method (at least one page, at most
   * its page cap), checked as the sweep will check it; the library's message if not.
   */
  private budgetProblem(): string | null {
    const app = this.app();
    const model = servingModel(app);
    try {
      for (const method of this.current.methods) {
        checkServingBudget({ model, method, budgetBytes: servingBudgetBytes(this.current), pageSize: app.pageSize, hadamardBlock: servingHadamardBlock(model) });
      }
      return null;
    } catch (e) {
      return `KV budget cannot be used: ${e instanceof Error ? e.message : String(e)}.`;
    }
  }

  /**
   * The plan of a run: model, lengths, and how many requests each method's pool holds (library
   * arithmetic); called again when the run section's model or page size changes.
   */
  describe(): void {
    const c = this.current;
    const app = this.app();
    const model = servingModel(app);
    const { promptLen, outputLen } = servingLengths(c);
    const budgetUnreadable = this.fieldProblems.some((p) => p.field === 'sim-budget');
    const tooSmall = budgetUnreadable ? null : this.budgetProblem();
    this.budgetTooSmall = tooSmall ? { field: 'sim-budget', message: tooSmall, blocks: 'serving' } : null;
    if (!budgetUnreadable) showFieldProblem('sim-budget', tooSmall);
    if (tooSmall) {
      byId('sim-plan').textContent = `${plural(c.methods.length, 'method')} × ${plural(c.caps.length, 'cap')}: no plan until the budget holds a page of every method.`;
      return;
    }
    if (this.fieldProblems.length) {
      byId('sim-plan').textContent = noPlanText(this.fieldProblems.length);
      return;
    }
    const fits = servingFits(app, c);
    const none = fits.filter((f) => f.fits === 0).map((f) => f.method);
    byId('sim-plan').textContent =
      `${plural(c.methods.length, 'method')} × ${plural(c.caps.length, 'cap')} (${c.caps.join(', ')}) = ${plural(c.methods.length * c.caps.length, 'run')} of ` +
      `${c.steps === 0 ? 'as many steps as it takes' : `${c.steps} steps`}${c.repeats > 1 ? `, each repeated ${c.repeats} times (the plot shows the spread)` : ', each run once (no spread)'}, ` +
      `${2 * Math.max(...c.caps)} requests of ${promptLen} in / ${outputLen} out, ` +
      `one layer of ${model.name} (page ${app.pageSize}, from the run settings above). ` +
      `${c.budgetMib} MiB per layer holds ${fits.map((f) => `${f.method} ${f.pages} pages = ${f.fits} requests`).join(', ')} at full length. ` +
      `For all ${model.numLayers} layers: ×${model.numLayers} memory and step time, tokens/s ÷${model.numLayers}.` +
      (none.length ? ` No ${none.join(' or ')} request fits: raise the budget or lower the scale.` : '');
  }
}

/** Runs the sweep; `signal` is checked after each repeat of each (method, cap) run. */
export async function runServingPanel(ctx: GpuContext, app: AppConfig, config: ServingConfig, signal: AbortSignal, progress: ProgressFn): Promise<SimulateResult> {
  const options = { ...servingSweepOptions(app, config), checkpoint: () => throwIfAborted(signal) };
  const total = options.methods.length * options.caps.length;
  let done = 0;
  progress(null, total, `Serving: ${options.methods[0]}: building the cache, warming up, cap ${options.caps[0]}…`);
  throwIfAborted(signal);
  return runSimulateSweep(ctx, options, (line) => {
    done++;
    throwIfAborted(signal);
    progress(done, total, `Serving: ${line} (run ${done} of ${total})`);
  });
}

function runAt(m: SimulateMethodResult, cap: number): SimulateRun | undefined {
  return m.runs.find((r) => r.cap === cap);
}

const num = (digits = 4) => (v: number | string | null) => formatNumber(v, digits);
const percent = (v: number | string | null) => (typeof v === 'number' ? `${(100 * v).toFixed(0)}%` : formatNumber(v));
const finite = (v: number) => (Number.isFinite(v) ? v : null);
/** (max − min) / 2 / median: the spread over the repeats as a ± fraction of the median (null when the median is 0). */
const halfRange = (s: Spread) => (s.median > 0 ? (s.max - s.min) / 2 / s.median : null);
const plusMinus = (v: number | string | null) => (typeof v === 'number' ? `±${(100 * v).toFixed(v < 0.1 ? 1 : 0)}%` : formatNumber(v));

export const FITS_COLUMNS: Column<SimulateMethodResult>[] = [
  { key: 'method', label: 'Method', value: (m) => m.method },
  { key: 'pages', label: 'Pages', title: 'Pages of the pool the budget buys', value: (m) => m.numPages },
  { key: 'bytes_per_token', label: 'Bytes / token', title: 'One token in the simulated layer: K and V, all kv heads, scale/min included', value: (m) => m.bytesPerToken },
  { key: 'pool_bytes', label: 'Pool', title: 'K and V pools together (≤ the budget)', value: (m) => m.poolBytes, format: (v) => (typeof v === 'number' ? formatBytes(v) : formatNumber(v)) },
  { key: 'pool_buffers', label: 'Buffers / pool', title: 'Storage buffers each of the K and V pools spans (more than one when a pool is larger than one binding)', value: (m) => m.poolBuffers },
  { key: 'fits_at_full_length', label: 'Requests that fit', title: 'Requests whose whole context (prompt + output) fits the pool at once', value: (m) => m.fitsAtFullLength },
];

interface RunRow {
  method: KvMethod;
  run: SimulateRun;
}

/**
 * The runs table: the key columns first; `more` ones in the second table; method and cap in both.
 * GPU figures are medians over the repeats; "tok/s ±" gives the spread of decode tokens/s (the plot
 * draws it); the CSV also has its min and max as numbers, and the repeat count.
 */
export const SERVING_COLUMNS: Column<RunRow>[] = [
  { key: 'method', label: 'Method', value: (r) => r.method, both: true },
  { key: 'cap', label: 'Cap', title: 'Concurrency cap: the most requests running at once', value: (r) => r.run.cap, both: true },
  { key: 'steps', label: 'Steps', value: (r) => r.run.summary.steps, more: true },
  { key: 'finished', label: 'Finished', value: (r) => r.run.summary.finished },
  { key: 'refused', label: 'Refused', title: 'Requests whose whole context exceeds the pool', value: (r) => r.run.summary.refused, more: true },
  { key: 'preemptions', label: 'Preempted', title: 'Evictions (youngest first) when decoding ran out of pages; recomputed later', value: (r) => r.run.summary.preemptions },
  { key: 'peak_running', label: 'Peak running', value: (r) => r.run.summary.peakRunning, more: true },
  { key: 'mean_decode_batch', label: 'Mean batch', title: 'Mean sequences per decode step', value: (r) => r.run.summary.meanDecodeBatch, format: num(3) },
  { key: 'decode_tokens', label: 'Output tokens', value: (r) => r.run.summary.decodeTokens, more: true },
  { key: 'decode_tokens_per_s', label: 'Decode tok/s', title: 'Output tokens / GPU time of the decode steps (append + attention), one layer: the median over the repeats', value: (r) => r.run.spread.decodeTokensPerSec.median, format: num() },
  { key: 'decode_tokens_per_s_spread', label: 'tok/s ±', title: 'Half the min–max range of decode tok/s over the repeats, relative to the median (the plot draws the range)', value: (r) => halfRange(r.run.spread.decodeTokensPerSec), format: plusMinus },
  { key: 'decode_tokens_per_s_min', label: 'Decode tok/s min', title: 'The slowest repeat', value: (r) => r.run.spread.decodeTokensPerSec.min, format: num(), csvOnly: true },
  { key: 'decode_tokens_per_s_max', label: 'Decode tok/s max', title: 'The fastest repeat', value: (r) => r.run.spread.decodeTokensPerSec.max, format: num(), csvOnly: true },
  { key: 'repeats', label: 'Repeats', title: 'Runs of this method and cap (the same schedule and data)', value: (r) => r.run.repeats.length, csvOnly: true },
  { key: 'output_tokens_per_s', label: 'End-to-end tok/s', title: 'Output tokens / all GPU time, prefill cache writes included, one layer (median over the repeats)', value: (r) => r.run.spread.outputTokensPerSec.median, format: num(), more: true },
  { key: 'median_step_us', label: 'Median step µs', title: 'GPU time of one decode step: append + attention, one layer; the median over the repeats', value: (r) => r.run.spread.medianDecodeStepNs.median / 1e3, format: num() },
  { key: 'append_ms', label: 'Append ms', title: "Decode tokens' cache writes, summed over the run (median over the repeats)", value: (r) => r.run.spread.decodeAppendNs.median / 1e6, format: num(), more: true },
  { key: 'attention_ms', label: 'Attention ms', title: 'Paged decode attention, summed over the run (median over the repeats)', value: (r) => r.run.spread.attentionNs.median / 1e6, format: num(), more: true },
  { key: 'prefill_ms', label: 'Prefill ms', title: 'Prompt cache writes (no prefill attention is simulated), summed over the run (median over the repeats)', value: (r) => r.run.spread.prefillNs.median / 1e6, format: num(), more: true },
  { key: 'mean_page_fraction', label: 'Pages (mean)', title: 'Mean fraction of the pool in use', value: (r) => r.run.summary.meanPageFraction, format: percent, more: true },
  { key: 'peak_page_fraction', label: 'Pages (peak)', value: (r) => r.run.summary.peakPageFraction, format: percent },
  { key: 'slot_utilisation', label: 'Slots used', title: 'Tokens / allocated page slots (1 − internal fragmentation), mean', value: (r) => r.run.summary.meanSlotUtilisation, format: percent, more: true },
  { key: 'recomputed_tokens', label: 'Recomputed', title: 'Tokens re-prefilled after preemption', value: (r) => r.run.summary.recomputedTokens, more: true },
  { key: 'mean_latency_steps', label: 'Latency (steps)', title: 'Mean steps from arrival to finish, finished requests only', value: (r) => finite(r.run.summary.meanLatencySteps), format: num(3) },
];

/** One line per method over the caps: decode output tokens/s of one layer, the median with min–max over the repeats. */
function throughputSeries(result: SimulateResult): ChartSeries[] {
  return result.methods.map((m) => {
    const at = (f: (s: Spread) => number) => result.caps.map((cap) => {
      const run = runAt(m, cap);
      return run ? f(run.spread.decodeTokensPerSec) : null;
    });
    return { label: m.method, values: at((s) => s.median), ...(result.repeats > 1 ? { spread: { lo: at((s) => s.min), hi: at((s) => s.max) } } : {}) };
  });
}

/** Per step at the largest cap, one line per method (steps the run did not reach are gaps). */
function timeline(result: SimulateResult, cap: number, value: (s: SimulateRun['steps'][number]) => number, label: (m: SimulateMethodResult) => string) {
  const runs = result.methods.map((m) => ({ m, run: runAt(m, cap) }));
  const longest = runs.reduce((n, { run }) => Math.max(n, run?.steps.length ?? 0), 0);
  const xs = Array.from({ length: longest }, (_, i) => i);
  return { xs, series: runs.map(({ m, run }): ChartSeries => ({ label: label(m), values: xs.map((i) => (run?.steps[i] ? value(run.steps[i]) : null)) })) };
}

export function drawServingCharts(result: SimulateResult): void {
  const model = result.model.name;
  renderChart(byId('sim-chart-throughput'), {
    title: `${model}, one layer: decode output tokens/s vs concurrency cap${result.repeats > 1 ? `, median and min–max of ${result.repeats} repeats` : ''}`,
    ...(result.repeats > 1 ? { spreadLabel: `min–max over ${result.repeats} repeats` } : {}),
    xLabel: 'concurrency cap (requests)',
    yLabel: 'tokens/s (one layer)',
    xs: result.caps,
    xLog: true,
    yLog: true,
    series: throughputSeries(result),
  });
  const cap = Math.max(...result.caps);
  const pages = timeline(result, cap, (s) => 100 * s.pageFraction, (m) => `${m.method} (${m.numPages} pages)`);
  renderChart(byId('sim-chart-pages'), { title: `Pages in use per step, cap ${cap}`, xLabel: 'step', yLabel: '% of the pool', dense: true, yMin: 0, ...pages });
  const running = timeline(result, cap, (s) => s.running, (m) => m.method);
  running.series.push({ label: `cap ${cap}`, values: running.xs.map(() => cap), reference: true });
  renderChart(byId('sim-chart-running'), { title: `Running sequences per step, cap ${cap}`, xLabel: 'step', yLabel: 'running requests', dense: true, yMin: 0, ...running });
}

export function showServing(result: SimulateResult): void {
  byId('serving-results').hidden = false;
  const m = result.model;
  byId('sim-summary').replaceChildren(
    el('li', {}, `${result.workload}; ${result.requests.count} requests at step 0; ONE layer of ${m.name} (Hq ${m.numQueryHeads}, Hkv ${m.numKvHeads}, D ${m.headDim}), page ${result.pageSize}, Hadamard block ${result.hadamardBlock}.`),
    el('li', {}, `Budget ${formatBytes(result.budgetBytes)} per layer, ${formatBytes(result.budgetBytes * m.numLayers)} for the model's ${m.numLayers} layers; ${result.maxSteps > 0 ? `at most ${result.maxSteps} steps per run` : 'each run until every request is done'}; ` +
      `${result.repeats > 1 ? `every run repeated ${result.repeats} times: GPU figures are medians, with their min–max` : 'every run once: no spread measured'}.`),
    el('li', {}, `GPU time: ${result.timingMethod === 'timestamp' ? 'GPU timestamps' : 'wall clock'}${result.timingFallbackReason ? ` (${result.timingFallbackReason})` : ''}, on ${result.adapter}.`),
    el('li', {}, el('details', { class: 'notes' }, el('summary', {}, 'How to read these numbers'), el('ul', {}, ...result.notes.map((n) => el('li', {}, n))))),
  );
  renderTable(byId('sim-fits'), 'What the budget holds per method (click a header to sort)', FITS_COLUMNS, result.methods);
  drawServingCharts(result);
  const rows = result.methods.flatMap((x) => x.runs.map((run): RunRow => ({ method: x.method, run })));
  renderTable(byId('sim-table'), 'Runs: one per method and concurrency cap (click a header to sort)', SERVING_COLUMNS, rows);
  const stamp = fileStamp();
  showDownloads(byId('sim-downloads'), [
    { label: 'Download JSON', fileName: `serving-${stamp}.json`, mime: 'application/json', text: simulateReportJson(result) },
    { label: 'Download CSV', fileName: `serving-${stamp}.csv`, mime: 'text/csv', text: toCsv(SERVING_COLUMNS, rows) },
  ]);
}
