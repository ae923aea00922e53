/**
 * Host side of the decode kernels and shaders/paged-decode-merge.wgsl: kernel choice, variants,
 * binding and dispatch (the tuning rules live in decode-tuning.ts, the per-call plan in
 * decode-plan.ts). Three kernels compute the same thing with the same bindings and outputs:
 *  - shaders/paged-decode-subgroup.wgsl (+ lib/kv-lane-*.wgsl): INT4 and FP16 where the adapter has
 *    subgroups; the fast one, and the default for them.
 *  - shaders/paged-decode-matrix.wgsl (src/kernels/paged-decode-matrix.ts): INT4 and FP16 on matrix
 *    units (tensor cores) where the adapter has subgroup matrices and shader-f16, else in its
 *    software step; run when asked for (kernel: 'matrix'): slower than the subgroup kernel on the
 *    H200 so far (docs/tuning.md).
 *  - shaders/paged-decode-workgroup.wgsl (+ lib/kv-format-*.wgsl, lib/tile-max-*.wgsl): every format,
 *    with or without subgroups; the fallback, and the kernel of the extra formats (int8, int4-g32).
 */
import mergeWgsl from '../../shaders/paged-decode-merge.wgsl?raw';
import subgroupDecodeWgsl from '../../shaders/paged-decode-subgroup.wgsl?raw';
import workgroupDecodeWgsl from '../../shaders/paged-decode-workgroup.wgsl?raw';
import fp16LaneWgsl from '../../shaders/lib/kv-lane-fp16.wgsl?raw';
import int4LaneWgsl from '../../shaders/lib/kv-lane-int4.wgsl?raw';
import fp16FormatWgsl from '../../shaders/lib/kv-format-fp16.wgsl?raw';
import int4FormatWgsl from '../../shaders/lib/kv-format-int4.wgsl?raw';
import int4G32FormatWgsl from '../../shaders/lib/kv-format-int4-g32.wgsl?raw';
import int8FormatWgsl from '../../shaders/lib/kv-format-int8.wgsl?raw';
import tileMaxSubgroupWgsl from '../../shaders/lib/tile-max-subgroup.wgsl?raw';
import tileMaxWorkgroupWgsl from '../../shaders/lib/tile-max-workgroup.wgsl?raw';
import { layoutConstants, NIBBLES_PER_WORD, quantFormat, type CacheLayout, type KvMethod, type PoolSplit } from '../layout';
import type { GpuContext } from '../gpu/gpu-context';
import { bindBuffers } from './gpu-buffers';
import { assembleWgsl, WGSL_LIBRARIES } from './kernel-source';
import { getPipeline, type ShaderVariant } from './pipeline-cache';
import { selectLines, unrollLoops } from './wgsl-unroll';
import { ONE_BUFFER, poolKey, readPoolWgsl } from './cache-pool';
import type { DecodePlan } from './decode-plan';
import {
  AUTO_TOKENS_PER_STEP, autoTokensPerStep, autoWorkgroupSize, DEFAULT_MATRIX_DECODE_TUNING, headsForGrid, headsPerWorkgroup, MERGE_KERNEL_SPLIT_BLOCK, resolveTuning,
  type DecodeKernelKind, type DecodeTuning, type SplitPlan,
} from './decode-tuning';
import {
  DEFAULT_MATRIX_TILE_TOKENS, matrixDecodeConstants, matrixDecodeVariant, matrixDecodeWorkgroupBytes, matrixKernelSupports, SOFTWARE_MATRIX_CONFIGS,
  usableMatrixConfigs, type MatrixConfig, type MatrixStep, type MatrixSupport,
} from './paged-decode-matrix';

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
  /**
   * Score K with an int8 query (the `-q8` methods: INT4 caches, subgroup kernel): each query head is
   * quantized per head to int8 after rotation and dotted with the codes in exact integer arithmetic.
   */
  queryInt8?: boolean;
  /** How the K and V pools are spread over buffers (default one each; more: subgroup kernel only). */
  pool?: PoolSplit;
  /**
   * A fused decode step (subgroup kernel, one-buffer pools): the kernel also encodes each sequence's last
   * token from new_k / new_v ([S, Hkv, D] f32) with the cache write's code, stores it in the cache and
   * scores it from registers (paged-decode-subgroup.wgsl, FUSED_STEP).
   */
  fusedStep?: boolean;
  /**
   * Split-K partials merged in the decode dispatch by the last workgroup of each (sequence, head
   * group) instead of by the merge kernel (subgroup kernel; lib/decode-epilogue.wgsl,
   * MERGE_IN_DISPATCH): bindings 6 and 7 are then the merge's words and counters (mergeWordsBytes).
   */
  mergeInDispatch?: boolean;
  /** Splits the in-dispatch merge reads in one round of loads (SPLIT_MERGE_BLOCK; splitMergeBlock of the plan's split count; default 4). */
  mergeBlock?: number;
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

