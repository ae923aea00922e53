/**
 * Host side of the decode kernels and shaders/paged-decode-merge.wgsl: variants, the split-K choice,
 * binding and dispatch. Three kernels compute the same thing with the same bindings and outputs:
 *  - shaders/paged-decode-matrix.wgsl (src/kernels/paged-decode-matrix.ts): INT4 and FP16 on matrix
 *    units (tensor cores) where the adapter has subgroup matrices and shader-f16; the INT4 default
 *    there. Its software matrix step runs anywhere when asked for (kernel: 'matrix').
 *  - shaders/paged-decode-subgroup.wgsl (+ lib/kv-lane-*.wgsl): INT4 and FP16 where the adapter has
 *    subgroups; the fast one.
 *  - shaders/paged-decode.wgsl (+ lib/kv-format-*.wgsl, lib/tile-max-*.wgsl): every format, with or
 *    without subgroups; the fallback, and the kernel of the extra formats (int8, int4-g32).
 */
import mergeWgsl from '../../shaders/paged-decode-merge.wgsl?raw';
import subgroupDecodeWgsl from '../../shaders/paged-decode-subgroup.wgsl?raw';
import decodeWgsl from '../../shaders/paged-decode.wgsl?raw';
import fp16LaneWgsl from '../../shaders/lib/kv-lane-fp16.wgsl?raw';
import int4LaneWgsl from '../../shaders/lib/kv-lane-int4.wgsl?raw';
import fp16FormatWgsl from '../../shaders/lib/kv-format-fp16.wgsl?raw';
import int4FormatWgsl from '../../shaders/lib/kv-format-int4.wgsl?raw';
import int4G32FormatWgsl from '../../shaders/lib/kv-format-int4-g32.wgsl?raw';
import int8FormatWgsl from '../../shaders/lib/kv-format-int8.wgsl?raw';
import tileMaxSubgroupWgsl from '../../shaders/lib/tile-max-subgroup.wgsl?raw';
import tileMaxWorkgroupWgsl from '../../shaders/lib/tile-max-workgroup.wgsl?raw';
import { NIBBLES_PER_WORD, quantFormat, type CacheLayout, type KvMethod } from '../layout';
import type { GpuContext } from '../gpu/gpu-context';
import { bindBuffers } from './gpu-buffers';
import { assembleWgsl, WGSL_LIBRARIES } from './kernel-source';
import { getPipeline, type ShaderVariant } from './pipeline-cache';
import { unrollLoops } from './wgsl-unroll';
import type { DecodePlan } from './decode-plan';
import {
  DEFAULT_MATRIX_TILE_TOKENS, matrixDecodeConstants, matrixDecodeVariant, matrixDecodeWorkgroupBytes, matrixKernelSupports, SOFTWARE_MATRIX_CONFIGS,
  usableMatrixConfigs, type MatrixConfig, type MatrixStep, type MatrixSupport,
} from './paged-decode-matrix';

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
}

/**
 * Workgroup-memory kernel (paged-decode.wgsl), measured best on an NVIDIA H200 through Dawn/Vulkan
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
  targetWorkgroups: 2048,
  minTokensPerSplit: 128,
};

/**
 * Subgroup kernel (paged-decode-subgroup.wgsl), measured best on the same H200 and workload for INT4
 * and FP16 alike: 128 invocations, the whole GQA group (4 heads) per workgroup; lanes per token and
 * tokens per step chosen per format and shape (LANE_FORMATS). Split-K: each workgroup's prologue and
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
  targetWorkgroups: 1024,
  minTokensPerSplit: 256,
};

/** WGSL's smallest subgroup size: what is assumed when the adapter does not report its own. */
export const WGSL_MIN_SUBGROUP_SIZE = 4;
/** The most lanes per token the subgroup kernel picks by itself (tuning 0 = automatic). */
export const PREFERRED_LANES_PER_TOKEN = 8;
/** Automatic lanes per token keep a lane's query slice + accumulators (2·heads·channels f32) within this. */
const LANE_STATE_FLOATS = 128;
/** Subgroup kernel: a lane's values come in groups of 8 (two vec4). */
const VALUES_PER_GROUP = 8;
/** Subgroup kernel: subgroups merged per pass through workgroup memory. */
const MAX_MERGE_ROWS = 8;

