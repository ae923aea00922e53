/**
 * Tuning rules of the decode kernels, each next to the H200 measurement that chose it (docs/tuning.md):
 * the kernels' default tunings, their validation, heads per workgroup for a grid, the subgroup
 * kernel's automatic tokens per step and the split-K partition. planDecode (decode-plan.ts) applies
 * them once per call; `bench --decode-tuning` and `attention(..., { tuning })` override them.
 */
import type { CacheLayout } from '../layout';

/** The decode kernels: tensor cores (paged-decode-matrix.wgsl), subgroups, workgroup memory. */
export type DecodeKernelKind = 'matrix' | 'subgroup' | 'workgroup';
export const DECODE_KERNEL_KINDS: readonly DecodeKernelKind[] = ['matrix', 'subgroup', 'workgroup'];

/** One of DECODE_KERNEL_KINDS (for command lines and options from outside TypeScript). */
export function isDecodeKernelKind(name: unknown): name is DecodeKernelKind {
  return (DECODE_KERNEL_KINDS as readonly unknown[]).includes(name);
}


/** At most this many query heads share a workgroup (registers: 8 accumulators of 8 values each). */
export const MAX_HEADS_PER_WORKGROUP = 8;
/** At most this many f32 of queries per workgroup (HEADS_PER_WG × HEAD_DIM) to bound workgroup memory. */
const MAX_QUERY_FLOATS_PER_WORKGROUP = 1024;

/** Per-GPU tuning of the decode kernel (defaults: DEFAULT_DECODE_TUNING). */
export interface DecodeTuning {
  /** Invocations per workgroup = tokens per tile: 64, 128 or 256. */
  workgroupSize: number;
  /** Cap on query heads per workgroup (fewer: less state per invocation, more K/V re-reads). */
  maxHeadsPerWorkgroup: number;
  /**
   * Small grids: while sequences × kv heads × head groups is below this many workgroups, a GQA group's
   * query heads are spread over more workgroups (the next smaller divisor of the group) before the
   * context is split (0: never). See headsForGrid().
   */
  splitHeadsBelowWorkgroups: number;
  /** V loads each invocation keeps in flight (workgroup-memory kernel). */
  vPrefetch: number;
  /**
   * Subgroup kernel: lanes that share one token (a power of two; 0 = automatic, see
   * lanesPerToken()). Capped by the adapter's smallest subgroup and by the format's load width.
   */
  lanesPerToken: number;
  /** Split-K: split a sequence's context until the grid has about this many workgroups… */
  targetWorkgroups: number;
  /** …but give each split at least this many tokens. */
  minTokensPerSplit: number;
  /**
   * Subgroup kernel: consecutive tokens each lane group loads before using any (loads in flight); 1, 2,
   * 4 or 8, halved until it divides the page size; 0 = automatic (autoTokensPerStep()).
   */
  tokensPerStep: number;
  /**
   * Matrix kernel: tokens per tile (one staging round and four barriers), a multiple of the matrix
   * configuration's M and K; 0 = automatic (DEFAULT_MATRIX_TILE_TOKENS).
   */
  tileTokens: number;
  /**
   * Matrix kernel: subgroups per workgroup, each running its own stream of token tiles (1, 2, 4 or 8;
   * fewer where workgroup memory is short); 0 = the serial variant (one tile stream for the whole
   * workgroup, shaders/paged-decode-matrix-serial.wgsl), kept to time both in one run.
   */
  matrixSubgroups: number;
  /**
   * Matrix kernel: lanes of a subgroup that share one group of query heads in the softmax, each lane
   * one token (or more) of the tile; the subgroup's other lanes take the other heads. A power of two
   * dividing the subgroup size; 0 = automatic (the subgroup size, or the tile's tokens if fewer).
   */
  matrixTokenLanes: number;
  /**
   * Subgroup kernel, f32 query: 1 keeps the scaled queries in workgroup memory and reads them in the
   * token loop (fewer registers per invocation, so more workgroups per SM); 0 holds them in registers.
   * Off by default: not yet timed on a GPU (the 64-invocation rule, autoWorkgroupSize, shows that
   * register-heavy INT4 workgroups are bound by how many fit an SM, which this would change).
   */
  queryInWorkgroup: number;
}

/**
 * Subgroups (token streams) per matrix-kernel workgroup unless the tuning says otherwise. On the H200
 * (int4-hadamard, Llama-3.1-8B heads, batch 64 × 4k; docs/tuning.md): 4 streams 1156 µs, 2 streams 2099,
 * the serial kernel 1613; at batch 1 × 4k 2 streams 80.8 against 122 serial.
 */
