/**
 * The `simulate` experiment: for each KV method, ONE PagedKvCache sized by the same memory budget,
 * and for each concurrency cap one continuous-batching run of the same request stream over it.
 * Library code for Node and the browser; src/serving/simulate-report.ts formats the result.
 */
import { KvConfigError } from '../cache/paged-kv-cache';
import { formatBytes } from '../kernels/gpu-buffers';
import { cacheLayout, type KvMethod } from '../layout';
import { describeGpu, type GpuContext } from '../gpu/gpu-context';
import type { ServingRequest } from './requests';
import type { SchedulerConfig } from './scheduler';
import { estimateSweepSize, SimulateLimitError, type SweepSize } from './simulate-limits';
import { concurrencyThatFits, createServingCache, pagesForServingBudget, ServingSimulator, type ModelShape, type RunSummary, type StepRecord } from './simulator';
import type { StepTimingMethod } from './step-timer';

export interface SimulateSweepOptions {
  model: ModelShape;
  methods: readonly KvMethod[];
  /** KV-cache bytes of the simulated layer. */
  budgetBytes: number;
  /** Concurrency caps, one run each. */
  caps: readonly number[];
  /** Steps per run (0: until every request finished or was refused). */
  maxSteps: number;
  requests: readonly ServingRequest[];
  /** What the stream is, for the report (e.g. "regime short (256 in / 1k out) ×1/16: 16 in / 64 out"). */
  workload: string;
  pageSize: number;
  hadamardBlock: number;
  prefillChunkTokens: number;
  prefillTokensPerStep?: number;
  reservePages: number;
  dataSeed?: number;
  /** Steps of a discarded run per method before the measured ones (default 2). */
  warmupSteps?: number;
  timing?: StepTimingMethod | 'auto';
  /**
   * Step records all runs together may keep (default: no limit): the hard limit behind the host-memory
   * estimate (simulate-limits.ts maxStepRecordsFor); a run that needs more throws SimulateLimitError.
   */
  maxStepRecords?: number;
}

export interface SimulateRun {
  cap: number;
  summary: RunSummary;
  steps: StepRecord[];
}

export interface SimulateMethodResult {
  method: KvMethod;
  numPages: number;
  /** Bytes one token takes in the simulated layer (K and V, all kv heads, scale/min). */
  bytesPerToken: number;
  /** Bytes of the K and V pools together (≤ the budget). */
  poolBytes: number;
  /** Requests of mean length whose whole context fits the pool at once. */
  fitsAtFullLength: number;
  runs: SimulateRun[];
}

export interface SimulateResult {
  kind: 'simulate';
  /** 2: step records carry `span` (an idle gap is one record); summaries carry `idleSteps`. */
  version: 2;
  adapter: string;
  timingMethod: StepTimingMethod;
  timingFallbackReason?: string;
  model: ModelShape;
  workload: string;
  requests: { count: number; meanPromptLen: number; meanOutputLen: number; maxPromptLen: number; maxOutputLen: number; lastArrivalStep: number };
  budgetBytes: number;
  pageSize: number;
  hadamardBlock: number;
  scheduler: Omit<SchedulerConfig, 'maxRunning'>;
  maxSteps: number;
  caps: number[];
  methods: SimulateMethodResult[];
  /** What the numbers mean and what is scaled. */
  notes: string[];
}

/** Mean of `f` over the requests (0 for none). */
function mean(requests: readonly ServingRequest[], f: (r: ServingRequest) => number): number {
  return requests.length ? requests.reduce((n, r) => n + f(r), 0) / requests.length : 0;
}

export function checkSweepOptions(o: SimulateSweepOptions): void {
  if (o.methods.length === 0) throw new RangeError('simulate needs at least one method');
  if (o.caps.length === 0) throw new RangeError('simulate needs at least one concurrency cap');
  for (const cap of o.caps) if (!Number.isSafeInteger(cap) || cap < 1) throw new RangeError(`concurrency caps must be integers ≥ 1, got ${cap}`);
  if (!(o.budgetBytes > 0)) throw new RangeError(`the KV budget must be positive, got ${o.budgetBytes} bytes`);
  if (o.requests.length === 0) throw new RangeError('simulate needs at least one request');
}

