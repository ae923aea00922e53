/**
 * The demo page's entry: opens the GPU, wires the controls (kept in the URL) to the accuracy,
 * throughput, serving and model runs (one at a time), fills the headline card and the result sections as
 * rows arrive, and explains failures. No numeric logic lives in src/app beyond the two figures of
 * figures.ts: the page calls the same library functions as the CLI (runAccuracy, runDecodeBench,
 * runSimulateSweep, generateGreedy, runPerplexity, the chart series).
 */
import type { AccuracyReport } from '../accuracy/accuracy-lab';
import type { KvData } from '../accuracy/kv-file';
import type { SkippedPoint } from '../bench/decode-step-bench';
import { GpuError, openGpu, type GpuContext } from '../gpu/gpu-context';
import { TensorFileError } from '../io/safetensors';
import { drawAccuracyCharts, initAccuracyMetricSelect, runAccuracyPanel, showAccuracy, showAccuracyWorkload, type ReportState } from './accuracy-panel';
import { drawBenchCharts, initBenchMetricSelect, runBenchPanel, showBench, type BenchResult } from './bench-panel';
import { accuracyMethodIds, benchMethods, configFromQuery, type AppConfig } from './config';
import { Controls } from './controls';
import { byId, el } from './dom';
import { clearError, explainError, fieldsForError, isAbort, showError, type ErrorScope } from './errors';
import { FileSource } from './file-source';
import { ModelControls, runModelGeneration, runModelPerplexity } from './model-panel';
import { modelSettingsFromQuery, modelSettingsToQuery } from './model-settings';
import { selfCheck, showGpu, showNoGpu } from './gpu-panel';
import { finishHeadline, headlineAccuracy, headlineBench, startHeadline, type HeadlinePlan } from './headline';
import { servingConfigFromQuery, servingConfigToQuery } from './serving-config';
import { runServingPanel, ServingControls, showServing } from './serving-panel';
import { clearFlags, fieldLabel, flagFields, showBlocked, type Problem } from './validation';

type RunKind = 'accuracy' | 'bench' | 'both' | 'serving' | 'model' | 'model-ppl';
type MainKind = 'accuracy' | 'bench' | 'both';

const isMainKind = (kind: RunKind): kind is MainKind => kind === 'accuracy' || kind === 'bench' || kind === 'both';
const isModelKind = (kind: RunKind) => kind === 'model' || kind === 'model-ppl';

/** Where a run reports: the progress row and Cancel button of its own section. */
const TARGETS = {
  main: { bar: 'progress', text: 'progress-text', cancel: 'cancel' },
  serving: { bar: 'sim-progress', text: 'sim-progress-text', cancel: 'sim-cancel' },
  model: { bar: 'model-progress', text: 'model-progress-text', cancel: 'model-cancel' },
} as const;
type Target = (typeof TARGETS)[keyof typeof TARGETS];

let ctx: GpuContext | null = null;
let fileData: KvData | null = null;
let fileName: string | null = null;
let running: AbortController | null = null;
let lastAccuracy: AccuracyReport | null = null;
let accuracyState: ReportState | null = null;
let lastBench: BenchResult | null = null;
let target: Target = TARGETS.main;
/** The error panel shows a file or configuration error, which the next change of the settings makes stale. */
let errorIsAboutSettings = false;

const errorPanel = byId('error-panel');
const runButtons = { 'run-accuracy': 'accuracy', 'run-bench': 'bench', 'run-both': 'both', 'sim-run': 'serving', 'model-run': 'model', 'model-ppl': 'model-ppl' } as const;

/**
 * The model section writes the URL this long after its last keystroke: a prompt is typed a character
 * at a time, and browsers throw past a rate of replaceState calls (Safari: 100 in 30 s).
 */
const MODEL_URL_DELAY_MS = 300;
let modelUrlTimer: ReturnType<typeof setTimeout> | undefined;

const parsed = configFromQuery(location.search);
const parsedServing = servingConfigFromQuery(location.search);
const parsedModel = modelSettingsFromQuery(location.search);
// First: the other forms' change handlers read its problems.
const modelControls = new ModelControls(parsedModel.settings, () => {
  clearStaleError();
  updateRunButtons();
  clearTimeout(modelUrlTimer);
  modelUrlTimer = setTimeout(() => controls.writeUrl(), MODEL_URL_DELAY_MS);
});
// The serving plan depends on the run section's model and page size; the URL holds every form.
const controls: Controls = new Controls(parsed.config, () => onSettingsChange(), () => `${servingConfigToQuery(serving.config)}${modelSettingsToQuery(modelControls.settings)}`);
const serving: ServingControls = new ServingControls(parsedServing.config, () => controls.config, () => {
  controls.writeUrl();
  onSettingsChange(false);
});
const warnings = [...parsed.warnings, ...parsedServing.warnings, ...parsedModel.warnings];
if (warnings.length) {
  const notice = byId('url-notice');
  notice.replaceChildren(...warnings.map((w) => el('p', {}, w)));
  notice.hidden = false;
}