export const DEFAULT_MATRIX_SUBGROUPS = 4;

/**
 * Workgroup-memory kernel (paged-decode-workgroup.wgsl), measured best on an NVIDIA H200 through Dawn/Vulkan
 * (batch 64, context 4096, 32/8 heads, D=128; docs/tuning.md): 64 invocations and 2 query heads per
 * workgroup; 4 or 8 heads per workgroup ran ~2× slower (per-invocation state grows with the head count).
 */
export const DEFAULT_DECODE_TUNING: DecodeTuning = {
  workgroupSize: 64,
  maxHeadsPerWorkgroup: 2,
  splitHeadsBelowWorkgroups: 0,
  vPrefetch: 8,
  lanesPerToken: 0,
  tokensPerStep: 0,
  tileTokens: 0,
  matrixSubgroups: DEFAULT_MATRIX_SUBGROUPS,
  matrixTokenLanes: 0,
  queryInWorkgroup: 0,
  targetWorkgroups: 2048,
  minTokensPerSplit: 128,
};

/**
 * Subgroup kernel (paged-decode-subgroup.wgsl), measured best on the same H200 and workload for INT4
 * and FP16 alike: 128 invocations (64 for INT4 on large grids: autoWorkgroupSize), the whole GQA group
 * (4 heads) per workgroup; lanes per token and tokens per step chosen per format and shape (LANE_FORMATS). Split-K: each workgroup's prologue and
 * merge cost more than a workgroup-memory tile loop's, so the kernel wants few, long workgroups: about
 * two per SM (256 on the H200's 132) and ≥ 384 tokens each were best from batch 1 × 4k to batch 64 × 4k
 * (docs/tuning.md). Grids of fewer than 64 workgroups (e.g. batch 1–4 with 8 kv heads) spread a GQA
 * group's heads over more workgroups first: Llama-3.1-8B heads at batch 1 × 1k, attention 21.0 → 13.7 µs
 * with 1 head per workgroup; batch 4 × 4k 37.6 → 35.0 µs with 2.
 */
export const DEFAULT_SUBGROUP_DECODE_TUNING: DecodeTuning = {
  workgroupSize: 128,
  maxHeadsPerWorkgroup: 4,
  splitHeadsBelowWorkgroups: 64,
  vPrefetch: 8,
  lanesPerToken: 0,
  tokensPerStep: 0,
  tileTokens: 0,
  matrixSubgroups: DEFAULT_MATRIX_SUBGROUPS,
  matrixTokenLanes: 0,
  queryInWorkgroup: 0,
  targetWorkgroups: 256,
  minTokensPerSplit: 384,
};

/**
 * Matrix kernel (paged-decode-matrix.wgsl): one subgroup of 32 per workgroup on the H200 (raised to
 * the adapter's largest subgroup), the GQA group in one workgroup; many short workgroups.
 */
export const DEFAULT_MATRIX_DECODE_TUNING: DecodeTuning = {
  workgroupSize: 32,
  maxHeadsPerWorkgroup: 8,
  splitHeadsBelowWorkgroups: 64,
  vPrefetch: 8,
  lanesPerToken: 0,
  tokensPerStep: 0,
  tileTokens: 0,
  matrixSubgroups: DEFAULT_MATRIX_SUBGROUPS,
  matrixTokenLanes: 0,
  queryInWorkgroup: 0,
  targetWorkgroups: 1024,
  minTokensPerSplit: 256,
};


