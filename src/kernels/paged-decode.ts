/**
 * Host side of shaders/paged-decode.wgsl (+ lib/kv-format-*.wgsl, lib/tile-max-*.wgsl) and
 * shaders/paged-decode-merge.wgsl: variants, the split-K choice, binding and dispatch.
 */
import mergeWgsl from '../../shaders/paged-decode-merge.wgsl?raw';
import decodeWgsl from '../../shaders/paged-decode.wgsl?raw';
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

/** Invocations per decode workgroup = tokens per tile. */
export const DECODE_WORKGROUP_SIZE = 128;
/** At most this many query heads share a workgroup (registers: 8 accumulators of 8 values each). */
export const MAX_HEADS_PER_WORKGROUP = 8;
/** At most this many f32 of queries per workgroup (HEADS_PER_WG × HEAD_DIM) to bound workgroup memory. */
const MAX_QUERY_FLOATS_PER_WORKGROUP = 1024;
/** Split-K: aim for at least this many workgroups in flight… */
export const TARGET_WORKGROUPS = 2048;
/** …but give each split at least this many tokens (one tile). */
export const MIN_TOKENS_PER_SPLIT = DECODE_WORKGROUP_SIZE;

/** Per-GPU tuning of the decode kernel (defaults: DEFAULT_DECODE_TUNING). */
export interface DecodeTuning {
  /** Invocations per workgroup = tokens per tile: 64, 128 or 256. */
  workgroupSize: number;
  /** Cap on query heads per workgroup (fewer: less state per invocation, more K/V re-reads). */
  maxHeadsPerWorkgroup: number;
  /** V loads each invocation keeps in flight. */
  vPrefetch: number;
}

/**
 * Measured best on an NVIDIA H200 through Dawn/Vulkan (batch 64, context 4096, 32/8 heads, D=128;
 * docs/tuning.md): 64 invocations and 2 query heads per workgroup were fastest for both FP16 and
 * INT4; 4 or 8 heads per workgroup ran ~2× slower (per-invocation state grows with the head count).
 */
export const DEFAULT_DECODE_TUNING: DecodeTuning = {
  workgroupSize: 64,
  maxHeadsPerWorkgroup: 2,
  vPrefetch: 8,
};

export interface DecodeShape {
  layout: CacheLayout;
  numQueryHeads: number;
  /** Hadamard block B (ignored unless rotateQ or rotateOut). */
  hadamardBlock: number;
  /** K was rotated: rotate the query. */
  rotateQ: boolean;
  /** V was rotated: rotate the output back. */
  rotateOut: boolean;
  useSubgroups: boolean;
  tuning?: Partial<DecodeTuning>;
}

export function resolveTuning(tuning: Partial<DecodeTuning> = {}): DecodeTuning {
  const t = { ...DEFAULT_DECODE_TUNING, ...tuning };
  if (![64, 128, 256].includes(t.workgroupSize)) throw new Error(`decode workgroupSize must be 64, 128 or 256, got ${t.workgroupSize}`);
  if (!Number.isInteger(t.maxHeadsPerWorkgroup) || t.maxHeadsPerWorkgroup < 1 || t.maxHeadsPerWorkgroup > MAX_HEADS_PER_WORKGROUP) {
    throw new Error(`maxHeadsPerWorkgroup must be in [1, ${MAX_HEADS_PER_WORKGROUP}], got ${t.maxHeadsPerWorkgroup}`);
  }
  if (!Number.isInteger(t.vPrefetch) || t.vPrefetch < 1 || t.vPrefetch > 32) throw new Error(`vPrefetch must be in [1, 32], got ${t.vPrefetch}`);
  return t;
}

/** Query heads per workgroup: the whole GQA group when it fits, else the largest divisor that does. */
export function headsPerWorkgroup(groupSize: number, headDim: number, maxHeads = MAX_HEADS_PER_WORKGROUP): number {
  const cap = Math.min(maxHeads, Math.max(1, Math.floor(MAX_QUERY_FLOATS_PER_WORKGROUP / headDim)));
  let heads = Math.min(groupSize, cap);
  while (groupSize % heads !== 0) heads--;
  return heads;
}

export function decodeConstants(shape: DecodeShape) {
  const { layout } = shape;
  const tuning = resolveTuning(shape.tuning);
  const groupSize = shape.numQueryHeads / layout.numKvHeads;
  const heads = headsPerWorkgroup(groupSize, layout.headDim, tuning.maxHeadsPerWorkgroup);
  const valueLanes = layout.headDim / 8;
  const tokenLanes = Math.max(1, tuning.workgroupSize / valueLanes);
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
    V_LANES: valueLanes,
    V_PREFETCH_MAX: tuning.vPrefetch,
    TOKEN_LANES: tokenLanes,
    HADAMARD_BLOCK: shape.rotateQ || shape.rotateOut ? shape.hadamardBlock : 1,
    ROTATE_Q: shape.rotateQ ? 1 : 0,
    ROTATE_OUT: shape.rotateOut ? 1 : 0,
    ROT_VECTORS: heads,
    SCRATCH_LEN: Math.max(heads * tuning.workgroupSize, tokenLanes * layout.headDim),
  };
}

