/**
 * Host side of shaders/paged-decode.wgsl (+ lib/kv-format-*.wgsl, lib/tile-max-*.wgsl) and
 * shaders/paged-decode-merge.wgsl: variants, the split-K choice, binding and dispatch.
 */
import mergeWgsl from '../../shaders/paged-decode-merge.wgsl?raw';
import decodeWgsl from '../../shaders/paged-decode.wgsl?raw';
import fp16FormatWgsl from '../../shaders/lib/kv-format-fp16.wgsl?raw';
import int4FormatWgsl from '../../shaders/lib/kv-format-int4.wgsl?raw';
import tileMaxSubgroupWgsl from '../../shaders/lib/tile-max-subgroup.wgsl?raw';
import tileMaxWorkgroupWgsl from '../../shaders/lib/tile-max-workgroup.wgsl?raw';
import { isQuantized, type CacheLayout } from '../layout';
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
export const TARGET_WORKGROUPS = 512;
/** …but give each split at least this many tokens (two tiles). */
export const MIN_TOKENS_PER_SPLIT = 2 * DECODE_WORKGROUP_SIZE;

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
}

/** Query heads per workgroup: the whole GQA group when it fits, else the largest divisor that does. */
export function headsPerWorkgroup(groupSize: number, headDim: number): number {
  const cap = Math.min(MAX_HEADS_PER_WORKGROUP, Math.max(1, Math.floor(MAX_QUERY_FLOATS_PER_WORKGROUP / headDim)));
  let heads = Math.min(groupSize, cap);
  while (groupSize % heads !== 0) heads--;
  return heads;
}

export function decodeConstants(shape: DecodeShape) {
  const { layout } = shape;
  const groupSize = shape.numQueryHeads / layout.numKvHeads;
  const heads = headsPerWorkgroup(groupSize, layout.headDim);
  const valueLanes = layout.headDim / 8;
  const tokenLanes = DECODE_WORKGROUP_SIZE / valueLanes;
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
    WORKGROUP_SIZE: DECODE_WORKGROUP_SIZE,
    V_LANES: valueLanes,
    TOKEN_LANES: tokenLanes,
    HADAMARD_BLOCK: shape.rotateQ || shape.rotateOut ? shape.hadamardBlock : 1,
    ROTATE_Q: shape.rotateQ ? 1 : 0,
    ROTATE_OUT: shape.rotateOut ? 1 : 0,
    ROT_VECTORS: heads,
    SCRATCH_LEN: Math.max(heads * DECODE_WORKGROUP_SIZE, tokenLanes * layout.headDim),
  };
}

/** Workgroup memory of a decode variant, in bytes (checked against the device limit). */
export function decodeWorkgroupBytes(c: ReturnType<typeof decodeConstants>): number {
  const floats = 2 * c.HEADS_PER_WG * c.HEAD_DIM + c.HEADS_PER_WG * 3 + c.SCRATCH_LEN + 2 * c.WORKGROUP_SIZE + 2 * c.TOKEN_LANES + 1;
  return floats * 4;
}

export function decodeVariant(shape: DecodeShape): ShaderVariant {
  const constants = decodeConstants(shape);
  const format = isQuantized(shape.layout.method) ? 'int4' : 'fp16';
  const key = [
    `paged-decode-${format}`,
    `d${constants.HEAD_DIM}`,
    `hq${constants.NUM_Q_HEADS}`,
    `hkv${constants.NUM_KV_HEADS}`,
    `p${constants.PAGE_SIZE}`,
    `b${constants.HADAMARD_BLOCK}`,
    `q${constants.ROTATE_Q}o${constants.ROTATE_OUT}`,
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
          format === 'int4' ? int4FormatWgsl : fp16FormatWgsl,
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
export function chooseSplits(baseWorkgroups: number, maxContext: number, requestedSplits?: number): SplitPlan {
  const maxSplits = Math.max(1, Math.ceil(maxContext / MIN_TOKENS_PER_SPLIT));
  let splits = requestedSplits ?? Math.ceil(TARGET_WORKGROUPS / Math.max(1, baseWorkgroups));
  splits = Math.max(1, Math.min(splits, requestedSplits ? Math.ceil(maxContext / DECODE_WORKGROUP_SIZE) : maxSplits));
  const tokensPerSplit = Math.ceil(Math.ceil(maxContext / splits) / DECODE_WORKGROUP_SIZE) * DECODE_WORKGROUP_SIZE;
  return { numSplits: Math.ceil(maxContext / tokensPerSplit), tokensPerSplit };
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
  const merge = plan.numSplits > 1 ? await getPipeline(ctx.device, mergeVariant(shape)) : null;
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