/** The tuning with the kernel's defaults filled in, validated. */
export function resolveTuning(tuning: Partial<DecodeTuning> = {}, kind: DecodeKernelKind = 'workgroup'): DecodeTuning {
  const defaults = kind === 'subgroup' ? DEFAULT_SUBGROUP_DECODE_TUNING : kind === 'matrix' ? DEFAULT_MATRIX_DECODE_TUNING : DEFAULT_DECODE_TUNING;
  const t = { ...defaults, ...tuning };
  const sizes = kind === 'matrix' ? [32, 64, 128, 256] : [64, 128, 256];
  if (!sizes.includes(t.workgroupSize)) throw new Error(`decode workgroupSize must be one of ${sizes.join(', ')} for the ${kind} kernel, got ${t.workgroupSize}`);
  if (!Number.isInteger(t.maxHeadsPerWorkgroup) || t.maxHeadsPerWorkgroup < 1 || t.maxHeadsPerWorkgroup > MAX_HEADS_PER_WORKGROUP) {
    throw new Error(`maxHeadsPerWorkgroup must be in [1, ${MAX_HEADS_PER_WORKGROUP}], got ${t.maxHeadsPerWorkgroup}`);
  }
  if (!Number.isInteger(t.splitHeadsBelowWorkgroups) || t.splitHeadsBelowWorkgroups < 0) {
    throw new Error(`splitHeadsBelowWorkgroups must be a non-negative integer, got ${t.splitHeadsBelowWorkgroups}`);
  }
  if (!Number.isInteger(t.vPrefetch) || t.vPrefetch < 1 || t.vPrefetch > 32) throw new Error(`vPrefetch must be in [1, 32], got ${t.vPrefetch}`);
  if (!(t.lanesPerToken === 0 || (Number.isInteger(t.lanesPerToken) && t.lanesPerToken >= 1 && t.lanesPerToken <= 32 && (t.lanesPerToken & (t.lanesPerToken - 1)) === 0))) {
    throw new Error(`lanesPerToken must be 0 (automatic) or a power of two in [1, 32], got ${t.lanesPerToken}`);
  }
  if (!Number.isInteger(t.targetWorkgroups) || t.targetWorkgroups < 1) throw new Error(`targetWorkgroups must be a positive integer, got ${t.targetWorkgroups}`);
  if (!Number.isInteger(t.minTokensPerSplit) || t.minTokensPerSplit < 1) throw new Error(`minTokensPerSplit must be a positive integer, got ${t.minTokensPerSplit}`);
  if (![0, 1, 2, 4, 8].includes(t.tokensPerStep)) throw new Error(`tokensPerStep must be 0 (automatic), 1, 2, 4 or 8, got ${t.tokensPerStep}`);
  if (![0, 8, 16, 32, 64].includes(t.tileTokens)) throw new Error(`tileTokens must be 0 (automatic), 8, 16, 32 or 64, got ${t.tileTokens}`);
  if (![0, 1, 2, 4, 8].includes(t.matrixSubgroups)) throw new Error(`matrixSubgroups must be 0 (the serial matrix kernel), 1, 2, 4 or 8, got ${t.matrixSubgroups}`);
  if (![0, 1, 2, 4, 8, 16, 32, 64, 128].includes(t.matrixTokenLanes)) throw new Error(`matrixTokenLanes must be 0 (automatic) or a power of two up to 128, got ${t.matrixTokenLanes}`);
  if (t.queryInWorkgroup !== 0 && t.queryInWorkgroup !== 1) throw new Error(`queryInWorkgroup must be 0 (queries in registers) or 1 (in workgroup memory), got ${t.queryInWorkgroup}`);
  return t;
}


/** Query heads per workgroup: the whole GQA group when it fits, else the largest divisor that does. */
export function headsPerWorkgroup(groupSize: number, headDim: number, maxHeads = MAX_HEADS_PER_WORKGROUP): number {
  const cap = Math.min(maxHeads, Math.max(1, Math.floor(MAX_QUERY_FLOATS_PER_WORKGROUP / headDim)));
  let heads = Math.min(groupSize, cap);
  while (groupSize % heads !== 0) heads--;
  return heads;
}

/**
 * Query heads per workgroup for a grid of `numSeqs` sequences: headsPerWorkgroup()'s choice, lowered to
 * the next smaller divisor of the GQA group while numSeqs × numKvHeads × (group / heads) is below
 * tuning.splitHeadsBelowWorkgroups. At batch 1 the K/V bytes are few (a second read comes from L2),
 * and more, shorter workgroups beat more splits: each split adds a merge of partial results.
 */
export function headsForGrid(groupSize: number, headDim: number, numSeqs: number, numKvHeads: number, tuning: Pick<DecodeTuning, 'maxHeadsPerWorkgroup' | 'splitHeadsBelowWorkgroups'>): number {
  let heads = headsPerWorkgroup(groupSize, headDim, tuning.maxHeadsPerWorkgroup);
  while (heads > 1 && numSeqs * numKvHeads * (groupSize / heads) < tuning.splitHeadsBelowWorkgroups) {
    heads = headsPerWorkgroup(groupSize, headDim, heads - 1);
  }
  return heads;
}

/** Tokens per step of the subgroup kernel unless autoTokensPerStep() says otherwise. */
export const AUTO_TOKENS_PER_STEP = 4;

