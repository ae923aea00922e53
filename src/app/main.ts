/**
 * The demo page's entry: opens the GPU, wires the controls (kept in the URL) to the accuracy and
 * throughput runs, and explains failures. No numeric logic lives in src/app: the page calls the
 * same library functions as the CLI (runAccuracy, runDecodeBench, the chart series).
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

type RunKind = 'accuracy' | 'bench' | 'both';

let ctx: GpuContext | null = null;
let fileData: KvData | null = null;
let running: AbortController | null = null;
let lastAccuracy: AccuracyReport | null = null;
let lastBench: BenchResult | null = null;

const errorPanel = byId('error-panel');
const runButtons = ['run-accuracy', 'run-bench', 'run-both'].map((id) => byId<HTMLButtonElement>(id));

const parsed = configFromQuery(location.search);
const controls = new Controls(parsed.config, () => undefined);
if (parsed.warnings.length) {
  const notice = byId('url-notice');
  notice.replaceChildren(...parsed.warnings.map((w) => el('p', {}, w)));
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
  byId<HTMLButtonElement>('cancel').hidden = !busy;
  controls.setDisabled(busy);
}

function progress(value: number | null, max: number, text: string): void {
  const bar = byId<HTMLProgressElement>('progress');
  bar.hidden = false;
  bar.max = max;
  if (value === null) bar.removeAttribute('value');
  else bar.value = value;
  byId('progress-text').textContent = text;
}

async function run(kind: RunKind): Promise<void> {
  if (!ctx || running) return;
  clearError(errorPanel);
  const controller = new AbortController();
  running = controller;
  // The clicked button is disabled during the run: keep keyboard focus on something useful.
  const trigger = document.activeElement instanceof HTMLButtonElement ? document.activeElement : null;
  setBusy(true);
  if (trigger) byId('cancel').focus();
  const config = controls.config;
  controls.writeUrl();
  const started = performance.now();
  try {
    if (kind !== 'bench') {
      lastAccuracy = await runAccuracyPanel(ctx, config, controls.useFile ? fileData : null, controller.signal, progress);
      showAccuracy(lastAccuracy);
    }
    if (kind !== 'accuracy') {
      lastBench = await runBenchPanel(ctx, config, controller.signal, progress);
      showBench(lastBench);
    }
    progress(1, 1, `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
  } catch (e) {
    if (isAbort(e)) {
      progress(0, 1, 'Cancelled. Results of the finished runs stay below.');
    } else {
      progress(0, 1, 'The run stopped with an error (see above).');
      report(e);
    }
  } finally {
    running = null;
    setBusy(false);
    const lost = document.activeElement === document.body || document.activeElement?.id === 'cancel';
    if (trigger && lost && errorPanel.hidden) trigger.focus();
  }
}

byId('run-accuracy').addEventListener('click', () => void run('accuracy'));
byId('run-bench').addEventListener('click', () => void run('bench'));
byId('run-both').addEventListener('click', () => void run('both'));
byId('cancel').addEventListener('click', () => {
  running?.abort();
  byId('progress-text').textContent = 'Cancelling after the current step…';
});
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
