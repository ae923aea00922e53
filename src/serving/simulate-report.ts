/**
 * Text tables and JSON of a `simulate` result (src/serving/simulate-sweep.ts). Pure formatting; no GPU.
 *
 * Tables: the pool each method gets from the budget (and the buffers it spans) and how many requests
 * fit; decode output tokens/s against the concurrency cap, median [min–max] over the repeats, with the
 * ratios the paper's claim is about (int4-hadamard / int4 ≈ 1 at every cap; int4 / fp16 > 1 where KV
 * memory binds; ratios of medians); per-run totals (the median repeat's, step time with its spread);
 * page utilisation over time at the largest cap.
 */
import { formatBytes } from '../kernels/gpu-buffers';
import type { KvMethod } from '../layout';
import type { SimulateMethodResult, SimulateResult, SimulateRun } from './simulate-sweep';
import type { Spread } from './repeat-spread';
import type { StepRecord } from './simulator';

/** Rows of the utilisation timeline. */
const TIMELINE_ROWS = 12;

/** 1234567 → "1.23M", 12345 → "12.3k". */
export function formatRate(perSec: number): string {
  if (!Number.isFinite(perSec)) return String(perSec);
  if (perSec >= 1e9) return `${(perSec / 1e9).toFixed(2)}G`;
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(2)}M`;
  if (perSec >= 1e3) return `${(perSec / 1e3).toFixed(1)}k`;
  return perSec.toFixed(0);
}

function pct(x: number): string {
  return `${(100 * x).toFixed(0)}%`;
}

/** Left-aligned first column, right-aligned others, two spaces between. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

function runAt(m: SimulateMethodResult | undefined, cap: number): SimulateRun | undefined {
  return m?.runs.find((r) => r.cap === cap);
}

/** The record covering scheduler step `step` (records are in step order; an idle gap is one record), or undefined. */
export function recordAtStep(records: readonly StepRecord[], step: number): StepRecord | undefined {
  let lo = 0;
  let hi = records.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = records[mid];
    if (step < r.step) hi = mid - 1;
    else if (step >= r.step + (r.span ?? 1)) lo = mid + 1;
    else return r;
  }
  return undefined;
}

function ratio(a: SimulateRun | undefined, b: SimulateRun | undefined): string {
  if (!a || !b || !(b.spread.decodeTokensPerSec.median > 0)) return '-';
  return `${(a.spread.decodeTokensPerSec.median / b.spread.decodeTokensPerSec.median).toFixed(2)}×`;
}

/** "12.3k [11.9k–12.5k]": a median and its range over the repeats (the median alone for one repeat). */
export function formatSpread(s: Spread, format: (v: number) => string, repeats: number): string {
  return repeats > 1 ? `${format(s.median)} [${format(s.min)}–${format(s.max)}]` : format(s.median);
}

/** The whole report as text. */
export function formatSimulateReport(r: SimulateResult): string {
  const byMethod = new Map<KvMethod, SimulateMethodResult>(r.methods.map((m) => [m.method, m]));
  const m = r.model;
  const out: string[] = [];
  out.push('Serving simulation: continuous batching over the paged KV cache');
  out.push(`adapter: ${r.adapter}; GPU time: ${r.timingMethod}${r.timingFallbackReason ? ` (${r.timingFallbackReason})` : ''}`);
  out.push(`workload: ${r.workload}; ${r.requests.count} requests, mean ${r.requests.meanPromptLen.toFixed(0)} in / ${r.requests.meanOutputLen.toFixed(0)} out${r.requests.lastArrivalStep > 0 ? `, arrivals until step ${r.requests.lastArrivalStep}` : ', all at step 0'}`);
  out.push(`model: ONE layer of ${m.name} (Hq ${m.numQueryHeads}, Hkv ${m.numKvHeads}, D ${m.headDim}; the model has ${m.numLayers} layers), page ${r.pageSize} tokens, Hadamard block ${r.hadamardBlock}`);
  out.push(
    `budget: ${formatBytes(r.budgetBytes)} of KV cache for the layer (≈ ${formatBytes(r.budgetBytes * m.numLayers)} for ${m.numLayers} layers); ` +
      `prefill chunk ${r.scheduler.prefillChunkTokens} tokens/sequence${r.scheduler.prefillTokensPerStep !== undefined ? `, ≤ ${r.scheduler.prefillTokensPerStep} tokens/step` : ''}; ` +
      `reserve ${r.scheduler.reservePages ?? 0} pages; ${r.maxSteps > 0 ? `≤ ${r.maxSteps} steps per run` : 'runs until every request is done'}`,
  );
  out.push(
    r.repeats > 1
      ? `repeats: ${r.repeats} of every run (same schedule and data); timed figures are medians, [min–max] over the repeats (quartiles and every repeat in the JSON)`
      : 'repeats: 1 (no spread measured; --repeats 3 or more shows it)',
  );
  out.push('');
  out.push(
    ...table(
      ['method', 'pages', 'bytes/token', 'pool', 'buffers/pool', 'fits at full length'],
      r.methods.map((x) => [
        x.method, String(x.numPages), String(x.bytesPerToken), formatBytes(x.poolBytes),
        x.poolBuffers > 1 ? `${x.poolBuffers} × ≤ ${x.pagesPerBuffer} pages` : '1', String(x.fitsAtFullLength),
      ]),
    ),
  );
  out.push('');
  out.push(`Decode output tokens/s of one layer${r.repeats > 1 ? `, median [min–max over ${r.repeats} repeats]` : ''} (mean decode batch) vs concurrency cap; ÷${m.numLayers} for the whole model`);
  const ratioColumns: [string, KvMethod, KvMethod][] = [];
  if (byMethod.has('int4-hadamard') && byMethod.has('int4')) ratioColumns.push(['hadamard/int4', 'int4-hadamard', 'int4']);
  if (byMethod.has('int4') && byMethod.has('fp16')) ratioColumns.push(['int4/fp16', 'int4', 'fp16']);
  if (byMethod.has('int4-hadamard') && byMethod.has('fp16')) ratioColumns.push(['hadamard/fp16', 'int4-hadamard', 'fp16']);
  out.push(
    ...table(
      ['cap', ...r.methods.map((x) => x.method), ...ratioColumns.map(([name]) => name)],
      r.caps.map((cap) => [
        String(cap),
        ...r.methods.map((x) => {
          const run = runAt(x, cap);
          return run ? `${formatSpread(run.spread.decodeTokensPerSec, formatRate, r.repeats)} (${run.summary.meanDecodeBatch.toFixed(1)})` : '-';
        }),
        ...ratioColumns.map(([, a, b]) => ratio(runAt(byMethod.get(a), cap), runAt(byMethod.get(b), cap))),
      ]),
    ),
  );
  out.push('');
  const anyIdle = r.methods.some((x) => x.runs.some((run) => run.summary.idleSteps > 0));
  out.push(`Runs (${r.repeats > 1 ? 'GPU figures are medians over the repeats; ' : ''}pages: mean / peak fraction of the pool in use; slots: tokens / allocated slots; GPU ms summed over the run;`);
  out.push(`      append = decode tokens' cache writes; median step = append + attention of one decode step${r.repeats > 1 ? ' [min–max over the repeats]' : ''}; e2e = output tokens / all GPU time` +
    (anyIdle ? ';\n      idle = steps with nothing running, e.g. waiting for an arrival: skipped, no GPU work)' : ')'));
  out.push(
    ...table(
      ['method', 'cap', 'steps', ...(anyIdle ? ['idle'] : []), 'finished', 'refused', 'preempted', 'peak running', 'pages', 'slots', 'prefill ms', 'append ms', 'attention ms', 'median step µs', 'e2e tok/s'],
      r.methods.flatMap((x) =>
        x.runs.map(({ cap, summary: s, spread }) => [
          x.method,
          String(cap),
          String(s.steps),
          ...(anyIdle ? [String(s.idleSteps)] : []),
          `${s.finished}/${s.requests}`,
          String(s.refused),
          String(s.preemptions),
          String(s.peakRunning),
          `${pct(s.meanPageFraction)} / ${pct(s.peakPageFraction)}`,
          pct(s.meanSlotUtilisation),
          (spread.prefillNs.median / 1e6).toFixed(2),
          (spread.decodeAppendNs.median / 1e6).toFixed(2),
          (spread.attentionNs.median / 1e6).toFixed(2),
          formatSpread(spread.medianDecodeStepNs, (ns) => (ns / 1e3).toFixed(1), r.repeats),
          formatRate(spread.outputTokensPerSec.median),
        ]),
      ),
    ),
  );
  const refusals = [...new Set(r.methods.flatMap((x) => x.runs.flatMap((run) => run.summary.refusedReasons.map((reason) => `${x.method}: ${reason}`))))];
  if (refusals.length) {
    out.push('');
    out.push('Refused:');
    for (const line of refusals.slice(0, 6)) out.push(`  ${line}`);
    if (refusals.length > 6) out.push(`  … ${refusals.length - 6} more`);
  }
  const cap = r.caps.reduce((m, c) => Math.max(m, c), 0);
  const runs = r.methods.map((x) => runAt(x, cap));
  const longest = runs.reduce((n, run) => Math.max(n, run?.summary.steps ?? 0), 0);
  if (longest > 0) {
    out.push('');
    out.push(`Page utilisation over time at cap ${cap}: running/waiting requests, pages in use, slot utilisation`);
    const stride = Math.max(1, Math.ceil(longest / TIMELINE_ROWS));
    const rows: string[][] = [];
    for (let step = 0; step < longest; step += stride) {
      rows.push([
        String(step),
        ...runs.map((run) => {
          const s = run && recordAtStep(run.steps, step);
          if (!s) return '-';
          return s.running === 0 && s.waiting === 0 ? 'idle' : `${s.running}/${s.waiting} ${pct(s.pageFraction)} ${pct(s.slotUtilisation)}`;
        }),
      ]);
    }
    out.push(...table(['step', ...r.methods.map((x) => x.method)], rows));
  }
  out.push('');
  for (const note of r.notes) out.push(`note: ${note}`);
  return out.join('\n');
}

/** The result as pretty JSON (the step records included). */
export function simulateReportJson(r: SimulateResult): string {
  return JSON.stringify(r, (_key, value) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 1);
}