/** Shows an error; a setting it names is highlighted and focused (instead of the panel). */
function report(error: unknown, scope: ErrorScope): void {
  const explained = explainError(error, ctx);
  const fields = fieldsForError(error, scope);
  if (fields.length && explained.title === 'This configuration is not supported') {
    explained.help = [`Change the highlighted setting (${fields.map(fieldLabel).join(', ')}) and run again.`];
  }
  if (scope === 'model' && explained.title === 'Too big for this GPU') {
    explained.help = ["The model's weights and its small KV cache must fit this adapter's buffer limits (listed under “Your GPU”); fewer tokens to generate shrink only the cache. Try a browser or device with a larger storage-buffer limit."];
  }
  showError(errorPanel, explained, () => void recover());
  errorIsAboutSettings = error instanceof TensorFileError || fields.length > 0;
  if (fields.length) flagFields(fields);
}

function clearStaleError(): void {
  if (errorIsAboutSettings && !errorPanel.hidden) clearError(errorPanel);
  errorIsAboutSettings = false;
}

/** The run section's settings (or, with `runSection` false, the serving section's) changed. */
function onSettingsChange(runSection = true): void {
  if (runSection) serving.describe();
  clearStaleError();
  updateRunButtons();
}

new FileSource(
  {
    onData(data, name, how) {
      fileData = data;
      fileName = name;
      controls.setFile(data && name ? { name, numQueryHeads: data.numQueryHeads, numKvHeads: data.numKvHeads, headDim: data.headDim } : null, how === 'removed');
      if (how !== 'failed') clearStaleError();
    },
    onError: (e) => report(e, 'run'),
  },
  () => controls.config.seed,
);

/** The problems that keep each run button disabled. */
function blockers(): Record<RunKind, Problem[]> {
  const main = controls.problems;
  const servingUses = (p: Problem) => p.field === 'seed';
  return {
    both: main,
    accuracy: main,
    bench: main.filter((p) => p.blocks !== 'accuracy'),
    serving: [...serving.problems, ...main.filter(servingUses)],
    model: modelControls.problems,
    'model-ppl': [],
  };
}

/** Enables what may run now: a GPU, no run in progress, and no problem in the settings it uses. */
function updateRunButtons(): void {
  const busy = running !== null;
  const ready = ctx !== null && ctx.lostReason === null;
  const blocked = blockers();
  for (const [id, kind] of Object.entries(runButtons)) {
    byId<HTMLButtonElement>(id).disabled = busy || !ready || blocked[kind].length > 0;
  }
  showBlocked('run-blocked', blocked.both);
  showBlocked('sim-blocked', blocked.serving);
  showBlocked('model-blocked', blocked.model);
}

function setBusy(busy: boolean): void {
  updateRunButtons();
  for (const t of Object.values(TARGETS)) byId<HTMLButtonElement>(t.cancel).hidden = !busy || t !== target;
  controls.setDisabled(busy);
  serving.setDisabled(busy);
  modelControls.setDisabled(busy);
}

function progress(value: number | null, max: number, text: string): void {
  const bar = byId<HTMLProgressElement>(target.bar);
  bar.hidden = false;
  bar.max = max;
  if (value === null) bar.removeAttribute('value');
  else bar.value = value;
  byId(target.text).textContent = text;
}

/** What the headline of a run of `kind` quotes. */
function headlinePlan(kind: RunKind, config: AppConfig): HeadlinePlan {
  const ids = accuracyMethodIds(config, controls.accuracyHeadDim);
  const chosen = `int4-hadamard-b${config.block}${config.rotateV ? '-kv' : ''}`;
  return {
    accuracy: kind === 'accuracy' || kind === 'both',
    bench: kind === 'bench' || kind === 'both',
    hadamardId: ids.includes(chosen) ? chosen : (ids.find((id) => id.startsWith('int4-hadamard')) ?? null),
    int4: ids.includes('int4'),
    hadamardVariant: benchMethods(config).find((m) => m.startsWith('int4-hadamard')) ?? null,
    seqs: config.seqs,
    context: config.context,
    data: controls.useFile ? `your file ${fileName}` : `${config.workload} (${config.seqs} × ${config.context} tokens)`,
  };
}

/** After a cancelled or failed run, the rows it finished stay, marked as partial. */
function keepPartialResults(): void {
  if (lastAccuracy && accuracyState === 'running') {
    accuracyState = 'partial';
    showAccuracy(lastAccuracy, 'partial');
  }
  if (lastBench && !lastBench.report) showBench(lastBench, true);
}