/** The sweep's sizes (simulate-limits.ts) from its options, without a device. */
export function sweepSize(o: SimulateSweepOptions, json = false): SweepSize {
  return estimateSweepSize({
    requests: o.requests,
    numPages: o.methods.map((method) => pagesForServingBudget({ model: o.model, method, budgetBytes: o.budgetBytes, pageSize: o.pageSize, hadamardBlock: o.hadamardBlock })),
    caps: o.caps,
    pageSize: o.pageSize,
    prefillChunkTokens: o.prefillChunkTokens,
    prefillTokensPerStep: o.prefillTokensPerStep,
    maxSteps: o.maxSteps,
    model: o.model,
    json,
  });
}

/**
 * Refuses, before anything is allocated, a sweep whose per-step buffers or decode batch pass this
 * device's limits (a KvConfigError saying what would fit), instead of a GPU failure mid-sweep.
 */
export function checkSweepOnDevice(ctx: GpuContext, o: SimulateSweepOptions): void {
  const size = sweepSize(o);
  const { headDim: d, numKvHeads: hkv, numQueryHeads: hq } = o.model;
  const maxCap = o.caps.reduce((m, c) => Math.max(m, c), 0);
  const groups = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (size.maxDecodeBatch > groups) {
    throw new KvConfigError(`a concurrency cap of ${maxCap} decodes up to ${size.maxDecodeBatch} sequences per step, more than this device's ${groups} per attention call; try caps ≤ ${groups}`);
  }
  const limit = Math.min(ctx.limits.maxBufferSize, ctx.limits.maxStorageBufferBindingSize);
  const rowBytes = hkv * d * 4;
  if (size.maxPrefillTokensPerStep * rowBytes > limit) {
    throw new KvConfigError(
      `up to ${size.maxPrefillTokensPerStep} prompt tokens per step (cap ${maxCap} × chunk ${o.prefillChunkTokens}) need a ${formatBytes(size.maxPrefillTokensPerStep * rowBytes)} K input buffer, ` +
        `more than this device's buffer limit of ${formatBytes(limit)}; try ≤ ${Math.floor(limit / rowBytes)} prefill tokens per step`,
    );
  }
  const perSequence = Math.max(hq * d * 4, size.maxPagesPerSequence * 4);
  if (size.maxDecodeBatch * perSequence > limit) {
    throw new KvConfigError(
      `${size.maxDecodeBatch} sequences per decode step need ${formatBytes(size.maxDecodeBatch * perSequence)} of queries or block tables, more than this device's buffer limit of ${formatBytes(limit)}; ` +
        `try caps ≤ ${Math.floor(limit / perSequence)}`,
    );
  }
}

/**
 * Runs every (method, cap) pair. `onProgress` gets a line per finished run.
 * @throws KvConfigError / GpuError when the budget cannot become a cache on this device, or the
 *   per-step buffers pass its limits; SimulateLimitError past `maxStepRecords`
 */