const LANE_FORMATS = {
  /** one u32 = 8 nibbles; a lane loads vec2<u32> or vec4<u32> (≥ 16 channels) */
  int4: {
    source: int4LaneWgsl,
    channelsPerWord: 8,
    minChannelsPerLane: 16,
    /** CacheChunk sizes in words, largest first (vec4<u32>, vec2<u32>) */
    chunkWords: [4, 2],
    autoLanes: (heads: number, headDim: number) => (2 * heads * headDim / 4 <= LANE_STATE_FLOATS ? 4 : PREFERRED_LANES_PER_TOKEN),
  },
  /** one u32 = 2 halves; a lane loads vec4<u32> (≥ 8 channels) */
  fp16: {
    source: fp16LaneWgsl,
    channelsPerWord: 2,
    minChannelsPerLane: 8,
    chunkWords: [4],
    autoLanes: (_heads: number, _headDim: number) => PREFERRED_LANES_PER_TOKEN,
  },
};

function laneFormat(shape: Pick<DecodeShape, 'layout'>) {
  const format = DECODE_FORMATS[shape.layout.method];
  return format === 'int4' || format === 'fp16' ? LANE_FORMATS[format] : null;
}

/**
 * The kernel a shape runs: `shape.kernel` when given (checked: the subgroup kernel needs subgroups
 * and a lane format, the matrix kernel a tile format), else the subgroup kernel where it can run
 * (INT4, FP16 with subgroups), else the workgroup-memory kernel. The matrix kernel is never the
 * automatic choice: slower than the subgroup kernel on the H200 (docs/tuning.md).
 */