async function runMain(kind: MainKind, gpu: GpuContext, config: AppConfig, signal: AbortSignal): Promise<void> {
  startHeadline(headlinePlan(kind, config), gpu);
  // A run replaces the results of the last one: its sections reappear as this run fills them.
  byId('accuracy-results').hidden = true;
  byId('bench-results').hidden = true;
  lastAccuracy = null;
  accuracyState = null;
  lastBench = null;
  if (kind === 'accuracy' || kind === 'both') {
    accuracyState = 'running';
    const final = await runAccuracyPanel(gpu, config, controls.useFile ? fileData : null, signal, progress, {
      onWorkload: (workload) => showAccuracyWorkload(workload, config.block),
      onRows: (rows) => {
        lastAccuracy = rows;
        showAccuracy(rows, 'running');
        headlineAccuracy(rows.methods);
      },
    });
    lastAccuracy = final;
    accuracyState = 'complete';
    showAccuracy(final, 'complete');
    headlineAccuracy(final.methods);
  }
  if (kind === 'bench' || kind === 'both') {
    const final = await runBenchPanel(gpu, config, signal, progress, (partial) => {
      lastBench = partial;
      showBench(partial);
      headlineBench(partial.points);
    });
    lastBench = final;
    showBench(final);
    headlineBench(final.points);
  }
}

/** " N of M throughput points were skipped (…)" when the bench skipped some (their rows say why and what fits). */
function skippedNote(bench: BenchResult | null): string {
  const points = bench?.points ?? [];
  const skipped = points.filter((p): p is SkippedPoint => p.status === 'skipped');
  if (skipped.length === 0) return '';
  const which = skipped.length === points.length ? 'Every throughput point was' : `${skipped.length} of ${points.length} throughput points were`;
  return ` ${which} skipped (${skipped[0].reason}); the table's Status column says what fits.`;
}

async function run(kind: RunKind): Promise<void> {
  if (!ctx || running) return;
  clearError(errorPanel);
  clearFlags();
  const controller = new AbortController();
  running = controller;
  target = kind === 'serving' ? TARGETS.serving : isModelKind(kind) ? TARGETS.model : TARGETS.main;
  // The clicked button is disabled during the run: keep keyboard focus on something useful.
  const trigger = document.activeElement instanceof HTMLButtonElement ? document.activeElement : null;
  setBusy(true);
  if (trigger) byId(target.cancel).focus();
  const config = controls.config;
  const modelSettings = modelControls.settings;
  controls.writeUrl();
  const started = performance.now();
  try {
    if (kind === 'serving') showServing(await runServingPanel(ctx, config, serving.config, controller.signal, progress));
    else if (kind === 'model') await runModelGeneration(ctx, modelSettings, modelControls, controller.signal, progress);
    else if (kind === 'model-ppl') await runModelPerplexity(ctx, modelControls, controller.signal, progress);
    else await runMain(kind, ctx, config, controller.signal);
    if (isMainKind(kind)) finishHeadline('done');
    progress(1, 1, `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.${kind === 'bench' || kind === 'both' ? skippedNote(lastBench) : ''}`);
  } catch (e) {
    if (isMainKind(kind)) {
      keepPartialResults();
      finishHeadline(isAbort(e) ? 'cancelled' : 'failed');
    }
    if (isAbort(e)) {
      const kept = kind === 'serving' ? 'A sweep shows its results when every run is done.' : isModelKind(kind) ? 'The methods that finished stay below.' : 'The rows that finished stay below.';
      progress(0, 1, `Cancelled. ${kept}`);
    } else {
      progress(0, 1, 'The run stopped with an error (see above).');
      report(e, kind === 'serving' ? 'serving' : isModelKind(kind) ? 'model' : 'run');
    }
  } finally {
    running = null;
    setBusy(false);
    const lost = document.activeElement === document.body || document.activeElement?.id === target.cancel;
    if (trigger && lost && errorPanel.hidden) trigger.focus();
  }
}

for (const [id, kind] of Object.entries(runButtons)) byId(id).addEventListener('click', () => void run(kind));
for (const t of Object.values(TARGETS)) {
  byId(t.cancel).addEventListener('click', () => {
    running?.abort();
    byId(t.text).textContent = t === TARGETS.serving ? 'Cancelling after the current run (method × cap)…' : t === TARGETS.model ? 'Cancelling after the current token…' : 'Cancelling after the current step…';
  });
}
initAccuracyMetricSelect(() => lastAccuracy && drawAccuracyCharts(lastAccuracy));
initBenchMetricSelect(() => lastBench && lastBench.points.length && drawBenchCharts(lastBench));

function onDeviceLost(reason: string): void {
  running?.abort();
  report(new GpuError(reason, 'device-lost'), 'run');
  setBusy(running !== null);
}

async function open(): Promise<void> {
  ctx = await openGpu(navigator.gpu, { onDeviceLost });
  showGpu(ctx);
  setBusy(false);
  await selfCheck(ctx);
}

/** Re-opens the device after a loss; the user can run again. */
async function recover(): Promise<void> {
  clearError(errorPanel);
  ctx = null;
  setBusy(false);
  try {
    await open();
    byId('progress-text').textContent = 'GPU device re-opened: you can run again.';
  } catch (e) {
    report(e, 'run');
  }
}

async function main(): Promise<void> {
  setBusy(false);
  try {
    await open();
  } catch (e) {
    const explained = explainError(e, ctx);
    showNoGpu(e instanceof GpuError && e.kind === 'no-webgpu' ? `${explained.title}: ${explained.message}` : `Error: ${explained.message}`);
    report(e, 'run');
  }
}

void main();