/**
 * Tokens per step the subgroup kernel takes when the tuning says 0: AUTO_TOKENS_PER_STEP (4), except
 * for memory-bound FP16 grids (one query head per workgroup, ≥ 32 bytes of K per lane and token, at
 * least tuning.targetWorkgroups workgroups before split-K), which ran faster with 2 on the H200
 * (Llama-2-7B heads: batch 16 × 4k 239 vs 249 µs, batch 64 × 512 133 vs 146, batch 256 × 512 500 vs
 * 528). With 4 heads per workgroup (Llama-3.1-8B, batch 64 × 4k: 286 vs 293 µs, batch 16: 87 vs 90),
 * on small grids (Llama-2-7B batch 1 × 32k: 133 vs 141 µs), with 16 bytes per lane (head_dim 64: 82 vs
 * 110 µs) and for INT4 (265 vs 275 µs) 4 was faster.
 */
export function autoTokensPerStep(layout: CacheLayout, lanes: number, headsPerWg: number, gridWorkgroups: number, tuning: Pick<DecodeTuning, 'targetWorkgroups'>): number {
  const laneKBytes = (layout.headDim / lanes) * 2;
  const memoryBoundFp16 = layout.method === 'fp16' && headsPerWg === 1 && laneKBytes >= 32 && gridWorkgroups >= tuning.targetWorkgroups;
  return memoryBoundFp16 ? 2 : AUTO_TOKENS_PER_STEP;
}


/** From this many workgroups before split-K, INT4 grids of the subgroup kernel take 64 invocations (autoWorkgroupSize). */
export const INT4_SMALL_WORKGROUPS_FROM = 512;

/**
 * Invocations per subgroup-kernel workgroup where the tuning does not set them: 64 for INT4 caches
 * (int4, int4-hadamard, either query) whose grid has at least INT4_SMALL_WORKGROUPS_FROM workgroups of
 * ≥ 4 query heads before split-K, else `defaultSize` (128). Measured on the H200, Llama-3.1-8B heads
 * (4 heads per workgroup, 8 kv heads; docs/tuning.md "64-invocation workgroups"), attention µs 128 → 64:
 * batch 64 × 4k (512 workgroups) int4 271 → 262, int4-hadamard-q8 223 → 201; 128 × 1k int4 173 → 152;
 * 256 × 4k int4-q8 820 → 777; 64 × 16k int4-hadamard-q8 803 → 739; but batch 32 (256 workgroups) loses
 * 7–24 % (32 × 4k int4-q8 107 → 132) and batch 16 1–19 %: with 128 invocations 512 register-heavy
 * workgroups do not fit the GPU at once, 64-invocation ones do, and small grids want the longer steps.
 * FP16 keeps 128 (it lost at 4k: 64 × 4k 284 → 296); one head per workgroup was not measured.
 */
export function autoWorkgroupSize(layout: CacheLayout, headsPerWg: number, workgroupsBeforeSplit: number, defaultSize: number): number {
  const int4 = layout.method === 'int4' || layout.method === 'int4-hadamard';
  return int4 && headsPerWg >= 4 && workgroupsBeforeSplit >= INT4_SMALL_WORKGROUPS_FROM ? 64 : defaultSize;
}

/** A decode step fuses its cache write while sequences × kv heads is at most this (fuseDecodeStep). */
export const FUSE_STEP_MAX_ROWS = 16;

/**
 * Whether a decode step fuses its cache write into the decode dispatch (planDecode with decodeStep):
 * where the fused kernel exists (the subgroup kernel, its formats, one-buffer pools) and the grid is
 * small. Measured on the H200 (Llama-3.1-8B heads, 8 kv heads, docs/tuning.md "Fused decode step"): at
 * batch 1 and 2 the fused step saves a dependent dispatch (int4-hadamard 1 × 1k 16.5 → 14.8 µs, 1 × 4k
 * 24.2 → 22.4 µs; fp16 2 × 4k 26.0 → 25.4); from batch 4 it loses (fp16 4 × 4k 37.2 → 39.2, 8 × 4k
 * 57.6 → 74.0, 64 × 4k 285 → 406 µs): the pools bound read_write lose the read-only load path, which
 * only a latency-bound grid does not feel.
 */
export function fuseDecodeStep(kind: DecodeKernelKind, shape: { useSubgroups: boolean; layout: CacheLayout; pool?: { numBuffers: number } }, numSeqs: number): boolean {
  const format = shape.layout.method;
  const hasKernel = kind === 'subgroup' && shape.useSubgroups && (format === 'fp16' || format === 'int4' || format === 'int4-hadamard') && (shape.pool?.numBuffers ?? 1) === 1;
  return hasKernel && numSeqs * shape.layout.numKvHeads <= FUSE_STEP_MAX_ROWS;
}

