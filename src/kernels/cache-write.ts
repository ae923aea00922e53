/**
 * Host side of the cache-write kernels: shaders/cache-write-quant.wgsl (every quantized method: fused
 * [Hadamard rotation] + quantize + pack + paged store) and shaders/cache-write-fp16.wgsl (the baseline).
 */
import writeFp16Wgsl from '../../shaders/cache-write-fp16.wgsl?raw';
import writeQuantWgsl from '../../shaders/cache-write-quant.wgsl?raw';
import { layoutConstants, quantFormat, type CacheLayout, type PoolSplit } from '../layout';
import { ONE_BUFFER, poolKey, writePoolWgsl } from './cache-pool';
import type { GpuContext } from '../gpu/gpu-context';
import { bindBuffers } from './gpu-buffers';
import { unrollLoops } from './wgsl-unroll';
import { assembleWgsl, WGSL_LIBRARIES } from './kernel-source';
import { getPipeline, type ShaderVariant } from './pipeline-cache';

/** Invocations per workgroup of both write kernels. */
export const CACHE_WRITE_WORKGROUP_SIZE = 64;
/** Workgroups along x before the grid wraps into z (WebGPU guarantees 65535 per dimension). */
const MAX_GRID_X = 32768;
/** Elements each invocation of a quantizing write owns (one INT4 word, two INT8 words). */
const LANE_ELEMENTS = 8;

export interface CacheWriteOptions {
  /** Hadamard block B, or 1 for no rotation. */
  hadamardBlock: number;
  rotateK: boolean;
  rotateV: boolean;
  /** Random ±1 signs before the rotation (WriteParams.sign_bits); false: none, and the bits are not read. */
  randomSigns: boolean;
  /** How the K and V pools are spread over buffers (default: one buffer each). */
  pool?: PoolSplit;
}

/**
 * Rows (token, kv head) per workgroup of the quantizing write kernel: as many whole rows of
 * head_dim/8 lanes as fit in CACHE_WRITE_WORKGROUP_SIZE invocations (8 at head_dim 64, 5 at 96, 4 at
 * 128, 3 at 160, 2 at 192–256); the workgroup is rows × lanes invocations.
 */
export function quantRowsPerWorkgroup(headDim: number): number {
  return Math.max(1, Math.floor(CACHE_WRITE_WORKGROUP_SIZE / (headDim / LANE_ELEMENTS)));
}

export function cacheWriteVariant(layout: CacheLayout, options: CacheWriteOptions): ShaderVariant {
  const common = layoutConstants(layout);
  const format = quantFormat(layout.method, layout.headDim);
  const pool = options.pool ?? ONE_BUFFER;
  if (format === null) {
    return {
      key: `cache-write-fp16/d${layout.headDim}/h${layout.numKvHeads}/p${layout.pageSize}${poolKey(pool)}`,
      code: () => assembleWgsl({ constants: { ...common, WORKGROUP_SIZE: CACHE_WRITE_WORKGROUP_SIZE }, sources: [WGSL_LIBRARIES.f16, WGSL_LIBRARIES.cacheWriteIo, writePoolWgsl(pool), writeFp16Wgsl] }),
    };
  }
  const lanes = layout.headDim / LANE_ELEMENTS;
  const rowsPerWorkgroup = quantRowsPerWorkgroup(layout.headDim);
  const block = options.rotateK || options.rotateV ? options.hadamardBlock : 1;
  const constants = {
    ...common,
    CODE_BITS: format.codeBits,
    LANES: lanes,
    GROUP_LANES: format.groupSize / LANE_ELEMENTS,
    ROWS_PER_WG: rowsPerWorkgroup,
    ROT_VECTORS: rowsPerWorkgroup,
    HADAMARD_BLOCK: block,
    ROTATE_K: options.rotateK ? 1 : 0,
    ROTATE_V: options.rotateV ? 1 : 0,
    RANDOM_SIGNS: block > 1 && options.randomSigns ? 1 : 0,
    WORKGROUP_SIZE: rowsPerWorkgroup * lanes,
  };
  return {
    key: `cache-write-quant/${layout.method}/d${layout.headDim}/h${layout.numKvHeads}/p${layout.pageSize}/b${block}/k${constants.ROTATE_K}v${constants.ROTATE_V}s${constants.RANDOM_SIGNS}${poolKey(pool)}`,
    code: () =>
      assembleWgsl({
        constants,
        sources: [
          `const MAX_CODE: f32 = ${format.maxCode}.0;`,
          WGSL_LIBRARIES.f16,
          WGSL_LIBRARIES.hadamard,
          WGSL_LIBRARIES.quantCode,
          WGSL_LIBRARIES.quantizeLane,
          WGSL_LIBRARIES.cacheWriteIo,
          writePoolWgsl(pool),
          unrollLoops(writeQuantWgsl, constants),
        ],
      }),
  };
}

/** Grid for `workgroups` along x (wrapping into z), with y = 2 (K and V). */
export function writeGrid(workgroups: number): [number, number, number] {
  const x = Math.min(workgroups, MAX_GRID_X);
  return [Math.max(1, x), 2, Math.max(1, Math.ceil(workgroups / MAX_GRID_X))];
}

export interface CacheWriteBuffers {
  /** [N, Hkv, D] f32 */
  newK: GPUBuffer;
  /** [N, Hkv, D] f32 */
  newV: GPUBuffer;
  /** [N] u32 page * pageSize + offset */
  slots: GPUBuffer;
  /** K pool buffer 0 (of options.pool's buffers) */
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  /** WriteParams: num_tokens, zero, 2 pad, sign_bits[8] (48 bytes) */
  params: GPUBuffer;
  /** The pools' buffers 1.. (poolExtras order), for a pool over several buffers. */
  poolExtras?: GPUBuffer[];
}

/** A cache write bound to its buffers: `encode` records the dispatch for `numTokens` rows of them. */
export interface BoundCacheWrite {
  encode(pass: GPUComputePassEncoder, numTokens: number): void;
}

/** Binds the write kernel of `layout` and `options` to `buffers` (reusable for any row count that fits them). */
export async function bindCacheWrite(ctx: GpuContext, layout: CacheLayout, options: CacheWriteOptions, buffers: CacheWriteBuffers): Promise<BoundCacheWrite> {
  const pipeline = await getPipeline(ctx.device, cacheWriteVariant(layout, options));
  const bindGroup = bindBuffers(ctx.device, pipeline, [buffers.newK, buffers.newV, buffers.slots, buffers.kCache, buffers.vCache, buffers.params, ...(buffers.poolExtras ?? [])], 'cache write');
  const quantized = quantFormat(layout.method, layout.headDim) !== null;
  return {
    encode(pass, numTokens) {
      if (numTokens === 0) return;
      const rows = numTokens * layout.numKvHeads;
      const workgroups = quantized ? Math.ceil(rows / quantRowsPerWorkgroup(layout.headDim)) : Math.ceil((rows * layout.rowWords) / CACHE_WRITE_WORKGROUP_SIZE);
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...writeGrid(workgroups));
    },
  };
}

/** The 48-byte WriteParams uniform. */
export function writeParams(numTokens: number, signBits: Uint32Array): Uint32Array {
  const params = new Uint32Array(12);
  params[0] = numTokens;
  params[1] = 0; // zero: lib/quant-code.wgsl's opaque 0
  params.set(signBits.subarray(0, 8), 4);
  return params;
}