export function decodeKernelKind(shape: Pick<DecodeShape, 'layout' | 'useSubgroups' | 'kernel' | 'matrix' | 'queryInt8' | 'pool' | 'fusedStep'>): DecodeKernelKind {
  const method = shape.layout.method;
  if ((shape.pool?.numBuffers ?? 1) > 1) {
    if (laneFormat(shape) === null) throw new Error(`a ${method} cache over several buffers is not read by any decode kernel yet (the subgroup kernel reads int4, int4-hadamard and fp16)`);
    if (shape.kernel !== undefined && shape.kernel !== 'subgroup') throw new Error(`a cache over several buffers is read by the subgroup decode kernel, not the ${shape.kernel} kernel`);
    if (!shape.useSubgroups) throw new Error('a cache over several buffers is read by the subgroup decode kernel, which needs the subgroups feature');
  }
  if (shape.queryInt8) {
    if (laneFormat(shape) !== LANE_FORMATS.int4) throw new Error(`an int8 query scores INT4 caches (int4, int4-hadamard), not ${method}`);
    if (shape.kernel !== undefined && shape.kernel !== 'subgroup') throw new Error(`an int8 query runs on the subgroup decode kernel, not the ${shape.kernel} kernel`);
    if (!shape.useSubgroups) throw new Error('an int8 query runs on the subgroup decode kernel, which needs the subgroups feature');
  }
  if (shape.fusedStep) {
    if (shape.kernel !== undefined && shape.kernel !== 'subgroup') throw new Error(`a fused decode step runs on the subgroup decode kernel, not the ${shape.kernel} kernel`);
    if (!(shape.useSubgroups && laneFormat(shape))) throw new Error(`a fused decode step runs on the subgroup decode kernel, which reads int4, int4-hadamard and fp16 caches with the subgroups feature`);
    if ((shape.pool?.numBuffers ?? 1) > 1) throw new Error('a fused decode step needs K/V pools of one buffer each (its new-token bindings follow the decode bindings)');
  }
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
  // a power of two: a token's lanes are aligned groups of the subgroup, summed by shuffles with XOR masks
  // 1, 2, 4, … (head_dim 96 has formatMax 6: 6 lanes would share shuffles and slots with the next token)
  let lanes = 2 ** Math.floor(Math.log2(Math.max(1, Math.min(wanted, subgroupMin, formatMax))));
  // head_dims like 96 or 160: fewer lanes until each lane's channels are whole chunks
  while (lanes > 1 && laneChunkWords(format, shape.layout.headDim / lanes) === null) lanes /= 2;
  if (laneChunkWords(format, shape.layout.headDim / lanes) === null || (tuning.lanesPerToken && lanes !== tuning.lanesPerToken)) {
    throw new Error(`lanesPerToken ${tuning.lanesPerToken || lanes}: ${shape.layout.headDim / lanes} channels of ${shape.layout.method} per lane are not whole ${format.chunkWords.join(' or ')}-word chunks; try ${lanes === 1 ? 'the workgroup-memory kernel' : `lanesPerToken ${lanes}`}`);
  }
  return lanes;
}

/** The CacheChunk size (words) that splits a lane's channels into whole chunks of whole groups of 8, or null. */
function laneChunkWords(format: (typeof LANE_FORMATS)[keyof typeof LANE_FORMATS], channels: number): number | null {
  if (channels % VALUES_PER_GROUP !== 0) return null;
  const words = channels / format.channelsPerWord;
  return format.chunkWords.find((c) => words % c === 0 && (c * format.channelsPerWord) % VALUES_PER_GROUP === 0) ?? null;
}

