/**
 * Serving simulator: continuous batching over ONE PagedKvCache (one attention layer) per KV method,
 * through the real kernels every step. Library code for Node and the browser.
 *
 * A step (see scheduler.ts for the decisions):
 *   1. plan: arrivals, refusals, preemptions (youngest first, recomputed later), admissions while the
 *      pages suffice, prefill chunks, the decode set;
 *   2. prefill pass: every planned prompt chunk goes through the fused cache-write kernel (one append
 *      over all prefilling sequences);
 *   3. decode: one new token per decoding sequence through the same write kernel (one pass), then
 *      paged decode attention over all of them (the next pass, so it sees the new tokens); all passes
 *      of a step go into one submit and each is timed on its own;
 *   4. complete: requests that produced all their output finish and free their pages.
 * K, V and q are random (windows of a seeded pool of normals) but really written and read.
 *
 * Idle gaps (nothing running or waiting, the next arrival later) are one step with no GPU work and
 * one record whose `span` is the gap's length: a trace arriving at step 2·10^6 costs one record, not
 * 2·10^6. A run keeps at most `maxRecords` records (SimulateLimitError past it), so no run outgrows
 * the host memory its caller sized it for (see simulate-limits.ts).
 *
 * What is simulated, and how to scale it: a step is ONE layer's KV append + decode attention. A model
 * runs this for each of its layers (32 for Llama-3.1-8B), so its attention-side step time is about
 * `numLayers` × ours and its tokens/s about ours ÷ `numLayers`, with the same memory budget per layer;
 * weight GEMMs, sampling and prefill attention are not simulated (prefill costs only its cache write).
 *
 * @example
 *   const cache = await createServingCache(ctx, { model: LLAMA_3_1_8B, method: 'int4-hadamard', budgetBytes: 256 * 2 ** 20 });
 *   const sim = new ServingSimulator(cache, regimeRequests('short', { count: 64 }), { maxRunning: 32, prefillChunkTokens: 512 });
 *   const result = await sim.run({ maxSteps: 200 });
 *   sim.release(); cache.destroy();
 */
import type { AttentionWorkspace } from '../cache/attention-workspace';
import { MODEL_PRESETS } from '../models';
import type { PagedKvCache, PreparedAttention, PreparedDecodeStep } from '../cache/paged-kv-cache';
import { writeFloats } from '../kernels/gpu-buffers';
import { SeededRandom } from '../reference/random';
import type { ServingRequest } from './requests';
import { ContinuousBatchingScheduler, type DecodeSlot, type RequestState, type SchedulerConfig, type StepPlan } from './scheduler';
import { SimulateLimitError } from './simulate-limits';
import { StepTimer, type StepTimingMethod } from './step-timer';

// The cache a budget buys (pages, pools over buffers) has its own module; these names stay importable here.
export { checkServingBudget, createServingCache, pagesForServingBudget, servingPageBytes, type ServingCacheOptions } from './serving-cache';

/** The attention shape of one layer of a model, and how many layers the model has. */
export interface ModelShape {
  name: string;
  headDim: number;
  numQueryHeads: number;
  numKvHeads: number;
  numLayers: number;
}

/** Prompt tokens a sequence may prefill per step (the CLI's and the page's default chunk). */
export const DEFAULT_PREFILL_CHUNK_TOKENS = 512;

/** The default model of the simulator: Llama-3.1-8B from the shared table (src/models.ts). */
export const LLAMA_3_1_8B: ModelShape = (({ name, headDim, numQueryHeads, numKvHeads, numLayers }) => ({ name, headDim, numQueryHeads, numKvHeads, numLayers }))(MODEL_PRESETS['llama-3.1-8b']);

/** Largest number of requests whose whole context (prompt + output) fits the pool at once. */
export function concurrencyThatFits(numPages: number, pageSize: number, promptLen: number, outputLen: number): number {
  return Math.floor(numPages / Math.ceil((promptLen + outputLen) / pageSize));
}