export interface DecodeShape {
  layout: CacheLayout;
  numQueryHeads: number;
  /** Hadamard block B (ignored unless rotateQ or rotateOut). */
  hadamardBlock: number;
  /** K was rotated: rotate the query. */
  rotateQ: boolean;
  /** V was rotated: rotate the output back. */
  rotateOut: boolean;
  /** The rotation has random ±1 signs (DecodeParams.sign_bits); false: none, and the bits are not read. */
  randomSigns: boolean;
  useSubgroups: boolean;
  /** The adapter's smallest subgroup size (WGSL_MIN_SUBGROUP_SIZE when unknown). */
  subgroupMinSize?: number;
  /** The adapter's largest subgroup size (the matrix kernel's workgroups are a multiple of it). */
  subgroupMaxSize?: number;
  /** What the device offers the matrix kernel (absent: no subgroup matrices, no shader-f16). */
  matrix?: MatrixSupport;
  /** Run this kernel instead of the automatic choice (decodeKernelKind). */
  kernel?: DecodeKernelKind;
  /** The device's maxComputeWorkgroupStorageSize (the software matrix step picks tiles that fit). */
  maxWorkgroupStorageBytes?: number;
  tuning?: Partial<DecodeTuning>;
}

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
  return t;
}

/**
 * Lane formats of the subgroup kernel: values per lane load must be a whole CacheChunk. Automatic
 * choices, measured on the H200 (docs/tuning.md):
 *  - INT4 is bound by arithmetic: the fewest lanes per token (4, else 8) whose query slice and
 *    accumulators fit LANE_STATE_FLOATS (Llama-2-7B, 1 head per workgroup: 4 lanes 125 µs vs 8 lanes
 *    143 µs; Llama-3.1-8B, 4 heads: 8 lanes).
 *  - FP16 is bound by memory: 8 lanes.
 * Tokens per step: autoTokensPerStep().
 */
/** Tokens per step of the subgroup kernel unless autoTokensPerStep() says otherwise. */
const AUTO_TOKENS_PER_STEP = 4;

const LANE_FORMATS = {
  /** one u32 = 8 nibbles; a lane loads vec2<u32> or vec4<u32> (≥ 16 channels) */
  int4: {
    source: int4LaneWgsl,
    channelsPerWord: 8,
    minChannelsPerLane: 16,
    autoLanes: (heads: number, headDim: number) => (2 * heads * headDim / 4 <= LANE_STATE_FLOATS ? 4 : PREFERRED_LANES_PER_TOKEN),
  },
  /** one u32 = 2 halves; a lane loads vec4<u32> (≥ 8 channels) */
  fp16: {
    source: fp16LaneWgsl,
    channelsPerWord: 2,
    minChannelsPerLane: 8,
    autoLanes: (_heads: number, _headDim: number) => PREFERRED_LANES_PER_TOKEN,
  },
};

function laneFormat(shape: Pick<DecodeShape, 'layout'>) {
  const format = DECODE_FORMATS[shape.layout.method];
  return format === 'int4' || format === 'fp16' ? LANE_FORMATS[format] : null;
}

/**
 * Which decode kernel serves a shape: the subgroup kernel needs subgroups and a lane format (INT4,
 * FP16); everything else runs the workgroup-memory kernel.
 */
export type DecodeKernelKind = 'matrix' | 'subgroup' | 'workgroup';
export const DECODE_KERNEL_KINDS: readonly DecodeKernelKind[] = ['matrix', 'subgroup', 'workgroup'];

/**
 * The kernel a shape runs: `shape.kernel` when given (checked: the subgroup kernel needs subgroups
 * and a lane format, the matrix kernel a tile format), else INT4 on matrix hardware where the device
 * has a usable configuration, else the subgroup kernel where it can run, else the workgroup kernel.
 */
export function decodeKernelKind(shape: Pick<DecodeShape, 'layout' | 'useSubgroups' | 'kernel' | 'matrix'>): DecodeKernelKind {
  const method = shape.layout.method;
  if (shape.kernel === 'matrix' && !matrixKernelSupports(method)) throw new Error(`the matrix decode kernel reads int4, int4-hadamard and fp16 caches, not ${method}`);
  if (shape.kernel === 'subgroup' && !(shape.useSubgroups && laneFormat(shape))) {
    throw new Error(laneFormat(shape) ? 'the subgroup decode kernel needs the subgroups feature' : `the subgroup decode kernel reads int4, int4-hadamard and fp16 caches, not ${method}`);
  }
  if (shape.kernel) return shape.kernel;
  return shape.useSubgroups && laneFormat(shape) !== null ? 'subgroup' : 'workgroup';
}

