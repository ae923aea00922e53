/**
 * Decode-step benchmark: one layer's fused append of one token per sequence plus paged decode
 * attention over every sequence, through the real kernels of PagedKvCache, for a sweep of points
 * {model preset, method, batch (concurrency), context, page size}. Runs in Node (Dawn) and in the
 * browser; the CLI (src/cli/bench-command.ts) and the page call the same functions.
 *
 * Per point: build a cache for batch × (context + 1) tokens, fill `context` tokens per sequence with
 * random K/V through the cache-write kernel (in chunks copied on the GPU from one random buffer, so
 * host memory stays bounded), reserve and write the new token, bind the attention over
 * context + 1 tokens, then time the append and the attention separately with gpu-timer.
 * In the same run: the bandwidth probe (the roofline) and two floors: an empty dispatch, and an empty
 * dispatch that waits for the one before it (what each dispatch of a decode step pays: append →
 * attention → split-K merge each read what the previous one wrote).
 *
 * Figures use medians; GB are 10⁹ bytes, so bytes / ns = GB/s.
 */
import { KvConfigError, PagedKvCache, type KvCacheConfig } from '../cache/paged-kv-cache';
import type { AttentionWorkspace } from '../cache/attention-workspace';
import { KvCacheFullError } from '../cache/page-allocator';
import { GpuError, withGpuErrors, type GpuContext } from '../gpu/gpu-context';
import { createBandwidthProbe } from '../kernels/bandwidth-probe';
import { bindBuffers, formatBytes, storageBuffer } from '../kernels/gpu-buffers';
import type { DecodeKernelKind, DecodeTuning } from '../kernels/decode-tuning';
import { describePlan } from '../kernels/decode-plan';
import { getPipeline } from '../kernels/pipeline-cache';
import { DECODE_STORAGE_BINDINGS } from '../kernels/cache-pool';
import { BYTES_PER_WORD, cacheLayout, defaultHadamardBlock, DEFAULT_PAGE_SIZE, HADAMARD_BLOCKS, type CacheLayout, type KvMethod } from '../layout';
import { SeededRandom } from '../reference/random';
import { measureGpu, type GpuTiming, type MeasureOptions, type TimingMethod } from './gpu-timer';

// ---------------------------------------------------------------------------------------------
// Presets, methods, points

// The model table lives in src/models.ts (one table for every surface); re-exported for the bench's users.
export { findPreset, MODEL_PRESETS, PRESET_NAMES, type ModelPreset, type PresetName } from '../models';
import { MODEL_PRESETS, PRESET_NAMES, type PresetName } from '../models';

/**
 * Bench variants: the KV methods, int4-hadamard with V rotated too, and the int8-query methods. The
 * accuracy lab's ids with an explicit block (`int4-hadamard-b{B}[-kv][-q8]`, src/accuracy/methods.ts) are
 * taken as well, so one id names one method on every surface (random signs are the accuracy lab's only).
 */
export const BENCH_METHODS = ['fp16', 'int4', 'int4-hadamard', 'int4-hadamard-kv', 'int4-q8', 'int4-hadamard-q8'] as const;
export type BenchMethod = (typeof BENCH_METHODS)[number] | `int4-hadamard-b${number}${'' | '-kv'}${'' | '-q8'}`;

const BLOCK_ID = /^int4-hadamard-b(\d+)(-kv)?(-q8)?$/;

export function isBenchMethod(name: string): name is BenchMethod {
  const block = BLOCK_ID.exec(name);
  return (BENCH_METHODS as readonly string[]).includes(name) || (block !== null && (HADAMARD_BLOCKS as readonly number[]).includes(Number(block[1])));
}

export function benchMethodSpec(name: BenchMethod): { method: KvMethod; rotateV: boolean; queryInt8: boolean; hadamardBlock?: number } {
  const block = BLOCK_ID.exec(name);
  if (block) return { method: 'int4-hadamard', rotateV: block[2] !== undefined, queryInt8: block[3] !== undefined, hadamardBlock: Number(block[1]) };
  if (name === 'int4-hadamard-kv') return { method: 'int4-hadamard', rotateV: true, queryInt8: false };
  if (name === 'int4-q8') return { method: 'int4', rotateV: false, queryInt8: true };
  if (name === 'int4-hadamard-q8') return { method: 'int4-hadamard', rotateV: false, queryInt8: true };
  return { method: name as KvMethod, rotateV: false, queryInt8: false };
}

export interface DecodeStepPoint {
  preset: PresetName;
  method: KvMethod;
  /** int4-hadamard only (default false). */
  rotateV?: boolean;
  /** int4 and int4-hadamard: score K with an int8 query (the `-q8` methods; default false). */
  queryInt8?: boolean;
  /** int4-hadamard only: requested block (default 128), used as min(block, headDim). */
  hadamardBlock?: number;
  /** Sequences decoded together (concurrency). */
  batch: number;
  /** Tokens already cached per sequence; attention runs over context + 1. */
  context: number;
  /** Tokens per page (default 16). */
  pageSize?: number;
}

