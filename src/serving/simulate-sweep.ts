/**
 * The `simulate` experiment: for each KV method, ONE PagedKvCache sized by the same memory budget (its
 * pools over as many storage buffers as the device binds: serving-cache.ts), and for each concurrency
 * cap `repeats` continuous-batching runs of the same request stream over it. The repeats share the
 * schedule and the K/V/q values, so they differ only in what the GPU timed: the report keeps every
 * repeat's totals, the spread of the timed figures (repeat-spread.ts), and the step records of the
 * median repeat. Library code for Node and the browser; src/serving/simulate-report.ts formats it.
 */
import { KvConfigError } from '../cache/paged-kv-cache';
import { formatBytes } from '../kernels/gpu-buffers';
import { cacheLayout, type KvMethod } from '../layout';
import { describeGpu, type GpuContext } from '../gpu/gpu-context';
import type { ServingRequest } from './requests';
import type { SchedulerConfig } from './scheduler';
import { DEFAULT_SIMULATE_REPEATS, MAX_SIMULATE_REPEATS, medianRepeatIndex, runSpread, type RunSpread } from './repeat-spread';
import { createServingCache, pagesForServingBudget, planServingPool, poolDeviceLimits, type PoolMemoryLimit } from './serving-cache';
import { estimateSweepSize, SimulateLimitError, type SweepSize } from './simulate-limits';
import { formatRate } from './simulate-report';
import { concurrencyThatFits, ServingSimulator, type ModelShape, type RunSummary, type StepRecord } from './simulator';
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
  /** Runs of every (method, cap), the same schedule and data each time (default DEFAULT_SIMULATE_REPEATS). */
  repeats?: number;
  /** At most this many pages per storage buffer of a pool (default: one binding's worth; tests spread pools with it). */
  maxPagesPerBuffer?: number;
  /** Bytes the K and V pools of one method may take, where known (a software adapter's buffers are host memory). */
  poolMemory?: PoolMemoryLimit;
  /** Called after every repeat of every run (the page checks its Cancel here); a throw stops the sweep. */
  checkpoint?: () => void;
  timing?: StepTimingMethod | 'auto';
  /**
   * Step records all runs together may keep (default: no limit): the hard limit behind the host-memory
   * estimate (simulate-limits.ts maxStepRecordsFor); a run that needs more throws SimulateLimitError.
   */
  maxStepRecords?: number;
}

export interface SimulateRun {
  cap: number;
  /** The median repeat's totals (by decode tokens/s: medianRepeatIndex). */
  summary: RunSummary;
  /** Which of `repeats` that is (0-based). */
  medianRepeat: number;
  /** Every repeat's totals in run order: the same counts in each (same schedule), different GPU times. */
  repeats: RunSummary[];
  /** min / quartiles / median / max over the repeats of each timed figure. */
  spread: RunSpread;
  /** Step records of the median repeat. */
  steps: StepRecord[];
}

export interface SimulateMethodResult {
  method: KvMethod;
  numPages: number;
  /** Bytes one token takes in the simulated layer (K and V, all kv heads, scale/min). */
  bytesPerToken: number;
  /** Bytes of the K and V pools together (≤ the budget). */
  poolBytes: number;
  /** Storage buffers each of the K and V pools spans (1 unless a pool is larger than one binding). */
  poolBuffers: number;
  /** Pages in each buffer of a pool (the last one may hold fewer). */
  pagesPerBuffer: number;
  /** Requests of mean length whose whole context fits the pool at once. */
  fitsAtFullLength: number;
  runs: SimulateRun[];
}

export interface SimulateResult {
  kind: 'simulate';
  /**
   * 3: runs carry every repeat (`repeats`, `spread`, `medianRepeat`) and methods their pool buffers;
   * 2: step records carry `span` (an idle gap is one record); summaries carry `idleSteps`.
   */
  version: 3;
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
  /** Runs of every (method, cap). */
  repeats: number;
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
  const repeats = o.repeats ?? DEFAULT_SIMULATE_REPEATS;
  if (!Number.isSafeInteger(repeats) || repeats < 1 || repeats > MAX_SIMULATE_REPEATS) throw new RangeError(`repeats must be an integer in [1, ${MAX_SIMULATE_REPEATS}], got ${repeats}`);
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
    repeats: o.repeats ?? DEFAULT_SIMULATE_REPEATS,
    model: o.model,
    json,
  });
}

/**
 * Refuses, before anything is allocated, a sweep whose pools (any method's), per-step buffers or
 * decode batch pass this device's limits (a KvConfigError saying what would fit), instead of a GPU
 * failure mid-sweep.
 */