/**
 * How the matrix kernel multiplies for a shape: on hardware when the device offers an f16→f32
 * configuration with room for the GQA group's heads (or at least one head), else in software.
 */
export function matrixStep(shape: Pick<DecodeShape, 'layout' | 'matrix'>): MatrixStep {
  const configs = shape.matrix?.configs ?? [];
  const usable = shape.matrix?.shaderF16 ? usableMatrixConfigs(configs, 1, shape.layout.headDim) : [];
  return usable.length > 0 ? 'hardware' : 'software';
}

/**
 * Lanes per token of the subgroup kernel: the tuning's value, or the format's automatic choice, capped
 * so that a token's lanes fit in the smallest subgroup and each lane loads at least a whole chunk.
 */
export function lanesPerToken(shape: Pick<DecodeShape, 'layout' | 'subgroupMinSize' | 'numQueryHeads'>, tuning: DecodeTuning): number {
  const format = laneFormat(shape);
  if (!format) throw new Error(`no subgroup decode kernel for ${shape.layout.method}`);
  const subgroupMin = shape.subgroupMinSize ?? WGSL_MIN_SUBGROUP_SIZE;
  const formatMax = shape.layout.headDim / format.minChannelsPerLane;
  const heads = headsPerWorkgroup(shape.numQueryHeads / shape.layout.numKvHeads, shape.layout.headDim, tuning.maxHeadsPerWorkgroup);
  const wanted = tuning.lanesPerToken || format.autoLanes(heads, shape.layout.headDim);
  if (tuning.lanesPerToken && tuning.lanesPerToken > Math.min(subgroupMin, formatMax)) {
    throw new Error(`lanesPerToken ${tuning.lanesPerToken} is too many: at most ${Math.min(subgroupMin, formatMax)} here (smallest subgroup ${subgroupMin}; ${shape.layout.method} with head_dim ${shape.layout.headDim} needs ≥ ${format.minChannelsPerLane} channels per lane)`);
  }
  return Math.max(1, Math.min(wanted, subgroupMin, formatMax));
}

/** Constants both decode kernels take: shape, heads per workgroup, rotation. */
function sharedDecodeConstants(shape: DecodeShape, tuning: DecodeTuning) {
  const { layout } = shape;
  const groupSize = shape.numQueryHeads / layout.numKvHeads;
  const heads = headsPerWorkgroup(groupSize, layout.headDim, tuning.maxHeadsPerWorkgroup);
  return {
    HEAD_DIM: layout.headDim,
    NUM_KV_HEADS: layout.numKvHeads,
    PAGE_SIZE: layout.pageSize,
    ROW_WORDS: layout.rowWords,
    PAGE_WORDS: layout.pageWords,
    SCALE_MIN_REGION_OFFSET: layout.scaleMinRegionOffset,
    NUM_Q_HEADS: shape.numQueryHeads,
    GROUP_SIZE: groupSize,
    HEADS_PER_WG: heads,
    HEAD_GROUPS: groupSize / heads,
    WORKGROUP_SIZE: tuning.workgroupSize,
    HADAMARD_BLOCK: shape.rotateQ || shape.rotateOut ? shape.hadamardBlock : 1,
    ROTATE_Q: shape.rotateQ ? 1 : 0,
    ROTATE_OUT: shape.rotateOut ? 1 : 0,
    RANDOM_SIGNS: (shape.rotateQ || shape.rotateOut) && shape.randomSigns ? 1 : 0,
    ROT_VECTORS: heads,
  };
}

/** The part of a decode pipeline's cache key both kernels share. */
function sharedDecodeKey(name: string, c: ReturnType<typeof sharedDecodeConstants>): string[] {
  return [name, `d${c.HEAD_DIM}`, `hq${c.NUM_Q_HEADS}`, `hkv${c.NUM_KV_HEADS}`, `p${c.PAGE_SIZE}`, `b${c.HADAMARD_BLOCK}`, `q${c.ROTATE_Q}o${c.ROTATE_OUT}s${c.RANDOM_SIGNS}`, `wg${c.WORKGROUP_SIZE}g${c.HEADS_PER_WG}`];
}