/** Constants both decode kernels take: shape, heads per workgroup, rotation. */
function sharedDecodeConstants(shape: DecodeShape, tuning: DecodeTuning) {
  const { layout } = shape;
  const groupSize = shape.numQueryHeads / layout.numKvHeads;
  const heads = headsPerWorkgroup(groupSize, layout.headDim, tuning.maxHeadsPerWorkgroup);
  return {
    ...layoutConstants(layout),
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
  const chunkWords = laneChunkWords(format, channelsPerLane)!;
  const groupsPerLane = channelsPerLane / VALUES_PER_GROUP;
  const groupsPerChunk = (chunkWords * format.channelsPerWord) / VALUES_PER_GROUP;
  const maxSubgroups = tuning.workgroupSize / WGSL_MIN_SUBGROUP_SIZE;
  // A step's tokens must share a page: halve the tuning's value until it divides the page size.
  let tokensPerStep = tuning.tokensPerStep || AUTO_TOKENS_PER_STEP;
  while (layout.pageSize % tokensPerStep !== 0) tokensPerStep /= 2;
  const fused = Boolean(shape.fusedStep);
  // queries in workgroup memory: one vec4 of padding per lane's row (distinct banks for a token's lanes)
  const querySharedStride = 2 * groupsPerLane + 1;
  // the fused step's new K/V rows that rotate share rot_buf (and the query's rotation pass)
  const newRotRows = fused ? (shape.rotateQ ? 1 : 0) + (shape.rotateOut ? 1 : 0) : 0;
  return {
    ...shared,
    ROT_VECTORS: shared.HEADS_PER_WG + newRotRows,
    Q_LOADS: Math.ceil((shared.HEADS_PER_WG * layout.headDim) / tuning.workgroupSize),
    FUSED_STEP: fused ? 1 : 0,
    MERGE_IN_DISPATCH: shape.mergeInDispatch ? 1 : 0,
    SPLIT_MERGE_ROWS: shared.HEADS_PER_WG,
    SPLIT_MERGE_BLOCK: shape.mergeInDispatch ? (shape.mergeBlock ?? MERGE_KERNEL_SPLIT_BLOCK) : MERGE_KERNEL_SPLIT_BLOCK,
    QUANTIZED: format === LANE_FORMATS.int4 ? 1 : 0,
    NEW_ROW_LANES: layout.headDim / VALUES_PER_GROUP,
    NEW_ROT_ROWS: newRotRows,
    LANES_PER_TOKEN: lanes,
    CHANNELS_PER_LANE: channelsPerLane,
    GROUPS_PER_LANE: groupsPerLane,
    CHUNK_WORDS: chunkWords,
    GROUPS_PER_CHUNK: groupsPerChunk,
    CHUNKS_PER_LANE: groupsPerLane / groupsPerChunk,
    LANE_VECS: 2 * groupsPerLane,
    ACC_VECS: 2 * groupsPerLane * shared.HEADS_PER_WG,
    TOKENS_PER_STEP: tokensPerStep,
    QUERY_INT8: shape.queryInt8 ? 1 : 0,
    QUERY_SHARED: tuning.queryInWorkgroup && !shape.queryInt8 ? 1 : 0,
    Q_SHARED_STRIDE: querySharedStride,
    Q_SHARED_HEAD: lanes * querySharedStride,
    POOL_SPLIT: (shape.pool?.numBuffers ?? 1) > 1 ? 1 : 0,
    STEP_SCORES: tokensPerStep * shared.HEADS_PER_WG,
    STEP_CHUNKS: (tokensPerStep * groupsPerLane) / groupsPerChunk,
    SCALE_MIN_CHUNKS: Math.max(1, tokensPerStep / chunkWords),
    MAX_SUBGROUPS: maxSubgroups,
    MERGE_ROWS: Math.min(MAX_MERGE_ROWS, maxSubgroups),
  };
}

/** Workgroup memory of a subgroup-kernel variant, in bytes. */
function subgroupDecodeWorkgroupBytes(c: ReturnType<typeof subgroupDecodeConstants>): number {
  // rot_buf, length, claim counter, counts, subgroup maxima, merge rows and sums, head_sums, head_ml
  const floats = c.ROT_VECTORS * c.HEAD_DIM + 1 + 1 + 2 + c.MAX_SUBGROUPS * c.HEADS_PER_WG + c.MERGE_ROWS * c.HEAD_DIM + 2 * c.MERGE_ROWS + 2 * c.HEADS_PER_WG + 2 * c.HEADS_PER_WG;
  // the fused step: new rows' words and scale/min words, per-lane minima and maxima
  const fused = c.FUSED_STEP ? 2 * c.ROW_WORDS + 2 + 4 * c.NEW_ROW_LANES : 0;
  // queries kept in workgroup memory: [head, lane, Q_SHARED_STRIDE] vec4
  const queries = c.QUERY_SHARED ? 4 * c.HEADS_PER_WG * c.Q_SHARED_HEAD : 0;
  return (floats + fused + queries) * 4;
}

/**
 * The tuning a grid of `numSeqs` sequences runs with: the kernel's defaults under `overrides`
 * (validated), heads per workgroup for the grid (headsForGrid; the kernel variant takes it as its
 * cap) and, for the subgroup kernel, the automatic workgroup size and tokens per step, which depend
 * on the heads and the grid (autoWorkgroupSize, autoTokensPerStep). Also returns the grid before
 * split-K. Throws on a tuning the kernels cannot run.
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
    if (overrides.workgroupSize === undefined) tuning = { ...tuning, workgroupSize: autoWorkgroupSize(layout, heads, workgroupsBeforeSplit, tuning.workgroupSize) };
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
  const tokenLanes = Math.max(1, Math.floor(tuning.workgroupSize / valueLanes));
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
      return [`const GROUP_WORDS: u32 = ${groupWords}u;`, WGSL_LIBRARIES.kvCodes, int4G32FormatWgsl];
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
      const constants = matrixDecodeConstants(shared, shape.layout.method, config, tile, { ...shape, matrixSubgroups: tuning.matrixSubgroups, matrixTokenLanes: tuning.matrixTokenLanes, step, f16Tiles: shaderF16 });
      if (!constants) break;
      const workgroupBytes = matrixDecodeWorkgroupBytes(constants, shaderF16 ? 2 : 4, step);
      const kernel = { variant: matrixDecodeVariant(constants, shape.layout.method, step, shaderF16, shape.matrix?.builtins), headGroups: constants.HEAD_GROUPS, workgroupBytes, matrix: { step, config } };
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
  const pool = shape.pool ?? ONE_BUFFER;
  const name = `paged-decode-subgroup-${format}${constants.QUERY_INT8 ? '-q8' : ''}${constants.FUSED_STEP ? '-fused' : ''}${constants.MERGE_IN_DISPATCH ? `-merged${constants.SPLIT_MERGE_BLOCK}` : ''}`;
  const key = [...sharedDecodeKey(name, constants), `l${constants.LANES_PER_TOKEN}t${constants.TOKENS_PER_STEP}${constants.QUERY_SHARED ? 'qw' : ''}`].join('/') + poolKey(pool);
  // the fused step encodes new tokens with the cache write's code (lib/quantize-lane.wgsl, f16.wgsl)
  const fusedSources = !constants.FUSED_STEP ? [] : constants.QUANTIZED
    ? [`const MAX_CODE: f32 = ${quantFormat(shape.layout.method, shape.layout.headDim)!.maxCode}.0;`, WGSL_LIBRARIES.f16, WGSL_LIBRARIES.quantCode, WGSL_LIBRARIES.quantizeLane]
    : [WGSL_LIBRARIES.f16];
  const variant: ShaderVariant = {
    key,
    code: () =>
      assembleWgsl({
        enables: ['subgroups'],
        constants,
        sources: [
          `alias CacheChunk = ${constants.CHUNK_WORDS === 4 ? 'vec4<u32>' : 'vec2<u32>'};`,
          WGSL_LIBRARIES.decodeIo(constants),
          pool.numBuffers > 1 ? readPoolWgsl(pool) : '',
          ...fusedSources,
          WGSL_LIBRARIES.hadamard,
          constants.MERGE_IN_DISPATCH ? WGSL_LIBRARIES.splitMerge(constants) : '',
          WGSL_LIBRARIES.decodeEpilogue(constants),
          LANE_FORMATS[format].source,
          unrollLoops(selectLines(subgroupDecodeWgsl, constants), constants),
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
          WGSL_LIBRARIES.decodeIo(),
          WGSL_LIBRARIES.hadamard,
          ...formatSources(shape.layout),
          shape.useSubgroups ? tileMaxSubgroupWgsl : tileMaxWorkgroupWgsl,
          workgroupDecodeWgsl,
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
    SPLIT_MERGE_ROWS: 1,
    SPLIT_MERGE_BLOCK: MERGE_KERNEL_SPLIT_BLOCK,
    WORKGROUP_SIZE: Math.min(shape.layout.headDim, 128),
  };
  return {
    key: `paged-decode-merge/d${constants.HEAD_DIM}/hq${constants.NUM_Q_HEADS}/b${block}/o${constants.ROTATE_OUT}s${constants.RANDOM_SIGNS}`,
    code: () => assembleWgsl({ constants, sources: [WGSL_LIBRARIES.hadamard, WGSL_LIBRARIES.splitMerge(constants), unrollLoops(mergeWgsl, constants)] }),
  };
}

/**
 * The merge kernel runs with several splits; with one split it also runs when V was rotated, except
 * after the subgroup and matrix kernels, which rotate V back themselves then (lib/decode-epilogue.wgsl).
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
  /** The pools' buffers 1.. (poolExtras order), for a pool over several buffers (subgroup kernel). */
  poolExtras?: GPUBuffer[];
  /** A fused decode step's new tokens: [S, Hkv, D] f32 K and V (bindings 9 and 10). */
  newK?: GPUBuffer;
  newV?: GPUBuffer;
}