/**
 * Rows (sequences × kv heads) up to which split-K partials are merged in the decode dispatch by default.
 * Measured on the H200 (Llama-3.1-8B heads, docs/tuning.md "Split-K merged in the decode dispatch"):
 * at batch 1–2 (8–16 rows) the merge in the dispatch saves the merge kernel's dependent dispatch
 * (fp16 attention 1 × 1k 10.4 → 9.8 µs, 1 × 4k 16.5 → 15.4, 2 × 1k 11.9 → 11.2; int4-hadamard steps
 * 0.4–1.1 µs shorter); at batch 4 it is even (±0.5 µs), at batch 16 it loses 4–14 µs (half the
 * workgroups merge four heads after their own work, which the merge kernel spreads over the grid).
 */
export const MERGE_IN_DISPATCH_MAX_ROWS = 16;

/**
 * Whether split-K partials are merged inside the decode dispatch (the last workgroup of each sequence and
 * head group merges, lib/decode-epilogue.wgsl) rather than by the merge kernel's dependent dispatch:
 * `requested` when given (true throws where it cannot: only the subgroup kernel merges in its dispatch),
 * else on the subgroup kernel while `rows` (sequences × kv heads) ≤ MERGE_IN_DISPATCH_MAX_ROWS. Either
 * way the result is the same bits run to run (splits merged in a fixed order; test/split-merge.test.ts,
 * on the H200 too).
 */
export function mergeInDispatch(kind: DecodeKernelKind, numSplits: number, rows: number, requested?: boolean): boolean {
  if (requested && kind !== 'subgroup') throw new Error(`only the subgroup decode kernel merges split-K partials in its own dispatch, not the ${kind} kernel`);
  return kind === 'subgroup' && numSplits > 1 && (requested ?? rows <= MERGE_IN_DISPATCH_MAX_ROWS);
}

/**
 * Splits the merge kernel reads per round of loads (lib/split-merge.wgsl): blocks of four, measured on
 * the H200 (docs/tuning.md, "The merge kernel reads splits in blocks of four").
 */
export const MERGE_KERNEL_SPLIT_BLOCK = 4;

/** The largest block the in-dispatch merge loads at once (more splits take several rounds). */
export const MAX_SPLIT_MERGE_BLOCK = 16;

/**
 * Splits the in-dispatch merge loads in one round (SPLIT_MERGE_BLOCK): the split count rounded up to a
 * power of two, at least MERGE_KERNEL_SPLIT_BLOCK, at most MAX_SPLIT_MERGE_BLOCK. A batch-1 merge waits
 * for the latency of its loads, so one round for every split count (7 splits at batch 1 × 4k were two
 * rounds per pass with blocks of four: docs/tuning.md, "Split-K merged in the decode dispatch").
 */
export function splitMergeBlock(numSplits: number): number {
  let block = MERGE_KERNEL_SPLIT_BLOCK;
  while (block < numSplits && block < MAX_SPLIT_MERGE_BLOCK) block *= 2;
  return block;
}

export interface SplitPlan {
  numSplits: number;
  tokensPerSplit: number;
}

/**
 * Split-K plan: split the context only when the grid (sequences × kv heads × head groups) has fewer
 * than `tuning.targetWorkgroups` workgroups, never below `tuning.minTokensPerSplit` tokens per split
 * (unless `requestedSplits` asks for it); splits are whole multiples of `tuning.workgroupSize` tokens.
 */
export function chooseSplits(baseWorkgroups: number, maxContext: number, requestedSplits: number | undefined, tuning: Pick<DecodeTuning, 'workgroupSize' | 'targetWorkgroups' | 'minTokensPerSplit'>): SplitPlan {
  const tileTokens = tuning.workgroupSize;
  const maxSplits = Math.max(1, Math.ceil(maxContext / Math.max(tuning.minTokensPerSplit, tileTokens)));
  let splits = requestedSplits ?? Math.ceil(tuning.targetWorkgroups / Math.max(1, baseWorkgroups));
  splits = Math.max(1, Math.min(splits, requestedSplits ? Math.ceil(maxContext / tileTokens) : maxSplits));
  const tokensPerSplit = Math.ceil(Math.ceil(maxContext / splits) / tileTokens) * tileTokens;
  return { numSplits: Math.ceil(maxContext / tokensPerSplit), tokensPerSplit };
}