/** Constants of the subgroup kernel (shaders/paged-decode-subgroup.wgsl). */
export function subgroupDecodeConstants(shape: DecodeShape) {
  const { layout } = shape;
  const tuning = resolveTuning(shape.tuning, 'subgroup');
  const format = laneFormat(shape)!;
  const shared = sharedDecodeConstants(shape, tuning);
  const lanes = lanesPerToken(shape, tuning);
  const channelsPerLane = layout.headDim / lanes;
  const laneWords = channelsPerLane / format.channelsPerWord;
  const chunkWords = Math.min(4, laneWords);
  const groupsPerLane = channelsPerLane / VALUES_PER_GROUP;
  const groupsPerChunk = (chunkWords * format.channelsPerWord) / VALUES_PER_GROUP;
  const maxSubgroups = tuning.workgroupSize / WGSL_MIN_SUBGROUP_SIZE;
  // A step's tokens must share a page: halve the tuning's value until it divides the page size.
  let tokensPerStep = tuning.tokensPerStep || AUTO_TOKENS_PER_STEP;
  while (layout.pageSize % tokensPerStep !== 0) tokensPerStep /= 2;
  return {
    ...shared,
    LANES_PER_TOKEN: lanes,
    CHANNELS_PER_LANE: channelsPerLane,
    GROUPS_PER_LANE: groupsPerLane,
    CHUNK_WORDS: chunkWords,
    GROUPS_PER_CHUNK: groupsPerChunk,
    CHUNKS_PER_LANE: groupsPerLane / groupsPerChunk,
    LANE_VECS: 2 * groupsPerLane,
    ACC_VECS: 2 * groupsPerLane * shared.HEADS_PER_WG,
    TOKENS_PER_STEP: tokensPerStep,
    STEP_SCORES: tokensPerStep * shared.HEADS_PER_WG,
    STEP_CHUNKS: (tokensPerStep * groupsPerLane) / groupsPerChunk,
    SCALE_MIN_CHUNKS: Math.max(1, tokensPerStep / chunkWords),
    MAX_SUBGROUPS: maxSubgroups,
    MERGE_ROWS: Math.min(MAX_MERGE_ROWS, maxSubgroups),
  };
}

/** Workgroup memory of a subgroup-kernel variant, in bytes. */
function subgroupDecodeWorkgroupBytes(c: ReturnType<typeof subgroupDecodeConstants>): number {
  const floats = c.HEADS_PER_WG * c.HEAD_DIM + c.HEADS_PER_WG + 1 + 2 + 2 + c.MAX_SUBGROUPS * c.HEADS_PER_WG + c.MERGE_ROWS * c.HEAD_DIM + 2 * c.MERGE_ROWS + 2 * c.HEADS_PER_WG;
  return floats * 4;
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
  const memoryBoundFp16 = DECODE_FORMATS[layout.method] === 'fp16' && headsPerWg === 1 && laneKBytes >= 32 && gridWorkgroups >= tuning.targetWorkgroups;
  return memoryBoundFp16 ? 2 : AUTO_TOKENS_PER_STEP;
}

/**
 * The tuning a grid of `numSeqs` sequences runs with: the kernel's defaults under `overrides`
 * (validated), heads per workgroup for the grid (headsForGrid; the kernel variant takes it as its
 * cap) and, for the subgroup kernel, the automatic tokens per step, which depend on the heads
 * (autoTokensPerStep). Also returns the grid before split-K. Throws on a tuning the kernels cannot run.
 */
export function tuningForGrid(shape: Pick<DecodeShape, 'layout' | 'numQueryHeads' | 'useSubgroups' | 'subgroupMinSize' | 'kernel' | 'matrix'>, numSeqs: number, overrides: Partial<DecodeTuning> = {}): { tuning: DecodeTuning; workgroupsBeforeSplit: number } {
  const { layout } = shape;
  const groupSize = shape.numQueryHeads / layout.numKvHeads;
  const kind = decodeKernelKind(shape);
  let tuning = resolveTuning(overrides, kind);
  const heads = headsForGrid(groupSize, layout.headDim, numSeqs, layout.numKvHeads, tuning);
  tuning = { ...tuning, maxHeadsPerWorkgroup: heads };
  const workgroupsBeforeSplit = numSeqs * layout.numKvHeads * (groupSize / heads);
  if (kind === 'subgroup') {
    const lanes = lanesPerToken(shape, tuning);
    tuning = { ...tuning, tokensPerStep: tuning.tokensPerStep || autoTokensPerStep(layout, lanes, heads, workgroupsBeforeSplit, tuning) };
  }
  return { tuning, workgroupsBeforeSplit };
}