/** Seeded random values: windows of a fixed pool of normals at random offsets (cheap per step). */
export class RandomPool {
  private readonly pool: Float32Array;
  private readonly rng: SeededRandom;

  constructor(seed: number, poolSize = 1 << 20) {
    this.rng = new SeededRandom(seed);
    this.pool = this.rng.normalArray(poolSize);
  }

  /** A fresh array of `length` values. */
  take(length: number): Float32Array {
    const out = new Float32Array(length);
    let offset = this.rng.int(this.pool.length);
    for (let filled = 0; filled < length; ) {
      const n = Math.min(length - filled, this.pool.length - offset);
      out.set(this.pool.subarray(offset, offset + n), filled);
      filled += n;
      offset = 0;
    }
    return out;
  }
}

/** Hooks for tests: see exactly what went into the cache and what attention returned. */
export interface SimulatorObserver {
  /** Rows written for one sequence this step: k, v [count, Hkv, D] f32 (views, valid during the call). */
  onAppend?(requestId: number, seqId: number, k: Float32Array, v: Float32Array): void;
  /** The decode step's q and attention output, both [slots.length, Hq, D] f32. Reading `out` back costs a sync. */
  onAttention?(slots: readonly DecodeSlot[], q: Float32Array, out: Float32Array): void;
}

export interface SimulatorOptions extends SchedulerConfig {
  /** Seed of the random K/V/q values (default 1). */
  dataSeed?: number;
  /** Values in the random pool (default 2^20). */
  dataPoolSize?: number;
  /** GPU timing (default 'auto': timestamps when present). */
  timing?: StepTimingMethod | 'auto';
  observer?: SimulatorObserver;
  /**
   * Pipeline variants some earlier run over this cache already ran (and so compiled): shared by the
   * runs of a sweep over one cache, so a repeat or another cap does not warm again what was warmed.
   * Default: a set of this simulator's own.
   */
  warmedVariants?: Set<string>;
}

/** Options of ServingSimulator.run. */
export interface RunOptions {
  /** Scheduler steps (idle ones included) after which the run stops; 0 (default): until done. */
  maxSteps?: number;
  /**
   * Step records the run may keep (default: no limit); one more throws SimulateLimitError. Callers
   * size it from the host memory (simulate-limits.ts), so a run that never ends cannot exhaust it.
   */
  maxRecords?: number;
  onStep?: (record: StepRecord) => void;
}

/** One step, as recorded. Counts of requests unless named otherwise. */
export interface StepRecord {
  /** The (first) scheduler step this record covers. */
  step: number;
  /**
   * Scheduler steps it covers: 1, or the length of an idle gap (nothing running or waiting until the
   * next arrival: no GPU work, every count 0) recorded once.
   */
  span: number;
  arrived: number;
  admitted: number;
  preempted: number;
  refused: number;
  finished: number;
  /** Running during the step (prefilling + decoding). */
  running: number;
  prefilling: number;
  decoding: number;
  /** Waiting after admission (arrived, not running). */
  waiting: number;
  prefillTokens: number;
  /** = output tokens produced this step. */
  decodeTokens: number;
  /** Pool occupancy after this step's writes, before finished requests free their pages. */
  usedPages: number;
  freePages: number;
  /** Tokens cached (all live sequences). */
  tokens: number;
  /** tokens / (usedPages × pageSize): 1 − internal fragmentation; 1 when no page is used. */
  slotUtilisation: number;
  /** usedPages / numPages. */
  pageFraction: number;
  /** GPU time of the prefill pass (0 when there was none). */
  prefillNs: number;
  /** GPU time of the decode step: decodeAppendNs + attentionNs (0 when there was none). */
  decodeNs: number;
  /** GPU time of the decode tokens' cache write (its own pass; 0 when the step was fused). */
  decodeAppendNs: number;
  /** GPU time of the paged decode attention (its own pass, after the write; with the write when fused). */
  attentionNs: number;
  /** The decode step ran fused: the cache write inside the decode kernel (PagedKvCache.decodeStep's plan). */
  fusedStep: boolean;
  /** Host wall-clock of the whole step: planning, buffer setup, upload, GPU, readback. */
  hostMs: number;
}