export type ResolvedPoint = Required<DecodeStepPoint>;

export function resolvePoint(point: DecodeStepPoint): ResolvedPoint {
  const preset = MODEL_PRESETS[point.preset];
  if (!preset) throw new KvConfigError(`unknown preset '${point.preset}'; known: ${PRESET_NAMES.join(', ')}`);
  for (const [name, value] of [['batch', point.batch], ['context', point.context]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new KvConfigError(`${name} must be a positive integer, got ${value}`);
  }
  const rotating = point.method === 'int4-hadamard';
  return {
    preset: point.preset,
    method: point.method,
    rotateV: rotating && Boolean(point.rotateV),
    queryInt8: (point.method === 'int4' || rotating) && Boolean(point.queryInt8),
    hadamardBlock: rotating ? (point.hadamardBlock === undefined ? defaultHadamardBlock(preset.headDim) : Math.min(point.hadamardBlock, preset.headDim)) : 1,
    batch: point.batch,
    context: point.context,
    pageSize: point.pageSize ?? DEFAULT_PAGE_SIZE,
  };
}

/** 'fp16', 'int4', 'int4-hadamard', 'int4-hadamard-kv', '-q8' for an int8 query, with '/B64' when the block is not the default. */
export function variantLabel(point: ResolvedPoint): string {
  const q8 = point.queryInt8 ? '-q8' : '';
  if (point.method !== 'int4-hadamard') return `${point.method}${q8}`;
  const headDim = MODEL_PRESETS[point.preset].headDim;
  const base = `${point.rotateV ? 'int4-hadamard-kv' : 'int4-hadamard'}${q8}`;
  return point.hadamardBlock === defaultHadamardBlock(headDim) ? base : `${base}/B${point.hadamardBlock}`;
}

export interface SweepSpec {
  presets: PresetName[];
  methods: BenchMethod[];
  batches: number[];
  contexts: number[];
  pageSizes?: number[];
  hadamardBlock?: number;
}

/** Concurrency 1–256 × context 512–32k, Llama-3.1-8B, FP16 vs INT4 vs INT4+Hadamard. */
export const DEFAULT_SWEEP: SweepSpec = {
  presets: ['llama-3.1-8b'],
  methods: ['fp16', 'int4', 'int4-hadamard'],
  batches: [1, 4, 16, 64, 256],
  contexts: [512, 2048, 8192, 32768],
};

/**
 * A handful of tiny points that finish in seconds on SwiftShader: every method at a ragged length
 * (41 tokens: two full pages and part of a third) and at one long enough for split-K (301 tokens).
 */
export const QUICK_SWEEP: SweepSpec = {
  presets: ['tiny-d64'],
  methods: ['fp16', 'int4', 'int4-hadamard', 'int4-hadamard-kv'],
  batches: [2],
  contexts: [40, 1000],  // 1000: long enough for split-K with the subgroup kernel (≥ 384 tokens per split)
};

/** Short timing for quick runs (SwiftShader): still warm-up, several samples, median and min. */
export const QUICK_TIMING: MeasureOptions = { warmupMs: 10, measureMs: 40, minSamples: 3, targetSampleMs: 2, maxDispatchesPerSample: 64 };
export const QUICK_PROBE_BYTES = 8 * 2 ** 20;

/** Every combination; the methods of one shape are adjacent so comparisons read side by side. */
export function sweepPoints(spec: SweepSpec): DecodeStepPoint[] {
  const points: DecodeStepPoint[] = [];
  for (const preset of spec.presets) {
    for (const pageSize of spec.pageSizes ?? [DEFAULT_PAGE_SIZE]) {
      for (const batch of spec.batches) {
        for (const context of spec.contexts) {
          for (const name of spec.methods) {
            const point: DecodeStepPoint = { preset, ...benchMethodSpec(name), batch, context, pageSize };
            if (spec.hadamardBlock !== undefined && point.hadamardBlock === undefined) point.hadamardBlock = spec.hadamardBlock;
            points.push(point);
          }
        }
      }
    }
  }
  return points;
}

// ---------------------------------------------------------------------------------------------
// Arithmetic (pure, tested by hand)

export function nsToUs(ns: number): number {
  return ns / 1e3;
}

/** bytes / ns = 10⁹ bytes per second. */
export function gbPerSecond(bytes: number, ns: number): number {
  return bytes / ns;
}

export function percentOf(value: number, reference: number): number {
  return (100 * value) / reference;
}

/** How many times faster than the baseline (> 1: faster). */
export function speedup(baselineTime: number, time: number): number {
  return baselineTime / time;
}

/** Extra time over the baseline, in percent of the baseline (negative: faster). */
export function overheadPercent(time: number, baselineTime: number): number {
  return (100 * (time - baselineTime)) / baselineTime;
}

/** Tokens generated per second when each step emits one token per sequence. */
export function tokensPerSecond(batch: number, stepNs: number): number {
  return (batch * 1e9) / stepNs;
}

/** Pages one sequence of `tokens` tokens occupies. */
export function pagesPerSequence(tokens: number, pageSize: number): number {
  return Math.ceil(tokens / pageSize);
}

/** The cache shape of a point: room for batch × (context + 1) tokens. */
export function pointCacheConfig(point: ResolvedPoint, pageShuffleSeed?: number): KvCacheConfig {
  const preset = MODEL_PRESETS[point.preset];
  const config: KvCacheConfig = {
    method: point.method,
    headDim: preset.headDim,
    numQueryHeads: preset.numQueryHeads,
    numKvHeads: preset.numKvHeads,
    numPages: point.batch * pagesPerSequence(point.context + 1, point.pageSize),
    pageSize: point.pageSize,
    rotateV: point.rotateV,
  };
  if (point.queryInt8) config.queryInt8 = true;
  if (point.method === 'int4-hadamard') config.hadamardBlock = point.hadamardBlock;
  if (pageShuffleSeed !== undefined) config.pageShuffleSeed = pageShuffleSeed;
  return config;
}

function layoutOf(config: KvCacheConfig): CacheLayout {
  return cacheLayout({ method: config.method, headDim: config.headDim, numKvHeads: config.numKvHeads, pageSize: config.pageSize ?? DEFAULT_PAGE_SIZE, numPages: config.numPages });
}

/** Bytes of one page in one of the K or V pools (padding included). */
export function pageBytes(layout: CacheLayout): number {
  return layout.pageWords * BYTES_PER_WORD;
}

/**
 * Bytes the append of `numTokens` tokens must read and write: it reads the new K and V rows
 * ([N, Hkv, D] f32 each) and one u32 slot per token; it writes `bytesPerToken` per token.
 */
export function appendBytes(layout: CacheLayout, numTokens: number): { read: number; written: number } {
  return {
    read: 2 * numTokens * layout.numKvHeads * layout.headDim * 4 + numTokens * 4,
    written: numTokens * layout.bytesPerToken,
  };
}

/**
 * Tokens whose KV cache (all `numLayers` layers, whole pages, scale/min included) fits in
 * `budgetBytes`: each layer gets budget / numLayers, filled with whole K+V pages.
 */
export function tokensInBudget(layout: CacheLayout, numLayers: number, budgetBytes: number): number {
  const pagesPerLayer = Math.floor(budgetBytes / numLayers / (2 * pageBytes(layout)));
  return pagesPerLayer * layout.pageSize;
}

export interface DeviceLimitsForFit {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupsPerDimension: number;
  /** Bounds how many buffers a pool may span (absent: WebGPU's default of 8, one buffer per pool). */
  maxStorageBuffersPerShaderStage?: number;
}

export interface SkipInfo {
  reason: string;
  /** What would fit instead (null when nothing of this shape would). */
  wouldFit: { maxContextAtBatch: number; maxBatchAtContext: number } | null;
}

/**
 * Whether a point's K and V pools fit the device's buffer/binding limits and `maxCacheBytes`
 * (K + V together); if not, why and what would fit. Pure: nothing is allocated.
 */
export function checkPointFits(limits: DeviceLimitsForFit, point: ResolvedPoint, maxCacheBytes: number): SkipInfo | null {
  if (point.batch > limits.maxComputeWorkgroupsPerDimension) {
    return { reason: `batch ${point.batch} exceeds maxComputeWorkgroupsPerDimension ${limits.maxComputeWorkgroupsPerDimension}`, wouldFit: null };
  }
  const layout = layoutOf(pointCacheConfig(point));
  const perPage = pageBytes(layout);
  const bufferLimit = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  const limitName = limits.maxStorageBufferBindingSize < limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
  // a pool may span several buffers, as many as the decode kernel can bind (src/kernels/cache-pool.ts)
  const maxBuffers = Math.max(1, Math.floor(((limits.maxStorageBuffersPerShaderStage ?? DECODE_STORAGE_BINDINGS) - DECODE_STORAGE_BINDINGS) / 2) + 1);
  const pagesByLimit = Math.floor(bufferLimit / perPage) * maxBuffers;
  const pagesByBudget = Math.floor(maxCacheBytes / (2 * perPage));
  const maxPages = Math.min(pagesByLimit, pagesByBudget);
  if (layout.numPages <= maxPages) return null;
  const reason = pagesByLimit < layout.numPages
    ? `each of the K and V pools needs ${formatBytes(layout.bufferBytes)}, over ${maxBuffers} × this device's ${limitName} of ${formatBytes(bufferLimit)}`
    : `the K and V pools need ${formatBytes(2 * layout.bufferBytes)}, over the bench's cache budget of ${formatBytes(maxCacheBytes)}`;
  const seqPages = pagesPerSequence(point.context + 1, point.pageSize);
  const maxContextAtBatch = Math.floor(maxPages / point.batch) * point.pageSize - 1;
  const maxBatchAtContext = Math.floor(maxPages / seqPages);
  return { reason, wouldFit: maxContextAtBatch < 1 && maxBatchAtContext < 1 ? null : { maxContextAtBatch: Math.max(0, maxContextAtBatch), maxBatchAtContext } };
}

// ---------------------------------------------------------------------------------------------
// Results

export interface TimingSummary {
  medianNs: number;
  minNs: number;
  method: TimingMethod;
  dispatchesPerSample: number;
  samplesNs: number[];
  /** Medians of sample sets discarded as unsteady before these samples (GpuTiming; empty: none). */
  unsteadyMediansNs: number[];
}

function summarize(t: GpuTiming): TimingSummary {
  return { medianNs: t.medianNs, minNs: t.minNs, method: t.method, dispatchesPerSample: t.dispatchesPerSample, samplesNs: t.samplesNs, unsteadyMediansNs: t.unsteadyMediansNs };
}

interface PointCommon {
  point: ResolvedPoint;
  /** e.g. 'int4-hadamard-kv' */
  variant: string;
  /** Bytes of one token in one layer's cache (K + V, all kv heads, scale/min): layout.bytesPerToken. */
  bytesPerToken: number;
  /** Tokens whose cache, over all the preset's layers, fits in `capacityBudgetBytes`. */
  tokensInBudget: number;
}

export interface MeasuredPoint extends PointCommon {
  status: 'ok';
  /** Split-K partitions the attention used (1: no merge pass). */
  numSplits: number;
  /** Query heads per attention workgroup (fewer than the GQA group on small grids). */
  headsPerWorkgroup: number;
  /** The decode kernel the attention ran ('matrix', 'subgroup', 'workgroup'). */
  kernel: DecodeKernelKind;
  /** Its pipeline key: format, matrix step (hardware/software) and configuration, tuning. */
  kernelDetail: string;
  /** The call's decode plan in one line (describePlan). */
  plan: string;
  appendUs: number;
  attentionUs: number;
  /** The decode step the default plan runs: fusedStepUs where it fuses, else append + attention (medians). */
  stepUs: number;
  /** The default plan fuses the cache write into the decode kernel (planDecode's fusedStep). */
  fused: boolean;
  /** The fused step (one dispatch, plus the merge with split-K) where the kernel has one, else null. */
  fusedStepUs: number | null;
  /**
   * Why the fused step, timed for comparison where the default plan does not fuse, could not run (e.g.
   * a `decodeTuning` its kernel does not take); null when it ran or was not timed. The point stays ok.
   */
  fusedStepError: string | null;
  /** append + attention as separate dispatches (medians). */
  separateStepUs: number;
  appendMinUs: number;
  attentionMinUs: number;
  /** batch / step time. */
  tokensPerSecond: number;
  /** PreparedAttention.bytesRead: K/V rows + scale/min (per head-group pass), block tables, lengths, q. */
  attentionBytes: number;
  appendBytesRead: number;
  appendBytesWritten: number;
  attentionGBps: number;
  /** attentionGBps as a percent of the probe's GB/s in the same run. */
  attentionPctOfProbe: number;
  /** fp16 time / this time at the same preset, batch, context, page size (null: no fp16 point). */
  speedupVsFp16: { step: number; attention: number } | null;
  /** int4-hadamard only: percent over plain int4 at the same shape (null: no int4 point). */
  rotationOverheadPct: { step: number; append: number; attention: number } | null;
  append: TimingSummary;
  attention: TimingSummary;
  fusedStep: TimingSummary | null;
}

export interface SkippedPoint extends PointCommon {
  status: 'skipped';
  reason: string;
  wouldFit: SkipInfo['wouldFit'];
}

export interface FailedPoint extends PointCommon {
  status: 'failed';
  error: string;
}

export type PointResult = MeasuredPoint | SkippedPoint | FailedPoint;

export interface ProbeResult {
  /** Bytes one probe dispatch streams. */
  bytes: number;
  gbps: number;
  /** Why this size (the default 1 GiB, a device limit, or a quick run). */
  note: string;
  timing: TimingSummary;
}

export interface DecodeBenchRun {
  probe: ProbeResult;
  /** An empty dispatch (one workgroup, no bindings): the per-dispatch floor. */
  floor: TimingSummary;
  /**
   * A dispatch that only bumps a word the previous dispatch wrote, so each waits for the one before
   * (a barrier between them): the floor of every dispatch in a chain, such as a decode step's.
   */
  dependentFloor: TimingSummary;
  points: PointResult[];
  timingMethod: TimingMethod;
  capacityBudgetBytes: number;
  maxCacheBytes: number;
  /** Decode-kernel tuning overrides every point ran with ({}: each kernel's defaults). */
  decodeTuning: Partial<DecodeTuning>;
  /** Where split-K partials were merged: as asked (`--merge dispatch|kernel`), or 'default' (the plan's rule). */
  merge: 'dispatch' | 'kernel' | 'default';
}

export interface DecodeBenchOptions {
  /** Timing of every measurement (probe, floor, append, attention). */
  timing?: MeasureOptions;
  /** Probe size (default DEFAULT_PROBE_BYTES = 1 GiB, reduced to the device's limits). */
  probeBytes?: number;
  /** Skip points whose K + V pools exceed this (default 8 GiB). */
  maxCacheBytes?: number;
  /** Report tokens that fit in this much memory (default 16 GiB). */
  capacityBudgetBytes?: number;
  /** Shuffle physical pages with this seed, as a serving cache would be (default 1; null: in order). */
  pageShuffleSeed?: number | null;
  /** Seed of the random K/V/q data. */
  seed?: number;
  /** Decode-kernel tuning overrides (default: each kernel's defaults, DEFAULT_*DECODE_TUNING). */
  decodeTuning?: Partial<DecodeTuning>;
  /** Force this decode kernel for every point (default: each method's automatic choice). */
  decodeKernel?: DecodeKernelKind;
  /** Split-K merged in the decode dispatch (true) or by the merge kernel (false) at every point (default: the plan's rule). */
  mergeInDispatch?: boolean;
  /** Called after each point (done counts finished points). */
  onProgress?: (done: number, total: number, point: PointResult) => void;
}

/** The smallest probe docs/design.md, "Measuring" accepts as a roofline. */
export const DESIGN_PROBE_BYTES = 256 * 2 ** 20;
/**
 * The probe a full run streams (reduced to the device's limits). Each timed repetition starts and
 * drains the GPU, which costs a short probe a visible share: on the H200 a 256 MiB probe (~60 µs) read
 * at 4.16 TB/s, 1 GiB at 4.50 and 2 GiB at 4.58 TB/s, while a decode attention over 1 GiB of K/V
 * takes ~300 µs. 1 GiB is the size of the attention it is compared with.
 */
export const DEFAULT_PROBE_BYTES = 2 ** 30;
export const DEFAULT_MAX_CACHE_BYTES = 8 * 2 ** 30;
export const DEFAULT_CAPACITY_BUDGET_BYTES = 16 * 2 ** 30;
/** Bytes of the random source that fills caches, queries and the probe. */
const FILL_SOURCE_BYTES = 16 * 2 ** 20;
/** Random floats generated on the CPU, tiled to FILL_SOURCE_BYTES. */
const FILL_TILE_FLOATS = 1 << 16;

/** Adds speedup vs fp16 and rotation overhead vs int4 between points of the same shape (in place). */
export function addComparisons(results: PointResult[]): PointResult[] {
  const shapeKey = (p: ResolvedPoint) => `${p.preset}|${p.batch}|${p.context}|${p.pageSize}`;
  const measured = results.filter((r): r is MeasuredPoint => r.status === 'ok');
  const fp16 = new Map(measured.filter((r) => r.point.method === 'fp16').map((r) => [shapeKey(r.point), r]));
  // rotation overhead: int4-hadamard over int4 with the same query precision
  const int4 = new Map(measured.filter((r) => r.point.method === 'int4').map((r) => [`${shapeKey(r.point)}|${r.point.queryInt8}`, r]));
  for (const r of measured) {
    const base = r.point.method === 'fp16' ? undefined : fp16.get(shapeKey(r.point));
    r.speedupVsFp16 = base ? { step: speedup(base.stepUs, r.stepUs), attention: speedup(base.attentionUs, r.attentionUs) } : null;
    const plain = r.point.method === 'int4-hadamard' ? int4.get(`${shapeKey(r.point)}|${r.point.queryInt8}`) : undefined;
    r.rotationOverheadPct = plain
      ? {
          step: overheadPercent(r.stepUs, plain.stepUs),
          append: overheadPercent(r.appendUs, plain.appendUs),
          attention: overheadPercent(r.attentionUs, plain.attentionUs),
        }
      : null;
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// GPU work

const EMPTY_KERNEL = { key: 'bench/empty-dispatch', code: () => '@compute @workgroup_size(1) fn main() {}' };
const DEPENDENT_KERNEL = {
  key: 'bench/dependent-dispatch',
  code: () => '@group(0) @binding(0) var<storage, read_write> word: array<u32, 1>;\n@compute @workgroup_size(1) fn main() { word[0] += 1u; }',
};

/** A storage buffer of random f32 in [-2, 2), tiled from a small CPU array. */
function randomSource(ctx: GpuContext, bytes: number, seed: number): GPUBuffer {
  const rng = new SeededRandom(seed);
  const tile = Float32Array.from({ length: FILL_TILE_FLOATS }, () => 4 * rng.uniform() - 2);
  const buffer = storageBuffer(ctx, 'bench random source', bytes);
  for (let offset = 0; offset < buffer.size; offset += tile.byteLength) {
    ctx.device.queue.writeBuffer(buffer, offset, tile.buffer, 0, Math.min(tile.byteLength, buffer.size - offset));
  }
  return buffer;
}

/** Copies `bytes` from the (smaller, repeating) source into `target`. */
function copyRepeating(encoder: GPUCommandEncoder, source: GPUBuffer, target: GPUBuffer, bytes: number): void {
  for (let offset = 0; offset < bytes; offset += source.size) {
    encoder.copyBufferToBuffer(source, 0, target, offset, Math.min(source.size, bytes - offset));
  }
}

/** Largest probe buffer: `wanted` bytes reduced to the binding/buffer limits, multiple of 16. */
function probeSize(ctx: GpuContext, wanted: number): { bytes: number; note: string } {
  const limit = Math.min(ctx.limits.maxBufferSize, ctx.limits.maxStorageBufferBindingSize);
  const bytes = Math.floor(Math.min(wanted, limit) / 16) * 16;
  if (bytes < wanted) {
    const name = ctx.limits.maxStorageBufferBindingSize < ctx.limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
    return { bytes, note: `${formatBytes(bytes)}: the largest buffer this device binds (${name})` };
  }
  if (bytes >= DESIGN_PROBE_BYTES) return { bytes, note: `${formatBytes(bytes)} read-only stream` };
  return { bytes, note: `${formatBytes(bytes)} as requested (a quick run; a roofline needs ≥ ${formatBytes(DESIGN_PROBE_BYTES)}, a full run streams ${formatBytes(DEFAULT_PROBE_BYTES)})` };
}

/**
 * Probe grid: the probe's own default on GPUs; few workgroups on software adapters, where every
 * workgroup is a costly fiber (SwiftShader runs 2048 × 256 invocations of a 1 MiB probe in ~1 s).
 */
function probeWorkgroups(ctx: GpuContext): number | undefined {
  return ctx.adapterInfo.isFallbackAdapter ? 32 : undefined;
}

async function measureProbe(ctx: GpuContext, wantedBytes: number, timing: MeasureOptions, seed: number): Promise<ProbeResult> {
  let { bytes, note } = probeSize(ctx, wantedBytes);
  for (;;) {
    let source: GPUBuffer | null = null;
    try {
      source = await withGpuErrors(ctx.device, 'allocating the bandwidth probe', () => randomSource(ctx, bytes, seed));
      const probe = await createBandwidthProbe(ctx, source, probeWorkgroups(ctx));
      try {
        const t = await measureGpu(ctx, (pass) => probe.encode(pass), { ...timing, label: 'bandwidth probe' });
        return { bytes, gbps: gbPerSecond(bytes, t.medianNs), note, timing: summarize(t) };
      } finally {
        probe.destroy();
      }
    } catch (e) {
      // Out of memory: halve, down to 16 MiB.
      if (!(e instanceof GpuError && e.kind === 'out-of-memory') || bytes <= 16 * 2 ** 20) throw e;
      bytes = Math.floor(bytes / 2 / 16) * 16;
      note = `${formatBytes(bytes)}: larger probe buffers ran out of memory`;
    } finally {
      source?.destroy();
    }
  }
}

/**
 * One workgroup of an empty kernel per dispatch; `dependent`: the kernel bumps a word, so each
 * dispatch waits for the previous one (a barrier between them), as a decode step's dispatches do.
 */
async function measureFloor(ctx: GpuContext, timing: MeasureOptions, dependent: boolean): Promise<TimingSummary> {
  const pipeline = await getPipeline(ctx.device, dependent ? DEPENDENT_KERNEL : EMPTY_KERNEL);
  const word = dependent ? storageBuffer(ctx, 'dependent dispatch word', 4) : null;
  try {
    const group = word ? bindBuffers(ctx.device, pipeline, [word], 'dependent dispatch') : null;
    const t = await measureGpu(
      ctx,
      (pass) => {
        pass.setPipeline(pipeline);
        if (group) pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(1);
      },
      { ...timing, label: dependent ? 'dependent empty dispatch' : 'empty dispatch' },
    );
    return summarize(t);
  } finally {
    word?.destroy();
  }
}

/** Appends `tokensPerSeq` tokens to every sequence through the cache-write kernel, in bounded chunks. */
async function fillCache(ctx: GpuContext, cache: PagedKvCache, seqIds: number[], tokensPerSeq: number, source: GPUBuffer): Promise<void> {
  const rowBytes = cache.config.numKvHeads * cache.config.headDim * 4;
  const chunkTokens = Math.max(1, Math.floor(Math.min(source.size, ctx.limits.maxStorageBufferBindingSize) / rowBytes));
  const remaining = seqIds.map(() => tokensPerSeq);
  let seq = 0;
  let chunks = 0;
  await withGpuErrors(ctx.device, 'filling the KV cache', async () => {
    while (seq < seqIds.length) {
      const ids: number[] = [];
      const counts: number[] = [];
      let budget = chunkTokens;
      while (seq < seqIds.length && budget > 0) {
        const take = Math.min(remaining[seq], budget);
        ids.push(seqIds[seq]);
        counts.push(take);
        remaining[seq] -= take;
        budget -= take;
        if (remaining[seq] === 0) seq++;
      }
      const prepared = await cache.prepareAppend(ids, counts);
      const encoder = ctx.device.createCommandEncoder();
      copyRepeating(encoder, source, prepared.kInput, prepared.numTokens * rowBytes);
      copyRepeating(encoder, source, prepared.vInput, prepared.numTokens * rowBytes);
      const pass = encoder.beginComputePass();
      prepared.encode(pass);
      pass.end();
      ctx.device.queue.submit([encoder.finish()]);
      prepared.destroy(); // freed once the submitted work completes
      // Keep a bounded amount of work (and freed-but-pending memory) in flight.
      if (++chunks % 4 === 0) await ctx.device.queue.onSubmittedWorkDone();
    }
    await ctx.device.queue.onSubmittedWorkDone();
  });
}

function isSkippable(e: unknown): boolean {
  return e instanceof KvConfigError || e instanceof KvCacheFullError || (e instanceof GpuError && e.kind === 'out-of-memory');
}

interface ResolvedBenchOptions {
  timing: MeasureOptions;
  probeBytes: number;
  maxCacheBytes: number;
  capacityBudgetBytes: number;
  pageShuffleSeed: number | null;
  seed: number;
  decodeTuning: Partial<DecodeTuning>;
  decodeKernel: DecodeKernelKind | undefined;
  mergeInDispatch: boolean | undefined;
}

async function runPoint(ctx: GpuContext, point: ResolvedPoint, source: GPUBuffer, probe: ProbeResult, o: ResolvedBenchOptions): Promise<PointResult> {
  const preset = MODEL_PRESETS[point.preset];
  const config = pointCacheConfig(point, o.pageShuffleSeed ?? undefined);
  const layout = layoutOf(config);
  const common: PointCommon = {
    point,
    variant: variantLabel(point),
    bytesPerToken: layout.bytesPerToken,
    tokensInBudget: tokensInBudget(layout, preset.numLayers, o.capacityBudgetBytes),
  };
  const skip = checkPointFits(ctx.limits, point, o.maxCacheBytes);
  if (skip) return { ...common, status: 'skipped', ...skip };

  let cache: PagedKvCache | null = null;
  let append: Awaited<ReturnType<PagedKvCache['prepareAppend']>> | null = null;
  let attention: Awaited<ReturnType<PagedKvCache['prepareAttention']>> | null = null;
  let workspace: AttentionWorkspace | null = null;
  try {
    cache = await PagedKvCache.create(ctx, config);
    const seqIds = Array.from({ length: point.batch }, () => cache!.createSequence());
    await fillCache(ctx, cache, seqIds, point.context, source);
    // The decode step: one new token per sequence, then attention over context + 1 tokens.
    append = await cache.prepareAppend(seqIds, seqIds.map(() => 1));
    attention = await cache.prepareAttention(seqIds, { tuning: o.decodeTuning, kernel: o.decodeKernel, mergeInDispatch: o.mergeInDispatch });
    const encoder = ctx.device.createCommandEncoder();
    const rowBytes = point.batch * preset.numKvHeads * preset.headDim * 4;
    copyRepeating(encoder, source, append.kInput, rowBytes);
    copyRepeating(encoder, source, append.vInput, rowBytes);
    copyRepeating(encoder, source, attention.queryBuffer, point.batch * preset.numQueryHeads * preset.headDim * 4);
    const pass = encoder.beginComputePass();
    append.encode(pass); // the new token's slot holds real data before attention reads it
    pass.end();
    await withGpuErrors(ctx.device, 'first decode-step append', () => {
      ctx.device.queue.submit([encoder.finish()]);
      return ctx.device.queue.onSubmittedWorkDone();
    });

    const appendWork = append;
    const attentionWork = attention;
    const label = `${preset.name} ${common.variant} batch ${point.batch} context ${point.context}`;
    const appendTiming = await measureGpu(ctx, (p) => appendWork.encode(p), { ...o.timing, label: `append, ${label}` });
    const attentionTiming = await measureGpu(ctx, (p) => attentionWork.encode(p), { ...o.timing, label: `attention, ${label}` });
    // The fused step over the same state, where the kernel has one: its new token is the one just
    // appended (each run re-encodes and re-stores it from the same rows, as the first run did).
    const stepOptions = { tuning: o.decodeTuning, kernel: o.decodeKernel, mergeInDispatch: o.mergeInDispatch };
    const fusedByDefault = cache.fusesDecodeStep(point.batch, stepOptions);
    let fusedTiming: GpuTiming | null = null;
    let fusedStepError: string | null = null;
    if (fusedByDefault || canFuse(cache, point.batch, stepOptions)) {
      try {
        workspace = cache.createAttentionWorkspace();
        const fused = await workspace.prepareFusedStep(seqIds, stepOptions);
        const copies = ctx.device.createCommandEncoder();
        copies.copyBufferToBuffer(append.kInput, 0, fused.kInput, 0, rowBytes);
        copies.copyBufferToBuffer(append.vInput, 0, fused.vInput, 0, rowBytes);
        copies.copyBufferToBuffer(attention.queryBuffer, 0, fused.queryBuffer, 0, point.batch * preset.numQueryHeads * preset.headDim * 4);
        ctx.device.queue.submit([copies.finish()]);
        fusedTiming = await measureGpu(ctx, (p) => fused.encode(p), { ...o.timing, label: `fused step, ${label}` });
      } catch (e) {
        // only a comparison where the default plan keeps the write separate: the point's step stands without it
        if (fusedByDefault || (e instanceof GpuError && e.kind === 'device-lost')) throw e;
        fusedStepError = e instanceof Error ? e.message : String(e);
      }
    }
    const separateNs = appendTiming.medianNs + attentionTiming.medianNs;
    const stepNs = fusedByDefault && fusedTiming ? fusedTiming.medianNs : separateNs;
    const attentionGBps = gbPerSecond(attention.bytesRead, attentionTiming.medianNs);
    const bytes = appendBytes(layout, point.batch);
    return {
      ...common,
      status: 'ok',
      numSplits: attention.plan.splits.numSplits,
      headsPerWorkgroup: attention.headsPerWorkgroup,
      kernel: attention.kernel,
      kernelDetail: attention.kernelDetail,
      plan: describePlan(attention.plan),
      appendUs: nsToUs(appendTiming.medianNs),
      attentionUs: nsToUs(attentionTiming.medianNs),
      stepUs: nsToUs(stepNs),
      fused: fusedByDefault,
      fusedStepUs: fusedTiming ? nsToUs(fusedTiming.medianNs) : null,
      fusedStepError,
      separateStepUs: nsToUs(separateNs),
      appendMinUs: nsToUs(appendTiming.minNs),
      attentionMinUs: nsToUs(attentionTiming.minNs),
      tokensPerSecond: tokensPerSecond(point.batch, stepNs),
      attentionBytes: attention.bytesRead,
      appendBytesRead: bytes.read,
      appendBytesWritten: bytes.written,
      attentionGBps,
      attentionPctOfProbe: percentOf(attentionGBps, probe.gbps),
      speedupVsFp16: null,
      rotationOverheadPct: null,
      append: summarize(appendTiming),
      attention: summarize(attentionTiming),
      fusedStep: fusedTiming ? summarize(fusedTiming) : null,
    };
  } catch (e) {
    if (e instanceof GpuError && e.kind === 'device-lost') throw e;
    const message = e instanceof Error ? e.message : String(e);
    if (isSkippable(e)) return { ...common, status: 'skipped', reason: message, wouldFit: null };
    return { ...common, status: 'failed', error: message };
  } finally {
    workspace?.destroy();
    attention?.destroy();
    append?.destroy();
    cache?.destroy();
  }
}

/** Whether the cache's decode kernel has a fused step for this call (whatever the default rule says). */
function canFuse(cache: PagedKvCache, numSeqs: number, options: { tuning?: Partial<DecodeTuning>; kernel?: DecodeKernelKind; mergeInDispatch?: boolean }): boolean {
  try {
    return cache.fusesDecodeStep(numSeqs, { ...options, fuse: true });
  } catch {
    return false;
  }
}

/**
 * Measures the probe, the two dispatch floors and every point, in that order, on one device.
 * Points that do not fit are returned as 'skipped' (with what would fit); a point whose GPU work
 * fails is returned as 'failed'; only device loss aborts the run.
 */
export async function runDecodeBench(ctx: GpuContext, points: DecodeStepPoint[], options: DecodeBenchOptions = {}): Promise<DecodeBenchRun> {
  const o: ResolvedBenchOptions = {
    timing: options.timing ?? {},
    probeBytes: options.probeBytes ?? DEFAULT_PROBE_BYTES,
    maxCacheBytes: options.maxCacheBytes ?? DEFAULT_MAX_CACHE_BYTES,
    capacityBudgetBytes: options.capacityBudgetBytes ?? DEFAULT_CAPACITY_BUDGET_BYTES,
    pageShuffleSeed: options.pageShuffleSeed === undefined ? 1 : options.pageShuffleSeed,
    seed: options.seed ?? 1234,
    decodeTuning: { ...options.decodeTuning },
    decodeKernel: options.decodeKernel,
    mergeInDispatch: options.mergeInDispatch,
  };
  const resolved = points.map(resolvePoint);
  const probe = await measureProbe(ctx, o.probeBytes, o.timing, o.seed);
  const floor = await measureFloor(ctx, o.timing, false);
  const dependentFloor = await measureFloor(ctx, o.timing, true);
  const sourceBytes = Math.floor(Math.min(FILL_SOURCE_BYTES, ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize) / 16) * 16;
  const source = randomSource(ctx, sourceBytes, o.seed + 1);
  const results: PointResult[] = [];
  try {
    for (const point of resolved) {
      const result = await runPoint(ctx, point, source, probe, o);
      results.push(result);
      addComparisons(results);
      options.onProgress?.(results.length, resolved.length, result);
    }
  } finally {
    source.destroy();
  }
  return {
    probe,
    floor,
    dependentFloor,
    points: results,
    timingMethod: probe.timing.method,
    capacityBudgetBytes: o.capacityBudgetBytes,
    maxCacheBytes: o.maxCacheBytes,
    decodeTuning: o.decodeTuning,
    merge: o.mergeInDispatch === undefined ? 'default' : o.mergeInDispatch ? 'dispatch' : 'kernel',
  };
}