export function decodeConstants(shape: DecodeShape) {
  const { layout } = shape;
  const tuning = resolveTuning(shape.tuning, 'workgroup');
  const shared = sharedDecodeConstants(shape, tuning);
  const valueLanes = layout.headDim / 8;
  const tokenLanes = Math.max(1, tuning.workgroupSize / valueLanes);
  return {
    ...shared,
    V_LANES: valueLanes,
    V_PREFETCH_MAX: tuning.vPrefetch,
    TOKEN_LANES: tokenLanes,
    SCRATCH_LEN: Math.max(shared.HEADS_PER_WG * tuning.workgroupSize, tokenLanes * layout.headDim),
  };
}

/** Workgroup memory of a decode variant, in bytes (checked against the device limit). */
function decodeWorkgroupBytes(c: ReturnType<typeof decodeConstants>): number {
  const floats = 2 * c.HEADS_PER_WG * c.HEAD_DIM + c.HEADS_PER_WG * 3 + c.SCRATCH_LEN + 2 * c.WORKGROUP_SIZE + 2 * c.TOKEN_LANES + 1;
  return floats * 4;
}

/** The cache format file (shaders/lib/kv-format-<format>.wgsl) each method's decode includes. */
const DECODE_FORMATS: Record<KvMethod, 'fp16' | 'int4' | 'int8' | 'int4-g32'> = {
  fp16: 'fp16',
  int4: 'int4',
  'int4-hadamard': 'int4',
  int8: 'int8',
  'int4-g32': 'int4-g32',
};

/** The format file, after the constants only it needs (grouped INT4: scale/min words per row and per group). */
function formatSources(layout: CacheLayout): string[] {
  switch (DECODE_FORMATS[layout.method]) {
    case 'fp16':
      return [fp16FormatWgsl];
    case 'int4':
      return [WGSL_LIBRARIES.kvCodes, int4FormatWgsl];
    case 'int8':
      return [WGSL_LIBRARIES.kvCodes, int8FormatWgsl];
    case 'int4-g32': {
      const groupWords = (quantFormat(layout.method, layout.headDim)?.groupSize ?? layout.headDim) / NIBBLES_PER_WORD;
      return [`const SCALE_MIN_WORDS: u32 = ${layout.scaleMinWords}u;\nconst GROUP_WORDS: u32 = ${groupWords}u;`, WGSL_LIBRARIES.kvCodes, int4G32FormatWgsl];
    }
  }
}

/** The decode kernel a shape gets: its pipeline variant and what dispatching it needs. */
interface DecodeKernel {
  variant: ShaderVariant;
  /** Workgroups along y per kv head (query-head groups). */
  headGroups: number;
  /** Workgroup memory, checked against the device limit. */
  workgroupBytes: number;
  /** The matrix kernel's step and configuration. */
  matrix?: { step: MatrixStep; config: MatrixConfig };
}

export function decodeKernel(shape: DecodeShape): DecodeKernel {
  const kind = decodeKernelKind(shape);
  return kind === 'matrix' ? matrixKernel(shape) : kind === 'subgroup' ? subgroupDecodeKernel(shape) : workgroupDecodeKernel(shape);
}

/**
 * The matrix kernel for a shape: the first configuration (usableMatrixConfigs' order on hardware,
 * SOFTWARE_MATRIX_CONFIGS in software) and the largest tile (the tuning's, halved down to the
 * configuration's smallest) whose workgroup memory fits the device.
 */
