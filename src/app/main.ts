/**
 * The demo page's entry: opens the GPU, wires the controls (kept in the URL) to the accuracy,
 * throughput and serving runs (one at a time), and explains failures. No numeric logic lives in
 * src/app: the page calls the same library functions as the CLI (runAccuracy, runDecodeBench,
 * runSimulateSweep, the chart series).
 */
import type { AccuracyReport } from '../accuracy/accuracy-lab';
import type { KvData } from '../accuracy/kv-file';
import { GpuError, openGpu, type GpuContext } from '../gpu/gpu-context';
import { drawAccuracyCharts, initAccuracyMetricSelect, runAccuracyPanel, showAccuracy } from './accuracy-panel';
import { drawBenchCharts, initBenchMetricSelect, runBenchPanel, showBench, type BenchResult } from './bench-panel';
import { configFromQuery } from './config';
import { Controls } from './controls';
import { byId, el } from './dom';
import { clearError, explainError, isAbort, showError } from './errors';
import { FileSource } from './file-source';
import { selfCheck, showGpu, showNoGpu } from './gpu-panel';
import { servingConfigFromQuery, servingConfigToQuery } from './serving-config';
import { runServingPanel, ServingControls, showServing } from './serving-panel';

type RunKind = 'accuracy' | 'bench' | 'both' | 'serving';

/** Where a run reports: the progress row and Cancel button of its own section. */
const TARGETS = {
  main: { bar: 'progress', text: 'progress-text', cancel: 'cancel' },
  serving: { bar: 'sim-progress', text: 'sim-progress-text', cancel: 'sim-cancel' },
} as const;
type Target = (typeof TARGETS)[keyof typeof TARGETS];

let ctx: GpuContext | null = null;
let fileData: KvData | null = null;
let running: AbortController | null = null;
let lastAccuracy: AccuracyReport | null = null;
let lastBench: BenchResult | null = null;
let target: Target = TARGETS.main;

const errorPanel = byId('error-panel');
const runButtons = ['run-accuracy', 'run-bench', 'run-both', 'sim-run'].map((id) => byId<HTMLButtonElement>(id));

const parsed = configFromQuery(location.search);
const parsedServing = servingConfigFromQuery(location.search);
// The serving plan depends on section 3's model and page size; the URL holds both forms.
const controls: Controls = new Controls(parsed.config, () => serving.describe(), () => servingConfigToQuery(serving.config));
const serving: ServingControls = new ServingControls(parsedServing.config, () => controls.config, () => controls.writeUrl());
const warnings = [...parsed.warnings, ...parsedServing.warnings];
if (warnings.length) {
  const notice = byId('url-notice');
  notice.replaceChildren(...warnings.map((w) => el('p', {}, w)));
  notice.hidden = false;
}

function report(error: unknown): void {
  showError(errorPanel, explainError(error, ctx), () => void recover());
}

new FileSource(
  {
    onData(data, name) {
      fileData = data;
      controls.setFile(name);
    },
    onError: report,
  },
  () => controls.config.seed,
);

function setBusy(busy: boolean): void {
  for (const b of runButtons) b.disabled = busy || ctx === null || ctx.lostReason !== null;
  for (const t of Object.values(TARGETS)) byId<HTMLButtonElement>(t.cancel).hidden = !busy || t !== target;
  controls.setDisabled(busy);
  serving.setDisabled(busy);
}

function progress(value: number | null, max: number, text: string): void {
  const bar = byId<HTMLProgressElement>(target.bar);
  bar.hidden = false;
  bar.max = max;
  if (value === null) bar.removeAttribute('value');
  else bar.value = value;
  byId(target.text).textContent = text;
}

async function run(kind: RunKind): Promise<void> {
  if (!ctx || running) return;
  clearError(errorPanel);
  const controller = new AbortController();
  running = controller;
  target = kind === 'serving' ? TARGETS.serving : TARGETS.main;
  // The clicked button is disabled during the run: keep keyboard focus on something useful.
  const trigger = document.activeElement instanceof HTMLButtonElement ? document.activeElement : null;
  setBusy(true);
  if (trigger) byId(target.cancel).focus();
  const config = controls.config;
  controls.writeUrl();
  const started = performance.now();
  try {
    if (kind === 'serving') {
      showServing(await runServingPanel(ctx, config, serving.config, controller.signal, progress));
    }
    if (kind === 'accuracy' || kind === 'both') {
      lastAccuracy = await runAccuracyPanel(ctx, config, controls.useFile ? fileData : null, controller.signal, progress);
      showAccuracy(lastAccuracy);
    }
    if (kind === 'bench' || kind === 'both') {
      lastBench = await runBenchPanel(ctx, config, controller.signal, progress);
      showBench(lastBench);
    }
    progress(1, 1, `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
  } catch (e) {
    if (isAbort(e)) {
      progress(0, 1, kind === 'serving' ? 'Cancelled. A sweep shows its results when every run is done.' : 'Cancelled. Results of the finished runs stay below.');
    } else {
      progress(0, 1, 'The run stopped with an error (see above).');
      report(e);
    }
  } finally {
    running = null;
    setBusy(false);
    const lost = document.activeElement === document.body || document.activeElement?.id === target.cancel;
    if (trigger && lost && errorPanel.hidden) trigger.focus();
  }
}

byId('run-accuracy').addEventListener('click', () => void run('accuracy'));
byId('run-bench').addEventListener('click', () => void run('bench'));
byId('run-both').addEventListener('click', () => void run('both'));
byId('sim-run').addEventListener('click', () => void run('serving'));
for (const t of Object.values(TARGETS)) {
  byId(t.cancel).addEventListener('click', () => {
    running?.abort();
    byId(t.text).textContent = t === TARGETS.serving ? 'Cancelling after the current run (method × cap)…' : 'Cancelling after the current step…';
  });
}
initAccuracyMetricSelect(() => lastAccuracy && drawAccuracyCharts(lastAccuracy));
initBenchMetricSelect(() => lastBench && drawBenchCharts(lastBench));

function onDeviceLost(reason: string): void {
  running?.abort();
  report(new GpuError(reason, 'device-lost'));
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
    report(e);
  }
}

async function main(): Promise<void> {
  setBusy(false);
  try {
    await open();
  } catch (e) {
    const explained = explainError(e, ctx);
    showNoGpu(e instanceof GpuError && e.kind === 'no-webgpu' ? `${explained.title}: ${explained.message}` : `Error: ${explained.message}`);
    report(e);
  }
}

void main();
