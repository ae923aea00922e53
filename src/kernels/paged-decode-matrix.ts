/**
 * Host side of shaders/paged-decode-matrix.wgsl, the decode kernel on matrix units (tensor cores):
 * which matrix configuration a shape runs with, its constants, workgroup memory and pipeline variant.
 * Two matrix steps share the kernel:
 *  - 'hardware': lib/matrix-step-subgroup.wgsl, the adapter's subgroup matrices
 *    (`chromium-experimental-subgroup-matrix` + `shader-f16`);
 *  - 'software': lib/matrix-step-software.wgsl, the same tiles and hi/lo split multiplied by plain
 *    loops, on any adapter (f16 tiles with `shader-f16`, else f32 tiles): what CI can run.
 */
import matrixDecodeWgsl from '../../shaders/paged-decode-matrix.wgsl?raw';
import matrixStepSubgroupWgsl from '../../shaders/lib/matrix-step-subgroup.wgsl?raw';
import matrixStepSoftwareWgsl from '../../shaders/lib/matrix-step-software.wgsl?raw';
import fp16TileWgsl from '../../shaders/lib/kv-tile-fp16.wgsl?raw';
import int4TileWgsl from '../../shaders/lib/kv-tile-int4.wgsl?raw';
import tileScalarF16Wgsl from '../../shaders/lib/tile-scalar-f16.wgsl?raw';
import tileScalarF32Wgsl from '../../shaders/lib/tile-scalar-f32.wgsl?raw';
import type { KvMethod } from '../layout';
import { assembleWgsl, WGSL_LIBRARIES } from './kernel-source';
import type { ShaderVariant } from './pipeline-cache';
import { unrollLoops } from './wgsl-unroll';

/** One entry of `adapter.info.subgroupMatrixConfigs` (GPUSubgroupMatrixConfig). */
export interface MatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** How the matrix kernel multiplies: on the adapter's matrix units, or by plain loops. */
export type MatrixStep = 'hardware' | 'software';

/** What the device offers the matrix kernel. */
export interface MatrixSupport {
  /** The device's subgroup-matrix configurations ([] without the feature). */
  configs: readonly MatrixConfig[];
  /** `shader-f16` is enabled: tiles are f16 (else f32 holding f16 values, software step only). */
  shaderF16: boolean;
}

/**
 * The tiles the software step emulates, in order of preference: the H200's f16→f32 16×8×16 (tokens
 * × heads × channels), else 8×8×8 where 16-row f32 tiles exceed workgroup memory (head_dim 256 on
 * adapters with 32 KiB).
 */
export const SOFTWARE_MATRIX_CONFIGS: readonly MatrixConfig[] = [
  { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 16 },
  { componentType: 'f16', resultComponentType: 'f32', M: 8, N: 8, K: 8 },
];

/** Tokens per tile unless the tuning says otherwise (rounded up to a multiple of the config's M and K). */
export const DEFAULT_MATRIX_TILE_TOKENS = 16;

/** Padding of a staged tile row, in TileScalar elements (16 bytes of f16: rows start on different banks). */
const TILE_ROW_PAD = 8;

/** The formats the matrix kernel reads (the same decoding as the subgroup kernel's lane formats). */
const TILE_FORMATS: Partial<Record<KvMethod, { source: string; chunkChannels: number }>> = {
  int4: { source: int4TileWgsl, chunkChannels: 32 },
  'int4-hadamard': { source: int4TileWgsl, chunkChannels: 32 },
  fp16: { source: fp16TileWgsl, chunkChannels: 8 },
};

export function matrixKernelSupports(method: KvMethod): boolean {
  return TILE_FORMATS[method] !== undefined;
}