/** Totals of a run. */
export interface RunSummary {
  /** Scheduler steps, idle ones included (the sum of the records' spans). */
  steps: number;
  /** Steps in which nothing ran (idle gaps, steps that only refused arrivals). */
  idleSteps: number;
  requests: number;
  finished: number;
  refused: number;
  /** Still waiting or running when the step limit stopped the run. */
  unfinished: number;
  preemptions: number;
  /** Tokens re-prefilled after preemption (prompt + generated tokens of evicted requests). */
  recomputedTokens: number;
  prefillTokens: number;
  decodeTokens: number;
  prefillNs: number;
  decodeNs: number;
  /** Parts of decodeNs: the decode tokens' cache writes and the attention. */
  decodeAppendNs: number;
  attentionNs: number;
  /** Median GPU time of one decode step (steps that decoded; 0 when none). */
  medianDecodeStepNs: number;
  /** decodeTokens / decodeNs: output tokens/s of the decode passes, one layer. */
  decodeTokensPerSec: number;
  /** decodeTokens / (prefillNs + decodeNs): output tokens/s with the prefill writes charged, one layer. */
  outputTokensPerSec: number;
  /** Mean sequences per decode pass (steps that decoded). */
  meanDecodeBatch: number;
  peakRunning: number;
  /** Mean over steps that held any page. */
  meanSlotUtilisation: number;
  /** Mean over all steps, idle ones included. */
  meanPageFraction: number;
  peakPageFraction: number;
  /** Mean steps from arrival to finish, over finished requests (NaN when none finished). */
  meanLatencySteps: number;
  /** Reasons of refused requests: one per distinct reason, the first MAX_REFUSED_REASONS (`refused` counts them all). */
  refusedReasons: string[];
}

export interface SimulationResult {
  summary: RunSummary;
  steps: StepRecord[];
  timingMethod: StepTimingMethod;
  timingFallbackReason?: string;
  /** Steps that first ran untimed because they used a pipeline not run before (a new batch shape). */
  warmups: number;
}

type PreparedAppend = Awaited<ReturnType<PagedKvCache['prepareAppend']>>;

/** Continuous batching of a request stream over one PagedKvCache (see the module comment). */
export class ServingSimulator {
  readonly scheduler: ContinuousBatchingScheduler;
  private readonly timer: StepTimer;
  /** Pipeline variants (append, attention + merge) some step has run, so no timed step is their first use. */
  private readonly warmedVariants: Set<string>;
  /** Attention buffers and bindings reused step to step (no allocation per decode step once warm). */
  private readonly workspace: AttentionWorkspace;
  private warmups = 0;
  private readonly data: RandomPool;
  private readonly records: StepRecord[] = [];
  private released = false;

  /** The cache must hold no sequences; it is not destroyed by the simulator (reuse it for the next run). */
  constructor(
    readonly cache: PagedKvCache,
    readonly requests: readonly ServingRequest[],
    readonly options: SimulatorOptions,
  ) {
    this.scheduler = new ContinuousBatchingScheduler(cache.allocator, requests, options);
    this.warmedVariants = options.warmedVariants ?? new Set();
    this.data = new RandomPool(options.dataSeed ?? 1, options.dataPoolSize);
    this.timer = new StepTimer(cache.ctx, options.timing ?? 'auto');
    this.workspace = cache.createAttentionWorkspace();
  }

  get done(): boolean {
    return this.scheduler.done;
  }

  get timingMethod(): StepTimingMethod {
    return this.timer.method;
  }