export function checkSweepOnDevice(ctx: GpuContext, o: SimulateSweepOptions): void {
  for (const method of o.methods) planServingPool(poolDeviceLimits(ctx), cacheOptions(o, method), o.poolMemory);
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

function cacheOptions(o: SimulateSweepOptions, method: KvMethod) {
  return {
    model: o.model, method, budgetBytes: o.budgetBytes, pageSize: o.pageSize, hadamardBlock: o.hadamardBlock,
    ...(o.maxPagesPerBuffer !== undefined ? { maxPagesPerBuffer: o.maxPagesPerBuffer } : {}),
  };
}

/**
 * Runs every (method, cap) pair `repeats` times. `onProgress` gets a line per finished (method, cap).
 * @throws KvConfigError / GpuError when the budget cannot become a cache on this device, or the
 *   per-step buffers pass its limits; SimulateLimitError past `maxStepRecords`
 */
export async function runSimulateSweep(ctx: GpuContext, o: SimulateSweepOptions, onProgress?: (line: string) => void): Promise<SimulateResult> {
  checkSweepOptions(o);
  checkSweepOnDevice(ctx, o);
  let recordsLeft = o.maxStepRecords ?? Infinity;
  const repeats = o.repeats ?? DEFAULT_SIMULATE_REPEATS;
  const scheduler: Omit<SchedulerConfig, 'maxRunning'> = { prefillChunkTokens: o.prefillChunkTokens, reservePages: o.reservePages };
  if (o.prefillTokensPerStep !== undefined) scheduler.prefillTokensPerStep = o.prefillTokensPerStep;
  const meanPrompt = mean(o.requests, (r) => r.promptLen);
  const meanOutput = mean(o.requests, (r) => r.outputLen);
  const methods: SimulateMethodResult[] = [];
  let timingMethod: StepTimingMethod = 'wall-clock';
  let timingFallbackReason: string | undefined;
  for (const method of o.methods) {
    const cache = await createServingCache(ctx, cacheOptions(o, method), o.poolMemory);
    try {
      const layout = cacheLayout(cache.config);
      const numPages = cache.config.numPages;
      const result: SimulateMethodResult = {
        method,
        numPages,
        bytesPerToken: layout.bytesPerToken,
        poolBytes: 2 * layout.bufferBytes,
        poolBuffers: cache.pool.numBuffers,
        pagesPerBuffer: Math.min(cache.pool.pagesPerBuffer, numPages),
        fitsAtFullLength: concurrencyThatFits(numPages, o.pageSize, Math.round(meanPrompt), Math.round(meanOutput)),
        runs: [],
      };
      const warmup = o.warmupSteps ?? 2;
      // Pipelines compiled for this cache: a later run (another cap, another repeat) does not warm them again.
      const warmedVariants = new Set<string>();
      if (warmup > 0) {
        const sim = new ServingSimulator(cache, o.requests.slice(0, 2).map((r, id) => ({ ...r, id, arrivalStep: 0 })), { ...scheduler, maxRunning: 2, dataSeed: o.dataSeed, timing: o.timing, warmedVariants });
        try {
          await sim.run({ maxSteps: warmup });
        } finally {
          sim.release();
        }
      }
      for (const cap of o.caps) {
        // Every repeat's records are held until the median is known: all of them count against the limit.
        const runs: { summary: RunSummary; steps: StepRecord[] }[] = [];
        let held = 0;
        for (let repeat = 0; repeat < repeats; repeat++) {
          const sim = new ServingSimulator(cache, o.requests, { ...scheduler, maxRunning: cap, dataSeed: o.dataSeed, timing: o.timing, warmedVariants });
          try {
            let run;
            try {
              run = await sim.run({ maxSteps: o.maxSteps, maxRecords: recordsLeft - held });
            } catch (err) {
              if (err instanceof SimulateLimitError) throw new SimulateLimitError(`${method} at cap ${cap}${repeats > 1 ? `, repeat ${repeat + 1} of ${repeats}` : ''}: ${err.message}`);
              throw err;
            }
            held += run.steps.length;
            timingMethod = run.timingMethod;
            timingFallbackReason ??= run.timingFallbackReason;
            runs.push({ summary: run.summary, steps: run.steps });
          } finally {
            sim.release();
          }
          o.checkpoint?.();
        }
        const median = medianRepeatIndex(runs.map((r) => r.summary));
        const kept = runs[median];
        recordsLeft -= kept.steps.length;
        const spread = runSpread(runs.map((r) => r.summary));
        result.runs.push({ cap, summary: kept.summary, medianRepeat: median, repeats: runs.map((r) => r.summary), spread, steps: kept.steps });
        const s = kept.summary;
        const tps = spread.decodeTokensPerSec;
        const range = repeats > 1 ? ` (${formatRate(tps.min)}–${formatRate(tps.max)} over ${repeats} repeats)` : '';
        onProgress?.(`${method} cap ${cap}: ${s.steps} steps, ${s.decodeTokens} output tokens, ${formatRate(tps.median)} tok/s per layer${range}, mean batch ${s.meanDecodeBatch.toFixed(1)}, ${s.preemptions} preemptions`);
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
    repeats > 1
      ? `Every (method, cap) ran ${repeats} times over the same schedule and K/V/q values: timed figures are medians over the repeats with their min–max (quartiles and every repeat's totals in the JSON); counts are the same in every repeat, and the step records are those of the median repeat by decode tokens/s.`
      : 'Every (method, cap) ran once: no spread over repeats is measured.',
  ];
  if (methods.some((m) => m.poolBuffers > 1)) {
    notes.push(`Pools spread over several storage buffers (a pool larger than one binding, or a smaller per-buffer page limit asked for) are read by the subgroup decode kernel (${methods.filter((m) => m.poolBuffers > 1).map((m) => `${m.method}: ${m.poolBuffers} buffers per pool`).join(', ')}).`);
  }
  if (timingMethod === 'wall-clock') notes.push('GPU time is wall-clock from submit to onSubmittedWorkDone (no timestamp-query): it includes submit latency.');
  const result: SimulateResult = {
    kind: 'simulate',
    version: 3,
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
    repeats,
    caps: [...o.caps],
    methods,
    notes,
  };
  if (timingFallbackReason) result.timingFallbackReason = timingFallbackReason;
  return result;
}