/** A bound decode plan (the plan itself says what runs). */
export interface PreparedDecode {
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
/** The pipelines and bind groups of a decode call: valid while its buffers live, for any grid of its plan's variant. */
export interface BoundDecode {
  decode: GPUComputePipeline;
  decodeGroup: GPUBindGroup;
  merge: GPUComputePipeline | null;
  mergeGroup: GPUBindGroup | null;
}

/** Gets (compiles once) the plan's pipelines and binds `buffers` to them. */
export async function bindDecode(ctx: GpuContext, plan: DecodePlan, shape: DecodeShape, buffers: DecodeBuffers): Promise<BoundDecode> {
  if (plan.workgroupBytes > ctx.limits.maxComputeWorkgroupStorageSize) {
    throw new Error(`decode kernel needs ${plan.workgroupBytes} bytes of workgroup memory; this device allows ${ctx.limits.maxComputeWorkgroupStorageSize}`);
  }
  const decode = await getPipeline(ctx.device, plan.variant);
  const decodeGroup = bindBuffers(ctx.device, decode, [
    buffers.q, buffers.kCache, buffers.vCache, buffers.blockTables, buffers.contextLens,
    buffers.out, buffers.partialAcc, buffers.partialMl, buffers.decodeParams, ...(buffers.poolExtras ?? []),
    ...(plan.fusedStep ? [requireBuffer(buffers.newK, 'new K'), requireBuffer(buffers.newV, 'new V')] : []),
  ], plan.fusedStep ? 'fused decode step' : 'paged decode');
  const merge = plan.merge ? await getPipeline(ctx.device, mergeVariant(shape)) : null;
  const mergeGroup = merge ? bindBuffers(ctx.device, merge, [buffers.partialAcc, buffers.partialMl, buffers.out, buffers.mergeParams], 'paged decode merge') : null;
  return { decode, decodeGroup, merge, mergeGroup };
}

function requireBuffer(buffer: GPUBuffer | undefined, what: string): GPUBuffer {
  if (!buffer) throw new Error(`a fused decode step needs its ${what} buffer`);
  return buffer;
}

/** Records the decode dispatch (and the merge when the plan has one) of `plan` over bound buffers. */
export function encodeDecode(pass: GPUComputePassEncoder, bound: BoundDecode, plan: DecodePlan, numQueryHeads: number): void {
  const [x, y, z] = plan.grid;
  pass.setPipeline(bound.decode);
  pass.setBindGroup(0, bound.decodeGroup);
  pass.dispatchWorkgroups(x, y, z);
  if (bound.merge && bound.mergeGroup) {
    pass.setPipeline(bound.merge);
    pass.setBindGroup(0, bound.mergeGroup);
    pass.dispatchWorkgroups(numQueryHeads, z);
  }
}

/** bindDecode + encodeDecode for one plan. */
export async function prepareDecode(ctx: GpuContext, plan: DecodePlan, shape: DecodeShape, buffers: DecodeBuffers): Promise<PreparedDecode> {
  const bound = await bindDecode(ctx, plan, shape, buffers);
  return { encode: (pass) => encodeDecode(pass, bound, plan, shape.numQueryHeads) };
}