  /**
   * Runs one step through the GPU and returns its record; an idle gap (nothing running or waiting
   * until the next arrival) is skipped instead, at most `maxIdleSteps` of it, as one record.
   */
  async step(maxIdleSteps = Infinity): Promise<StepRecord> {
    if (this.released) throw new Error('this simulator was released');
    const startMs = performance.now();
    const idle = Math.min(this.scheduler.idleSteps(), maxIdleSteps);
    if (idle >= 1) return this.skipIdle(idle, startMs);
    const plan = this.scheduler.planStep();
    const { prefillNs, decodeAppendNs, attentionNs, fusedStep } = await this.execute(plan);
    const util = this.cache.allocator.utilisation();
    const running = this.scheduler.runningRequests().length;
    const decoding = plan.decode.length;
    const outcome = this.scheduler.completeStep(plan);
    const record: StepRecord = {
      step: plan.step,
      span: 1,
      arrived: plan.arrived.length,
      admitted: plan.admitted.length,
      preempted: plan.preempted.length,
      refused: plan.refused.length,
      finished: outcome.finished.length,
      running,
      prefilling: plan.prefill.length,
      decoding,
      waiting: this.scheduler.waitingRequests().length,
      prefillTokens: plan.prefill.reduce((n, c) => n + c.count, 0),
      decodeTokens: decoding,
      usedPages: util.usedPages,
      freePages: this.cache.config.numPages - util.usedPages,
      tokens: util.tokens,
      slotUtilisation: util.slotFraction,
      pageFraction: util.pageFraction,
      prefillNs,
      decodeNs: decodeAppendNs + attentionNs,
      decodeAppendNs,
      fusedStep,
      attentionNs,
      hostMs: performance.now() - startMs,
    };
    this.records.push(record);
    return record;
  }

  /** One record for `steps` idle steps: the clock jumps, nothing is planned or run. */
  private skipIdle(steps: number, startMs: number): StepRecord {
    const step = this.scheduler.step;
    this.scheduler.skipIdle(steps);
    const util = this.cache.allocator.utilisation();
    const record: StepRecord = {
      step,
      span: steps,
      arrived: 0,
      admitted: 0,
      preempted: 0,
      refused: 0,
      finished: 0,
      running: 0,
      prefilling: 0,
      decoding: 0,
      waiting: 0,
      prefillTokens: 0,
      decodeTokens: 0,
      usedPages: util.usedPages,
      freePages: this.cache.config.numPages - util.usedPages,
      tokens: util.tokens,
      slotUtilisation: util.slotFraction,
      pageFraction: util.pageFraction,
      prefillNs: 0,
      decodeNs: 0,
      decodeAppendNs: 0,
      attentionNs: 0,
      fusedStep: false,
      hostMs: performance.now() - startMs,
    };
    this.records.push(record);
    return record;
  }