/** Workgroup memory of a decode variant, in bytes (checked against the device limit). */
export function decodeWorkgroupBytes(c: ReturnType<typeof decodeConstants>): number {
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

export function decodeVariant(shape: DecodeShape): ShaderVariant {
  const constants = decodeConstants(shape);
  const format = DECODE_FORMATS[shape.layout.method];
  const key = [
    `paged-decode-${format}`,
    `d${constants.HEAD_DIM}`,
    `hq${constants.NUM_Q_HEADS}`,
    `hkv${constants.NUM_KV_HEADS}`,
    `p${constants.PAGE_SIZE}`,
    `b${constants.HADAMARD_BLOCK}`,
    `q${constants.ROTATE_Q}o${constants.ROTATE_OUT}`,
    `wg${constants.WORKGROUP_SIZE}g${constants.HEADS_PER_WG}v${constants.V_PREFETCH_MAX}`,
    shape.useSubgroups ? 'subgroups' : 'workgroup',
  ].join('/');
  return {
    key,
    code: () =>
      assembleWgsl({
        enables: shape.useSubgroups ? ['subgroups'] : [],
        constants,
        sources: [
          WGSL_LIBRARIES.hadamard,
          ...formatSources(shape.layout),
          shape.useSubgroups ? tileMaxSubgroupWgsl : tileMaxWorkgroupWgsl,
          decodeWgsl,
        ],
      }),
  };
}

export function mergeVariant(shape: DecodeShape): ShaderVariant {
  const block = shape.rotateOut ? shape.hadamardBlock : 1;
  const constants = {
    HEAD_DIM: shape.layout.headDim,
    NUM_Q_HEADS: shape.numQueryHeads,
    HADAMARD_BLOCK: block,
    ROTATE_OUT: shape.rotateOut ? 1 : 0,
    ROT_VECTORS: 1,
    WORKGROUP_SIZE: Math.min(shape.layout.headDim, 128),
  };
  return {
    key: `paged-decode-merge/d${constants.HEAD_DIM}/hq${constants.NUM_Q_HEADS}/b${block}/o${constants.ROTATE_OUT}`,
    code: () => assembleWgsl({ constants, sources: [WGSL_LIBRARIES.hadamard, mergeWgsl] }),
  };
}

export interface SplitPlan {
  numSplits: number;
  tokensPerSplit: number;
}

/**
 * Split-K plan: split the context only when the grid (sequences × kv heads × head groups) is too
 * small to fill the GPU, and never below MIN_TOKENS_PER_SPLIT tokens per split.
 */
export function chooseSplits(baseWorkgroups: number, maxContext: number, requestedSplits?: number, tileTokens = DECODE_WORKGROUP_SIZE): SplitPlan {
  const maxSplits = Math.max(1, Math.ceil(maxContext / Math.max(MIN_TOKENS_PER_SPLIT, tileTokens)));
  let splits = requestedSplits ?? Math.ceil(TARGET_WORKGROUPS / Math.max(1, baseWorkgroups));
  splits = Math.max(1, Math.min(splits, requestedSplits ? Math.ceil(maxContext / tileTokens) : maxSplits));
  const tokensPerSplit = Math.ceil(Math.ceil(maxContext / splits) / tileTokens) * tileTokens;
  return { numSplits: Math.ceil(maxContext / tokensPerSplit), tokensPerSplit };
}

/** The merge kernel runs with several splits, and always when V was rotated (it rotates back). */
export function needsMerge(plan: SplitPlan, shape: Pick<DecodeShape, 'rotateOut'>): boolean {
  return plan.numSplits > 1 || shape.rotateOut;
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

export async function prepareDecode(ctx: GpuContext, shape: DecodeShape, buffers: DecodeBuffers, numSeqs: number, plan: SplitPlan): Promise<PreparedDecode> {
  const constants = decodeConstants(shape);
  const shared = decodeWorkgroupBytes(constants);
  if (shared > ctx.limits.maxComputeWorkgroupStorageSize) {
    throw new Error(`decode kernel needs ${shared} bytes of workgroup memory; this device allows ${ctx.limits.maxComputeWorkgroupStorageSize}`);
  }
  const decode = await getPipeline(ctx.device, decodeVariant(shape));
  const decodeGroup = bindBuffers(ctx.device, decode, [
    buffers.q, buffers.kCache, buffers.vCache, buffers.blockTables, buffers.contextLens,
    buffers.out, buffers.partialAcc, buffers.partialMl, buffers.decodeParams,
  ], 'paged decode');
  const merge = needsMerge(plan, shape) ? await getPipeline(ctx.device, mergeVariant(shape)) : null;
  const mergeGroup = merge ? bindBuffers(ctx.device, merge, [buffers.partialAcc, buffers.partialMl, buffers.out, buffers.mergeParams], 'paged decode merge') : null;
  const yGroups = shape.layout.numKvHeads * constants.HEAD_GROUPS;
  return {
    plan,
    encode(pass) {
      pass.setPipeline(decode);
      pass.setBindGroup(0, decodeGroup);
      pass.dispatchWorkgroups(plan.numSplits, yGroups, numSeqs);
      if (merge && mergeGroup) {
        pass.setPipeline(merge);
        pass.setBindGroup(0, mergeGroup);
        pass.dispatchWorkgroups(shape.numQueryHeads, numSeqs);
      }
    },
  };
}
