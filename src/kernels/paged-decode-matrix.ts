/**
 * Host side of shaders/paged-decode-matrix.wgsl, the decode kernel on matrix units (tensor cores):
 * which matrix configuration a shape runs with, its constants, workgroup memory and pipeline variant.
 * Two matrix steps share the kernel:
 *  - 'hardware': lib/matrix-step-subgroup.wgsl, the adapter's subgroup matrices
 *    (`chromium-experimental-subgroup-matrix` + `shader-f16`);
 *  - 'software': lib/matrix-step-software.wgsl, the same tiles and hi/lo split multiplied by plain
 *    loops, on any adapter (f16 tiles with `shader-f16`, else f32 tiles): what CI can run.
 * Two variants, during the transition (DecodeTuning.matrixSubgroups):
 *  - the stream kernel (paged-decode-matrix.wgsl, matrixSubgroups ≥ 1): each of the workgroup's
 *    subgroups runs its own stream of token tiles; needs `subgroups` and a fixed subgroup size;
 *  - the serial kernel (paged-decode-matrix-serial.wgsl, matrixSubgroups = 0, or where the stream
 *    kernel cannot run): one tile stream for the whole workgroup, 4 barriers per tile, as measured in
 *    docs/tuning.md; kept so that both can be timed in one run.
 */
import matrixDecodeWgsl from '../../shaders/paged-decode-matrix.wgsl?raw';
import matrixSerialDecodeWgsl from '../../shaders/paged-decode-matrix-serial.wgsl?raw';
import matrixStepSubgroupWgsl from '../../shaders/lib/matrix-step-subgroup.wgsl?raw';
import matrixStepSoftwareWgsl from '../../shaders/lib/matrix-step-software.wgsl?raw';
import matrixSerialStepSubgroupWgsl from '../../shaders/lib/matrix-step-serial-subgroup.wgsl?raw';
import matrixSerialStepSoftwareWgsl from '../../shaders/lib/matrix-step-serial-software.wgsl?raw';
import fp16StreamWgsl from '../../shaders/lib/kv-stream-fp16.wgsl?raw';
import int4StreamWgsl from '../../shaders/lib/kv-stream-int4.wgsl?raw';
import fp16TileWgsl from '../../shaders/lib/kv-tile-fp16.wgsl?raw';
import int4TileWgsl from '../../shaders/lib/kv-tile-int4.wgsl?raw';
import tileScalarF16Wgsl from '../../shaders/lib/tile-scalar-f16.wgsl?raw';
import tileScalarF32Wgsl from '../../shaders/lib/tile-scalar-f32.wgsl?raw';
import type { KvMethod } from '../layout';
import { assembleWgsl, WGSL_LIBRARIES } from './kernel-source';
import type { ShaderVariant } from './pipeline-cache';
import { inlineCalls, selectLines, splitArguments, unrollLoops } from './wgsl-unroll';

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
  /**
   * How the device's WGSL spells a matrix load/store's majorness (GpuContext.matrixBuiltins):
   * 'template' (`subgroupMatrixLoad<T, col_major>(p, offset, stride)`, current Dawn, in which the
   * step sources are written) or 'argument' (`subgroupMatrixLoad<T>(p, offset, true, stride)`, the
   * first implementations; current Dawn still takes it with a deprecation warning per call).
   * Default 'template'.
   */
  builtins?: MatrixBuiltinSpelling;
}

export type MatrixBuiltinSpelling = 'template' | 'argument';

/**
 * WGSL written with the template spelling of subgroupMatrixLoad / subgroupMatrixStore rewritten to
 * the argument spelling (majorness as a bool before the stride: col_major = true).
 */