/** Constants shared by every decode kernel (sharedDecodeConstants in paged-decode.ts). */
export interface SharedDecodeConstants extends Record<string, number> {
  HEAD_DIM: number;
  NUM_Q_HEADS: number;
  NUM_KV_HEADS: number;
  PAGE_SIZE: number;
  HEADS_PER_WG: number;
  HEAD_GROUPS: number;
  WORKGROUP_SIZE: number;
  HADAMARD_BLOCK: number;
  ROTATE_Q: number;
  ROTATE_OUT: number;
  RANDOM_SIGNS: number;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * Constants of a matrix-kernel variant for `config`, or null when the config cannot serve the shape
 * (too few columns for the heads, or a head_dim its blocks do not divide).
 */
export function matrixDecodeConstants<S extends SharedDecodeConstants>(shared: S, method: KvMethod, config: MatrixConfig, tileTokensWanted = 0) {
  const format = TILE_FORMATS[method];
  if (!format) return null;
  const { HEAD_DIM: headDim, HEADS_PER_WG: heads, WORKGROUP_SIZE: workgroupSize } = shared;
  if (config.N < heads || headDim % config.M !== 0 || headDim % config.K !== 0) return null;
  const unit = (config.M * config.K) / gcd(config.M, config.K);
  const tileTokens = Math.ceil((tileTokensWanted || DEFAULT_MATRIX_TILE_TOKENS) / unit) * unit;
  const chunksPerRow = headDim / format.chunkChannels;
  const tileChunks = tileTokens * chunksPerRow;
  return {
    ...shared,
    MAT_M: config.M,
    MAT_N: config.N,
    MAT_K: config.K,
    TILE_TOKENS: tileTokens,
    TILE_STRIDE: headDim + TILE_ROW_PAD,
    CHUNK_CHANNELS: format.chunkChannels,
    CHUNKS_PER_ROW: chunksPerRow,
    TILE_CHUNKS: tileChunks,
    LANE_CHUNKS: Math.ceil(tileChunks / workgroupSize),
    SCORE_BLOCKS: tileTokens / config.M,
    Q_BLOCKS: headDim / config.K,
    VALUE_STEPS: tileTokens / config.K,
    O_BLOCKS: headDim / config.M,
  };
}

export type MatrixDecodeConstants = NonNullable<ReturnType<typeof matrixDecodeConstants<SharedDecodeConstants>>>;

/** Workgroup memory of a matrix-kernel variant, in bytes (tileBytes: 2 for f16 tiles, 4 for f32). */
export function matrixDecodeWorkgroupBytes(c: MatrixDecodeConstants, tileBytes: number, step: MatrixStep): number {
  // K and V tiles, P' hi/lo; the hardware step also stages Q̃ hi/lo (the software step splits on use)
  const tileElements = 2 * c.TILE_TOKENS * c.TILE_STRIDE + 2 * c.TILE_TOKENS * c.MAT_N + (step === 'hardware' ? 2 * c.MAT_N * c.HEAD_DIM : 0);
  // rot_buf, s_tile, o_tile, k/v scale-min pairs, 4 per-head scalars, head_state (vec4), head_ml (vec2),
  // flag, length
  const floats = c.HEADS_PER_WG * c.HEAD_DIM + c.TILE_TOKENS * c.MAT_N + c.HEAD_DIM * c.MAT_N + 4 * c.TILE_TOKENS + 4 * c.MAT_N + 4 * c.MAT_N + 2 * c.HEADS_PER_WG + 2;
  return Math.ceil((tileElements * tileBytes) / 4) * 4 + floats * 4;
}

/**
 * The f16→f32 configurations that can serve `heads` query heads at `headDim`, best first: fewest
 * padded columns (N − heads), then the longest K (fewer MMAs per tile). Sizes always come from the
 * list, never assumed.
 */
export function usableMatrixConfigs(configs: readonly MatrixConfig[], heads: number, headDim: number): MatrixConfig[] {
  return configs
    .filter((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.N >= heads && headDim % c.M === 0 && headDim % c.K === 0)
    .sort((a, b) => a.N - b.N || b.K - a.K || a.M - b.M);
}

/** The matrix kernel's pipeline variant for constants `c`. */
export function matrixDecodeVariant(c: MatrixDecodeConstants, method: KvMethod, step: MatrixStep, shaderF16: boolean): ShaderVariant {
  const format = TILE_FORMATS[method]!;
  const f16Tiles = step === 'hardware' || shaderF16;
  const enables = step === 'hardware' ? ['f16', 'chromium_experimental_subgroup_matrix'] : f16Tiles ? ['f16'] : [];
  const key = [
    `paged-decode-matrix-${format.chunkChannels === 32 ? 'int4' : 'fp16'}-${step}${f16Tiles ? '-f16' : '-f32'}`,
    `d${c.HEAD_DIM}`, `hq${c.NUM_Q_HEADS}`, `hkv${c.NUM_KV_HEADS}`, `p${c.PAGE_SIZE}`, `b${c.HADAMARD_BLOCK}`,
    `q${c.ROTATE_Q}o${c.ROTATE_OUT}s${c.RANDOM_SIGNS}`, `wg${c.WORKGROUP_SIZE}g${c.HEADS_PER_WG}`, `m${c.MAT_M}x${c.MAT_N}x${c.MAT_K}t${c.TILE_TOKENS}`,
  ].join('/');
  return {
    key,
    code: () =>
      assembleWgsl({
        enables,
        // The calls are in workgroup-uniform control flow; the analysis cannot see that for loads
        // whose pointer is a function parameter.
        directives: step === 'hardware' ? ['diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);'] : [],
        constants: c,
        sources: [
          'alias CacheChunk = vec4<u32>;',
          f16Tiles ? tileScalarF16Wgsl : tileScalarF32Wgsl,
          WGSL_LIBRARIES.decodeIo,
          WGSL_LIBRARIES.hadamard,
          WGSL_LIBRARIES.decodeEpilogue,
          format.source,
          unrollLoops(step === 'hardware' ? matrixStepSubgroupWgsl : matrixStepSoftwareWgsl, c),
          unrollLoops(matrixDecodeWgsl, c),
        ],
      }),
  };
}