export async function runSimulateSweep(ctx: GpuContext, o: SimulateSweepOptions, onProgress?: (line: string) => void): Promise<SimulateResult> {
  checkSweepOptions(o);
  checkSweepOnDevice(ctx, o);
  let recordsLeft = o.maxStepRecords ?? Infinity;
  const scheduler: Omit<SchedulerConfig, 'maxRunning'> = { prefillChunkTokens: o.prefillChunkTokens, reservePages: o.reservePages };
  if (o.prefillTokensPerStep !== undefined) scheduler.prefillTokensPerStep = o.prefillTokensPerStep;
  const meanPrompt = mean(o.requests, (r) => r.promptLen);
  const meanOutput = mean(o.requests, (r) => r.outputLen);
  const methods: SimulateMethodResult[] = [];
  let timingMethod: StepTimingMethod = 'wall-clock';
  let timingFallbackReason: string | undefined;
  for (const method of o.methods) {
    const cache = await createServingCache(ctx, { model: o.model, method, budgetBytes: o.budgetBytes, pageSize: o.pageSize, hadamardBlock: o.hadamardBlock });
    try {
      const layout = cacheLayout(cache.config);
      const numPages = cache.config.numPages;
      const result: SimulateMethodResult = {
        method,
        numPages,
        bytesPerToken: layout.bytesPerToken,
        poolBytes: 2 * layout.bufferBytes,
        fitsAtFullLength: concurrencyThatFits(numPages, o.pageSize, Math.round(meanPrompt), Math.round(meanOutput)),
        runs: [],
      };
      const warmup = o.warmupSteps ?? 2;
      if (warmup > 0) {
        const sim = new ServingSimulator(cache, o.requests.slice(0, 2).map((r, id) => ({ ...r, id, arrivalStep: 0 })), { ...scheduler, maxRunning: 2, dataSeed: o.dataSeed, timing: o.timing });
        try {
          await sim.run({ maxSteps: warmup });
        } finally {
          sim.release();
        }
      }
      for (const cap of o.caps) {
        const sim = new ServingSimulator(cache, o.requests, { ...scheduler, maxRunning: cap, dataSeed: o.dataSeed, timing: o.timing });
        try {
          let run;
          try {
            run = await sim.run({ maxSteps: o.maxSteps, maxRecords: recordsLeft });
          } catch (err) {
            if (err instanceof SimulateLimitError) throw new SimulateLimitError(`${method} at cap ${cap}: ${err.message}`);
            throw err;
          }
          recordsLeft -= run.steps.length;
          timingMethod = run.timingMethod;
          timingFallbackReason ??= run.timingFallbackReason;
          result.runs.push({ cap, summary: run.summary, steps: run.steps });
          const s = run.summary;
          onProgress?.(`${method} cap ${cap}: ${s.steps} steps, ${s.decodeTokens} output tokens, ${(s.decodeTokensPerSec / 1e3).toFixed(1)}k tok/s per layer, mean batch ${s.meanDecodeBatch.toFixed(1)}, ${s.preemptions} preemptions`);
        } finally {
          sim.release();
        }
      }
      methods.push(result);
    } finally {
      cache.destroy();
    }
  }
  const perLayer = `${formatBytes(o.budgetBytes)} for the simulated layer`;
  const notes = [
    `Each step is ONE attention layer of ${o.model.name}: the KV append (fused write kernel) and paged decode attention, real kernels, random K/V/q.`,
    `Per-model figures: ×${o.model.numLayers} layers for step time and memory (${perLayer} ≈ ${formatBytes(o.budgetBytes * o.model.numLayers)} for the model), tokens/s ÷${o.model.numLayers}; attention and KV writes only, no weight GEMMs or sampling.`,
    'Prefill is charged its cache writes only (no prefill attention kernel); decode tokens/s = output tokens / GPU time of the decode steps (cache write of the new tokens + attention).',
    'Preemption: when decoding sequences need pages that are not free, the youngest running request is evicted (pages freed) and recomputed later (prompt + generated tokens re-prefilled); requests whose whole context exceeds the pool are refused.',
  ];
  if (timingMethod === 'wall-clock') notes.push('GPU time is wall-clock from submit to onSubmittedWorkDone (no timestamp-query): it includes submit latency.');
  const result: SimulateResult = {
    kind: 'simulate',
    version: 2,
    adapter: describeGpu(ctx),
    timingMethod,
    model: o.model,
    workload: o.workload,
    requests: {
      count: o.requests.length,
      meanPromptLen: meanPrompt,
      meanOutputLen: meanOutput,
      maxPromptLen: o.requests.reduce((m, r) => Math.max(m, r.promptLen), 0),
      maxOutputLen: o.requests.reduce((m, r) => Math.max(m, r.outputLen), 0),
      lastArrivalStep: o.requests.reduce((m, r) => Math.max(m, r.arrivalStep), 0),
    },
    budgetBytes: o.budgetBytes,
    pageSize: o.pageSize,
    hadamardBlock: o.hadamardBlock,
    scheduler,
    maxSteps: o.maxSteps,
    caps: [...o.caps],
    methods,
    notes,
  };
  if (timingFallbackReason) result.timingFallbackReason = timingFallbackReason;
  return result;
}