function matrixKernel(shape: DecodeShape): DecodeKernel {
  const tuning = resolveTuning(shape.tuning, 'matrix');
  const step = matrixStep(shape);
  const shaderF16 = step === 'hardware' || Boolean(shape.matrix?.shaderF16);
  const workgroupSize = Math.max(tuning.workgroupSize, step === 'hardware' ? shape.subgroupMaxSize ?? 32 : 0);
  const shared = sharedDecodeConstants(shape, { ...tuning, workgroupSize });
  const candidates = step === 'hardware' ? usableMatrixConfigs(shape.matrix!.configs, shared.HEADS_PER_WG, shape.layout.headDim) : SOFTWARE_MATRIX_CONFIGS;
  const limit = shape.maxWorkgroupStorageBytes ?? Infinity;
  let first: DecodeKernel | null = null;
  for (const config of candidates) {
    for (let tile = tuning.tileTokens || DEFAULT_MATRIX_TILE_TOKENS; ; tile /= 2) {
      const constants = matrixDecodeConstants(shared, shape.layout.method, config, tile);
      if (!constants) break;
      const workgroupBytes = matrixDecodeWorkgroupBytes(constants, shaderF16 ? 2 : 4, step);
      const kernel = { variant: matrixDecodeVariant(constants, shape.layout.method, step, shaderF16), headGroups: constants.HEAD_GROUPS, workgroupBytes, matrix: { step, config } };
      if (workgroupBytes <= limit) return kernel;
      first ??= kernel;
      if (constants.TILE_TOKENS <= Math.max(config.M, config.K)) break;
    }
  }
  if (!first) throw new Error(`no matrix configuration serves ${shared.HEADS_PER_WG} heads per workgroup at head_dim ${shape.layout.headDim}`);
  return first; // too big: prepareDecode reports its size against the limit
}

function subgroupDecodeKernel(shape: DecodeShape): DecodeKernel {
  const constants = subgroupDecodeConstants(shape);
  const format = DECODE_FORMATS[shape.layout.method] as keyof typeof LANE_FORMATS;
  const key = [...sharedDecodeKey(`paged-decode-subgroup-${format}`, constants), `l${constants.LANES_PER_TOKEN}t${constants.TOKENS_PER_STEP}`].join('/');
  const variant: ShaderVariant = {
    key,
    code: () =>
      assembleWgsl({
        enables: ['subgroups'],
        constants,
        sources: [
          `alias CacheChunk = ${constants.CHUNK_WORDS === 4 ? 'vec4<u32>' : 'vec2<u32>'};`,
          WGSL_LIBRARIES.decodeIo,
          WGSL_LIBRARIES.hadamard,
          WGSL_LIBRARIES.decodeEpilogue,
          LANE_FORMATS[format].source,
          unrollLoops(subgroupDecodeWgsl, constants),
        ],
      }),
  };
  return { variant, headGroups: constants.HEAD_GROUPS, workgroupBytes: subgroupDecodeWorkgroupBytes(constants) };
}

function workgroupDecodeKernel(shape: DecodeShape): DecodeKernel {
  const constants = decodeConstants(shape);
  const format = DECODE_FORMATS[shape.layout.method];
  const key = [...sharedDecodeKey(`paged-decode-${format}`, constants), `v${constants.V_PREFETCH_MAX}`, shape.useSubgroups ? 'subgroups' : 'workgroup'].join('/');
  const variant: ShaderVariant = {
    key,
    code: () =>
      assembleWgsl({
        enables: shape.useSubgroups ? ['subgroups'] : [],
        constants,
        sources: [
          'alias CacheChunk = vec4<u32>;\nconst CHUNK_WORDS: u32 = 4u;',
          WGSL_LIBRARIES.decodeIo,
          WGSL_LIBRARIES.hadamard,
          ...formatSources(shape.layout),
          shape.useSubgroups ? tileMaxSubgroupWgsl : tileMaxWorkgroupWgsl,
          decodeWgsl,
        ],
      }),
  };
  return { variant, headGroups: constants.HEAD_GROUPS, workgroupBytes: decodeWorkgroupBytes(constants) };
}