export function matrixBuiltinsAsArguments(code: string): string {
  const call = /subgroupMatrix(?:Load<(\w+), (row_major|col_major)>|Store<(row_major|col_major)>)\(/g;
  let out = '';
  let last = 0;
  for (let m = call.exec(code); m; m = call.exec(code)) {
    let end = call.lastIndex;
    for (let depth = 1; depth > 0; end++) {
      if (end >= code.length) throw new Error('matrixBuiltinsAsArguments: unbalanced call');
      if (code[end] === '(') depth++;
      else if (code[end] === ')') depth--;
    }
    const args = splitArguments(code.slice(call.lastIndex, end - 1));
    const [load, loadMajor, storeMajor] = [m[1], m[2], m[3]];
    const colMajor = String((loadMajor ?? storeMajor) === 'col_major');
    if (args.length !== (load ? 3 : 4)) throw new Error(`matrixBuiltinsAsArguments: ${args.length} arguments in "${code.slice(m.index, end)}"`);
    const rewritten = load
      ? `subgroupMatrixLoad<${load}>(${args[0]}, ${args[1]}, ${colMajor}, ${args[2]})`
      : `subgroupMatrixStore(${args[0]}, ${args[1]}, ${args[2]}, ${colMajor}, ${args[3]})`;
    out += code.slice(last, m.index) + rewritten;
    last = end;
    call.lastIndex = end;
  }
  return out + code.slice(last);
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

/**
 * Padding of a staged tile row, in TileScalar elements: rows stay 16-byte aligned (the matrix loads
 * need it) and an odd number of 16-byte units apart (8 consecutive rows of a matrix load hit distinct
 * banks).
 */
const TILE_ROW_PAD = 8;

/**
 * The formats the matrix kernels read (the same decoding as the subgroup kernel's lane formats): the
 * stream kernel's (staged one u32 word per lane) and the serial kernel's (one vec4<u32> chunk).
 */
const TILE_FORMATS: Partial<Record<KvMethod, { name: 'int4' | 'fp16'; source: string; serialSource: string; chunkChannels: number }>> = {
  int4: { name: 'int4', source: int4StreamWgsl, serialSource: int4TileWgsl, chunkChannels: 32 },
  'int4-hadamard': { name: 'int4', source: int4StreamWgsl, serialSource: int4TileWgsl, chunkChannels: 32 },
  fp16: { name: 'fp16', source: fp16StreamWgsl, serialSource: fp16TileWgsl, chunkChannels: 8 },
};

export function matrixKernelSupports(method: KvMethod): boolean {
  return TILE_FORMATS[method] !== undefined;
}

/** Constants shared by every decode kernel (sharedDecodeConstants in paged-decode.ts). */
export interface SharedDecodeConstants extends Record<string, number> {
  HEAD_DIM: number;
  ROW_WORDS: number;
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

/**
 * What choosing between the two variants needs beyond the shared constants (paged-decode.ts passes
 * the decode shape's fields and the tuning's matrixSubgroups).
 */
export interface MatrixKernelContext {
  /** DecodeTuning.matrixSubgroups: subgroups (token streams) per workgroup; 0 = the serial kernel. */
  matrixSubgroups: number;
  /** DecodeTuning.matrixTokenLanes (0 = automatic). */
  matrixTokenLanes?: number;
  step: MatrixStep;
  /** Tiles are f16 (hardware, or shader-f16), else f32 holding f16 values. */
  f16Tiles: boolean;
  useSubgroups: boolean;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  /** The device's maxComputeWorkgroupStorageSize (streams are reduced until a variant fits). */
  maxWorkgroupStorageBytes?: number;
}

/** The constants every matrix variant has (the rest depend on the variant; all are WGSL u32 consts). */
export interface MatrixDecodeConstants extends SharedDecodeConstants {
  MAT_M: number;
  MAT_N: number;
  MAT_K: number;
  /** Token streams (subgroups) per workgroup; 0 = the serial kernel. */
  MATRIX_STREAMS: number;
  TILE_TOKENS: number;
  TILE_STRIDE: number;
  SCORE_BLOCKS: number;
  Q_BLOCKS: number;
  VALUE_STEPS: number;
  O_BLOCKS: number;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

const lcm = (a: number, b: number) => (a * b) / gcd(a, b);

/** The largest power of two ≤ x (x ≥ 1). */
const floorPow2 = (x: number) => 2 ** Math.floor(Math.log2(x));

/**
 * The subgroup size the stream kernel is compiled for, or null where it cannot run: it needs
 * `subgroups` and a fixed subgroup size (min = max; an unreported minimum counts as the maximum), so
 * that a workgroup of S × size invocations is exactly S full subgroups.
 */
function streamSubgroupSize(ctx: MatrixKernelContext): number | null {
  const size = ctx.subgroupMaxSize;
  if (ctx.matrixSubgroups <= 0 || !ctx.useSubgroups || !size || (ctx.subgroupMinSize ?? size) !== size) return null;
  return size;
}

/**
 * Constants of a matrix-kernel variant for `config`, or null when the config cannot serve the shape
 * (too few columns for the heads, or a head_dim its blocks do not divide). With a context that allows
 * it (matrixSubgroups ≥ 1, subgroups of a fixed size) the stream kernel, with the most streams up to
 * matrixSubgroups whose workgroup memory fits; otherwise the serial kernel.
 */
export function matrixDecodeConstants<S extends SharedDecodeConstants>(shared: S, method: KvMethod, config: MatrixConfig, tileTokensWanted = 0, ctx?: MatrixKernelContext): (S & MatrixDecodeConstants) | null {
  const format = TILE_FORMATS[method];
  if (!format) return null;
  const { HEAD_DIM: headDim, HEADS_PER_WG: heads } = shared;
  if (config.N < heads || headDim % config.M !== 0 || headDim % config.K !== 0) return null;
  const subgroupSize = ctx ? streamSubgroupSize(ctx) : null;
  if (!ctx || subgroupSize === null) return serialConstants(shared, format.chunkChannels, config, tileTokensWanted);
  const limit = ctx.maxWorkgroupStorageBytes ?? Infinity;
  let fitting: (S & MatrixDecodeConstants) | null = null;
  for (let streams = floorPow2(ctx.matrixSubgroups); streams >= 1 && !fitting; streams /= 2) {
    const c = streamConstants(shared, config, tileTokensWanted, streams, subgroupSize, ctx.step, ctx.f16Tiles, ctx.matrixTokenLanes ?? 0);
    if (streams === 1 || matrixDecodeWorkgroupBytes(c, ctx.f16Tiles ? 2 : 4, ctx.step) <= limit) fitting = c;
  }
  return fitting;
}

/** The serial kernel (paged-decode-matrix-serial.wgsl): tiles staged by the whole workgroup. */
function serialConstants<S extends SharedDecodeConstants>(shared: S, chunkChannels: number, config: MatrixConfig, tileTokensWanted: number): S & MatrixDecodeConstants {
  const { HEAD_DIM: headDim, WORKGROUP_SIZE: workgroupSize } = shared;
  const unit = lcm(config.M, config.K);
  const tileTokens = Math.ceil((tileTokensWanted || DEFAULT_MATRIX_TILE_TOKENS) / unit) * unit;
  const chunksPerRow = headDim / chunkChannels;
  const tileChunks = tileTokens * chunksPerRow;
  return {
    ...shared,
    MAT_M: config.M,
    MAT_N: config.N,
    MAT_K: config.K,
    MATRIX_STREAMS: 0,
    TILE_TOKENS: tileTokens,
    TILE_STRIDE: headDim + TILE_ROW_PAD,
    CHUNK_CHANNELS: chunkChannels,
    CHUNKS_PER_ROW: chunksPerRow,
    TILE_CHUNKS: tileChunks,
    LANE_CHUNKS: Math.ceil(tileChunks / workgroupSize),
    SCORE_BLOCKS: tileTokens / config.M,
    Q_BLOCKS: headDim / config.K,
    VALUE_STEPS: tileTokens / config.K,
    O_BLOCKS: headDim / config.M,
  };
}

/**
 * The stream kernel (paged-decode-matrix.wgsl): `streams` subgroups of `subgroupSize` lanes, each
 * with its own tiles of TILE_TOKENS tokens (a multiple of M, K and 8, the group stage_token permutes).
 */
function streamConstants<S extends SharedDecodeConstants>(shared: S, config: MatrixConfig, tileTokensWanted: number, streams: number, subgroupSize: number, step: MatrixStep, f16Tiles: boolean, tokenLanesWanted: number): S & MatrixDecodeConstants {
  const { HEAD_DIM: headDim, ROW_WORDS: rowWords, HEADS_PER_WG: heads } = shared;
  const unit = lcm(lcm(config.M, config.K), 8);
  const tileTokens = Math.ceil((tileTokensWanted || DEFAULT_MATRIX_TILE_TOKENS) / unit) * unit;
  // the softmax: TOKEN_LANES lanes per group of HEADS_PER_LANE heads, SUBGROUP_SIZE / TOKEN_LANES groups
  const tokenLanes = Math.min(subgroupSize, tokenLanesWanted || floorPow2(tileTokens));
  if (subgroupSize % tokenLanes !== 0) throw new Error(`matrixTokenLanes ${tokenLanes} does not divide the subgroup size ${subgroupSize}`);
  const headsPerLane = Math.ceil(heads / (subgroupSize / tokenLanes));
  const tileStride = headDim + TILE_ROW_PAD;
  const tileWords = tileTokens * rowWords;
  // the queries' hi/lo parts are staged where the tiles go later (hardware step)
  if (step === 'hardware' && 2 * config.N * headDim > streams * 2 * tileTokens * tileStride) {
    throw new Error(`matrix kernel: ${tileTokens}-token tiles cannot hold the hi/lo query staging of ${config.N} columns`);
  }
  return {
    ...shared,
    WORKGROUP_SIZE: streams * subgroupSize,
    MAT_M: config.M,
    MAT_N: config.N,
    MAT_K: config.K,
    MATRIX_STREAMS: streams,
    SUBGROUP_SIZE: subgroupSize,
    TILE_TOKENS: tileTokens,
    TILE_STRIDE: tileStride,
    TILE_ELEMENTS: tileTokens * tileStride,
    TILE_WORDS: tileWords,
    LANE_WORDS: Math.ceil(tileWords / subgroupSize),
    TOKEN_LANES: tokenLanes,
    HEADS_PER_LANE: headsPerLane,
    HEAD_GROUPS_IN_SUBGROUP: tokenLanes < subgroupSize ? 1 : 0,
    LANE_TOKENS: Math.ceil(tileTokens / tokenLanes),
    // On matrix hardware a tile's words are loaded a step ahead into registers, in unrolled loops (so
    // the arrays stay registers). The software step only has to be right, and its CPU drivers compile
    // those loops slowly: unrolled, SwiftShader took 23 s instead of ~8 s per variant; lavapipe
    // 76–116 s unrolled and 46–180 s not (it turns the arrays' indexing into branch ladders) instead
    // of ~13 s with the words loaded when staged. So SwiftShader (f32 tiles) runs the prefetch, not
    // unrolled, which tests its bookkeeping in CI, and lavapipe (f16 tiles) loads when it stages.
    PREFETCH_TILES: step === 'hardware' || !f16Tiles ? 1 : 0,
    UNROLL_LANES: step === 'hardware' ? 1 : 0,
    // tokens one staging instruction covers (a power of two dividing 8; see stage_token)
    STAGE_GROUP: Math.min(8, floorPow2(Math.max(1, subgroupSize / rowWords))),
    SCORE_BLOCKS: tileTokens / config.M,
    Q_BLOCKS: headDim / config.K,
    VALUE_STEPS: tileTokens / config.K,
    O_BLOCKS: headDim / config.M,
    // hardware: Oᵀ in registers, o_mem holds one stream's at a time; software: each stream's Oᵀ
    O_REGIONS: step === 'hardware' ? 1 : streams,
  };
}

/** WGSL counts each workgroup variable rounded up to 16 bytes. */
const wgVar = (bytes: number) => Math.ceil(bytes / 16) * 16;

/** Workgroup memory of a matrix-kernel variant, in bytes (tileBytes: 2 for f16 tiles, 4 for f32). */
export function matrixDecodeWorkgroupBytes(c: MatrixDecodeConstants, tileBytes: number, step: MatrixStep): number {
  if (c.MATRIX_STREAMS > 0) {
    const s = c.MATRIX_STREAMS;
    const tileRows = s * c.TILE_TOKENS * c.MAT_N;
    return [
      c.HEADS_PER_WG * c.HEAD_DIM * 4, // rot_buf
      s * 2 * c.TILE_TOKENS * c.TILE_STRIDE * tileBytes, // kv_tiles
      tileRows * 4, // s_mem
      tileRows * tileBytes, // p_hi
      tileRows * tileBytes, // p_lo
      c.O_REGIONS * c.HEAD_DIM * c.MAT_N * 4, // o_mem
      c.MAT_N * 4, c.MAT_N * 4, c.MAT_N * 4, // q_factor, q_unscale, q_sum_shared
      s * c.HEADS_PER_WG * 16, // stream_state
      c.HEADS_PER_WG * 8, // head_ml
      8, 4, 4, // rescale_bits, stream_counter, context_len_shared
    ].reduce((sum, bytes) => sum + wgVar(bytes), 0);
  }
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

/**
 * The stream kernel's loops over a lane's words (marked `// unroll-lanes`) for the unroller: unrolled
 * (UNROLL_LANES) or left as loops (the marker no longer reads `// unroll`).
 */
function laneLoops(code: string, unroll: boolean): string {
  return code.replaceAll('// unroll-lanes', unroll ? '// unroll (a lane\'s words)' : '// a lane\'s words, not unrolled');
}

/** The matrix kernel's pipeline variant for constants `c`. */
export function matrixDecodeVariant(c: MatrixDecodeConstants, method: KvMethod, step: MatrixStep, shaderF16: boolean, builtins: MatrixBuiltinSpelling = 'template'): ShaderVariant {
  const format = TILE_FORMATS[method]!;
  const streams = c.MATRIX_STREAMS > 0;
  const f16Tiles = step === 'hardware' || shaderF16;
  const enables = [...(f16Tiles ? ['f16'] : []), ...(streams ? ['subgroups'] : []), ...(step === 'hardware' ? ['chromium_experimental_subgroup_matrix'] : [])];
  const key = [
    `paged-decode-matrix-${format.name}-${step}${f16Tiles ? '-f16' : '-f32'}`,
    `d${c.HEAD_DIM}`, `hq${c.NUM_Q_HEADS}`, `hkv${c.NUM_KV_HEADS}`, `p${c.PAGE_SIZE}`, `b${c.HADAMARD_BLOCK}`,
    `q${c.ROTATE_Q}o${c.ROTATE_OUT}s${c.RANDOM_SIGNS}`, `wg${c.WORKGROUP_SIZE}g${c.HEADS_PER_WG}`,
    streams ? `s${c.MATRIX_STREAMS}/l${c.TOKEN_LANES}` : 'serial', `m${c.MAT_M}x${c.MAT_N}x${c.MAT_K}t${c.TILE_TOKENS}`,
    ...(step === 'hardware' && builtins === 'argument' ? ['argument-builtins'] : []),
  ].join('/');
  const [kernel, matrixStepWgsl] = streams
    ? [matrixDecodeWgsl, step === 'hardware' ? matrixStepSubgroupWgsl : matrixStepSoftwareWgsl]
    : [matrixSerialDecodeWgsl, step === 'hardware' ? matrixSerialStepSubgroupWgsl : matrixSerialStepSoftwareWgsl];
  return {
    key,
    code: () => {
      const code = assembleWgsl({
        enables,
        // The calls are uniform within each subgroup; the analysis cannot see that for offsets from a
        // stream index (a ticket broadcast from one lane), calls under `if (stream == s)`, or loads whose
        // pointer is a function parameter. Dawn of `webgpu` 0.6.2 names the rule
        // chromium.subgroup_matrix_uniformity (the older name is ignored there; kept for older Dawns).
        directives: step === 'hardware' ? ['diagnostic(off, chromium.subgroup_matrix_uniformity);', 'diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);'] : [],
        constants: c,
        sources: [
          `alias CacheChunk = ${streams ? 'u32' : 'vec4<u32>'};`,
          f16Tiles ? tileScalarF16Wgsl : tileScalarF32Wgsl,
          WGSL_LIBRARIES.decodeIo(),
          WGSL_LIBRARIES.hadamard,
          WGSL_LIBRARIES.decodeEpilogue(),
          streams ? format.source : format.serialSource,
          unrollLoops(matrixStepWgsl, c),
          unrollLoops(streams ? laneLoops(selectLines(kernel, c), c.UNROLL_LANES === 1) : kernel, c),
        ],
      });
      // the matrix step's functions are pasted into the kernel's main (see inlineCalls)
      return inlineCalls(step === 'hardware' && builtins === 'argument' ? matrixBuiltinsAsArguments(code) : code);
    },
  };
}