  private async execute(plan: StepPlan): Promise<{ prefillNs: number; decodeAppendNs: number; attentionNs: number; fusedStep: boolean }> {
    const cache = this.cache;
    const { numKvHeads: hkv, numQueryHeads: hq, headDim: d } = cache.config;
    const device = cache.ctx.device;
    const observer = this.options.observer;
    let prefill: PreparedAppend | null = null;
    let decodeAppend: PreparedAppend | null = null;
    let attention: PreparedAttention | null = null;
    try {
      if (plan.prefill.length) {
        prefill = await cache.prepareAppend(plan.prefill.map((c) => c.seqId), plan.prefill.map((c) => c.count));
        const rows = prefill.numTokens * hkv * d;
        const k = this.data.take(rows);
        const v = this.data.take(rows);
        writeFloats(device, prefill.kInput, k);
        writeFloats(device, prefill.vInput, v);
        if (observer?.onAppend) {
          let first = 0;
          for (const c of plan.prefill) {
            const end = first + c.count * hkv * d;
            observer.onAppend(c.requestId, c.seqId, k.subarray(first, end), v.subarray(first, end));
            first = end;
          }
        }
      }
      let q: Float32Array | null = null;
      if (plan.decode.length) {
        const seqIds = plan.decode.map((s) => s.seqId);
        // The decode step as the plan runs it: fused into the decode kernel on small grids (its time is
        // then the "attention" pass's, and the append pass is empty), else the cache write, then attention.
        let kInput: GPUBuffer;
        let vInput: GPUBuffer;
        if (cache.fusesDecodeStep(seqIds.length, {})) {
          attention = await cache.prepareDecodeStep(seqIds, {}, this.workspace);
          kInput = (attention as PreparedDecodeStep).kInput;
          vInput = (attention as PreparedDecodeStep).vInput;
        } else {
          decodeAppend = await cache.prepareAppend(seqIds, seqIds.map(() => 1), this.workspace);
          attention = await this.workspace.prepare(seqIds);
          kInput = decodeAppend.kInput;
          vInput = decodeAppend.vInput;
        }
        const rows = seqIds.length * hkv * d;
        const k = this.data.take(rows);
        const v = this.data.take(rows);
        q = this.data.take(seqIds.length * hq * d);
        writeFloats(device, kInput, k);
        writeFloats(device, vInput, v);
        writeFloats(device, attention.queryBuffer, q);
        if (observer?.onAppend) {
          plan.decode.forEach((s, i) => observer.onAppend?.(s.requestId, s.seqId, k.subarray(i * hkv * d, (i + 1) * hkv * d), v.subarray(i * hkv * d, (i + 1) * hkv * d)));
        }
      }
      const p = prefill;
      const a = decodeAppend;
      const att = attention;
      // Three passes in one submit, in order: each sees the previous one's writes.
      const passes = [p && ((pass: GPUComputePassEncoder) => p.encode(pass)), a && ((pass: GPUComputePassEncoder) => a.encode(pass)), att && ((pass: GPUComputePassEncoder) => att.encode(pass))];
      // A step whose pipelines run for the first time runs once untimed first (rewriting the same
      // slots with the same rows and reading them again changes nothing).
      const variants = [p || a ? 'cache write' : null, att ? `${att.plan.variant.key}|merge ${att.plan.merge}` : null].filter((k): k is string => k !== null);
      // (a fused step's variant key names it: the same cache write code, compiled into the decode kernel)
      if (variants.some((k) => !this.warmedVariants.has(k))) {
        await this.timer.warmUp(`serving step ${plan.step}`, passes);
        variants.forEach((k) => this.warmedVariants.add(k));
        this.warmups++;
      }
      const [prefillNs, decodeAppendNs, attentionNs] = await this.timer.run(`serving step ${plan.step}`, passes);
      if (att && q && observer?.onAttention) observer.onAttention(plan.decode, q, await att.read());
      return { prefillNs, decodeAppendNs, attentionNs, fusedStep: decodeAppend === null && attention !== null };
    } finally {
      prefill?.destroy();
      decodeAppend?.destroy();
      attention?.destroy();
    }
  }

  /**
   * Steps until every request finished or was refused, or `maxSteps` scheduler steps passed (0: no
   * limit; idle gaps count, skipped in one record each), then summarises. Call release() afterwards to
   * free what is still cached.
   * @throws SimulateLimitError when the run needs more than `maxRecords` records
   */
  async run(options: RunOptions = {}): Promise<SimulationResult> {
    const maxSteps = options.maxSteps ?? 0;
    const maxRecords = options.maxRecords ?? Infinity;
    if (!Number.isSafeInteger(maxSteps) || maxSteps < 0) throw new RangeError(`maxSteps must be an integer ≥ 0, got ${maxSteps}`);
    if (!(maxRecords >= 0)) throw new RangeError(`maxRecords must be ≥ 0, got ${maxRecords}`);
    while (!this.done && (maxSteps === 0 || this.scheduler.step < maxSteps)) {
      if (this.records.length >= maxRecords) {
        throw new SimulateLimitError(
          `the run needs more than ${maxRecords} step records (step ${this.scheduler.step}, ${this.scheduler.pendingCount + this.scheduler.waitingRequests().length + this.scheduler.runningRequests().length} requests not done), ` +
            'the most the host memory was sized for; limit the steps per run',
        );
      }
      // Not `onStep?.(await this.step())`: optional chaining would skip the step when onStep is absent.
      const record = await this.step(maxSteps === 0 ? Infinity : maxSteps - this.scheduler.step);
      options.onStep?.(record);
    }
    return this.result();
  }