export function mergeVariant(shape: DecodeShape): ShaderVariant {
  const block = shape.rotateOut ? shape.hadamardBlock : 1;
  const constants = {
    HEAD_DIM: shape.layout.headDim,
    NUM_Q_HEADS: shape.numQueryHeads,
    HADAMARD_BLOCK: block,
    ROTATE_OUT: shape.rotateOut ? 1 : 0,
    RANDOM_SIGNS: shape.rotateOut && shape.randomSigns ? 1 : 0,
    ROT_VECTORS: 1,
    WORKGROUP_SIZE: Math.min(shape.layout.headDim, 128),
  };
  return {
    key: `paged-decode-merge/d${constants.HEAD_DIM}/hq${constants.NUM_Q_HEADS}/b${block}/o${constants.ROTATE_OUT}s${constants.RANDOM_SIGNS}`,
    code: () => assembleWgsl({ constants, sources: [WGSL_LIBRARIES.hadamard, mergeWgsl] }),
  };
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

/**
 * The merge kernel runs with several splits; with one split it also runs when V was rotated, except
 * after the subgroup kernel, which rotates V back itself then.
 */
export function needsMerge(plan: SplitPlan, shape: Pick<DecodeShape, 'rotateOut'>, kind: DecodeKernelKind): boolean {
  return plan.numSplits > 1 || (shape.rotateOut && kind === 'workgroup');
}

export interface DecodeBuffers {
  /** [S, Hq, D] f32 */
  q: GPUBuffer;
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  /** [S, maxPagesPerSeq] u32 */
  blockTables: GPUBuffer;
  /** [S] u32 */
  contextLens: GPUBuffer;
  /** [S, Hq, D] f32 */
  out: GPUBuffer;
  /** [S, Hq, numSplits, D] f32 (≥ 4 bytes when numSplits = 1) */
  partialAcc: GPUBuffer;
  /** [S, Hq, numSplits] vec2<f32> */
  partialMl: GPUBuffer;
  /** DecodeParams (48 bytes) */
  decodeParams: GPUBuffer;
  /** MergeParams (48 bytes) */
  mergeParams: GPUBuffer;
}

export interface PreparedDecode {
  plan: SplitPlan;
  /** The kernel's pipeline key (names kernel, format, step and matrix configuration). */
  detail: string;
  encode(pass: GPUComputePassEncoder): void;
}

export function decodeParams(maxPagesPerSeq: number, plan: SplitPlan, scale: number, signBits: Uint32Array): ArrayBuffer {
  const bytes = new ArrayBuffer(48);
  const u32 = new Uint32Array(bytes);
  u32[0] = maxPagesPerSeq;
  u32[1] = plan.numSplits;
  u32[2] = plan.tokensPerSplit;
  new Float32Array(bytes)[3] = scale * Math.LOG2E;
  u32.set(signBits.subarray(0, 8), 4);
  return bytes;
}

export function mergeParams(plan: SplitPlan, signBits: Uint32Array): Uint32Array {
  const u32 = new Uint32Array(12);
  u32[0] = plan.numSplits;
  u32.set(signBits.subarray(0, 8), 4);
  return u32;
}

/**
 * Compiles (or takes from the cache) the plan's pipelines and binds `buffers` (sized as the plan
 * says). Throws before binding when the variant needs more workgroup memory than the device has.
 */
export async function prepareDecode(ctx: GpuContext, plan: DecodePlan, shape: DecodeShape, buffers: DecodeBuffers): Promise<PreparedDecode> {
  if (plan.workgroupBytes > ctx.limits.maxComputeWorkgroupStorageSize) {
    throw new Error(`decode kernel needs ${plan.workgroupBytes} bytes of workgroup memory; this device allows ${ctx.limits.maxComputeWorkgroupStorageSize}`);
  }
  const decode = await getPipeline(ctx.device, plan.variant);
  const decodeGroup = bindBuffers(ctx.device, decode, [
    buffers.q, buffers.kCache, buffers.vCache, buffers.blockTables, buffers.contextLens,
    buffers.out, buffers.partialAcc, buffers.partialMl, buffers.decodeParams,
  ], 'paged decode');
  const merge = plan.merge ? await getPipeline(ctx.device, mergeVariant(shape)) : null;
  const mergeGroup = merge ? bindBuffers(ctx.device, merge, [buffers.partialAcc, buffers.partialMl, buffers.out, buffers.mergeParams], 'paged decode merge') : null;
  const [x, y, z] = plan.grid;
  return {
    plan: plan.splits,
    detail: plan.variant.key,
    encode(pass) {
      pass.setPipeline(decode);
      pass.setBindGroup(0, decodeGroup);
      pass.dispatchWorkgroups(x, y, z);
      if (merge && mergeGroup) {
        pass.setPipeline(merge);
        pass.setBindGroup(0, mergeGroup);
        pass.dispatchWorkgroups(shape.numQueryHeads, z);
      }
    },
  };
}