  /** Records and totals so far. */
  result(): SimulationResult {
    const result: SimulationResult = { summary: summarizeRun(this.records, this.scheduler.states), steps: [...this.records], timingMethod: this.timer.method, warmups: this.warmups };
    if (this.timer.fallbackReason) result.timingFallbackReason = this.timer.fallbackReason;
    return result;
  }

  /** Frees every page still held by this run's requests (the cache can then serve another run). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.scheduler.abandon();
    this.timer.destroy();
    this.workspace.destroy();
  }
}

/** Refusal reasons a summary keeps: each names its request, so a stream of refusals would keep them all. */
export const MAX_REFUSED_REASONS = 10;

/** Median of `values` (mean of the middle two for an even count); 0 for none. */
function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Totals of a run from its step records and final request states. */
export function summarizeRun(records: readonly StepRecord[], states: readonly RequestState[]): RunSummary {
  const sum = (f: (r: StepRecord) => number) => records.reduce((n, r) => n + f(r), 0);
  const steps = sum((r) => r.span);
  const prefillNs = sum((r) => r.prefillNs);
  const decodeNs = sum((r) => r.decodeNs);
  const decodeTokens = sum((r) => r.decodeTokens);
  const decodeSteps = records.filter((r) => r.decodeTokens > 0).length;
  const occupied = records.filter((r) => r.usedPages > 0);
  const finished = states.filter((s) => s.phase === 'finished');
  const refused = states.filter((s) => s.phase === 'refused');
  const prefillTokens = sum((r) => r.prefillTokens);
  return {
    steps,
    idleSteps: sum((r) => (r.running === 0 ? r.span : 0)),
    requests: states.length,
    finished: finished.length,
    refused: refused.length,
    unfinished: states.length - finished.length - refused.length,
    preemptions: states.reduce((n, s) => n + s.preemptions, 0),
    recomputedTokens: prefillTokens - states.reduce((n, s) => n + Math.min(s.prefillTokensWritten, s.request.promptLen), 0),
    prefillTokens,
    decodeTokens,
    prefillNs,
    decodeNs,
    decodeAppendNs: sum((r) => r.decodeAppendNs),
    attentionNs: sum((r) => r.attentionNs),
    medianDecodeStepNs: median(records.filter((r) => r.decodeTokens > 0).map((r) => r.decodeNs)),
    decodeTokensPerSec: decodeNs > 0 ? (decodeTokens / decodeNs) * 1e9 : 0,
    outputTokensPerSec: prefillNs + decodeNs > 0 ? (decodeTokens / (prefillNs + decodeNs)) * 1e9 : 0,
    meanDecodeBatch: decodeSteps ? decodeTokens / decodeSteps : 0,
    peakRunning: records.reduce((m, r) => Math.max(m, r.running), 0),
    meanSlotUtilisation: occupied.length ? occupied.reduce((n, r) => n + r.slotUtilisation, 0) / occupied.length : 1,
    meanPageFraction: steps ? sum((r) => r.pageFraction * r.span) / steps : 0,
    peakPageFraction: records.reduce((m, r) => Math.max(m, r.pageFraction), 0),
    meanLatencySteps: finished.length ? finished.reduce((n, s) => n + ((s.finishedAtStep as number) + 1 - s.request.arrivalStep), 0) / finished.length : NaN,
    refusedReasons: [...new Set(refused.slice(0, MAX_REFUSED_REASONS).map((s) => s.refusedReason as string))],
  };
}
