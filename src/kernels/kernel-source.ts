/**
 * Assembles kernel WGSL: optional `enable` directives, the generated `const` header, library files,
 * then the kernel. All shader text comes from shaders/ (imported as text), the constants from the
 * host, so the same numbers are never typed twice.
 */
import cacheWriteIoWgsl from '../../shaders/lib/cache-write-io.wgsl?raw';
import decodeEpilogueWgsl from '../../shaders/lib/decode-epilogue.wgsl?raw';
import decodeIoWgsl from '../../shaders/lib/decode-io.wgsl?raw';
import f16Wgsl from '../../shaders/lib/f16.wgsl?raw';
import hadamardWgsl from '../../shaders/lib/hadamard.wgsl?raw';
import kvCodesWgsl from '../../shaders/lib/kv-codes.wgsl?raw';
import quantCodeWgsl from '../../shaders/lib/quant-code.wgsl?raw';
import quantizeLaneWgsl from '../../shaders/lib/quantize-lane.wgsl?raw';
import splitMergeWgsl from '../../shaders/lib/split-merge.wgsl?raw';
import { wgslU32Constants } from './pipeline-cache';
import { selectLines, unrollLoops } from './wgsl-unroll';

/** The line selections (selectLines) of the decode kernels' shared files; absent means 0. */
export interface DecodeFlags {
  FUSED_STEP?: number;
  MERGE_IN_DISPATCH?: number;
}

const decodeFlags = (flags: DecodeFlags) => ({ FUSED_STEP: flags.FUSED_STEP ?? 0, MERGE_IN_DISPATCH: flags.MERGE_IN_DISPATCH ?? 0 });

export const WGSL_LIBRARIES = {
  f16: f16Wgsl,
  hadamard: hadamardWgsl,
  quantCode: quantCodeWgsl,
  /** one lane's 8 values → cache words (the cache-write kernel and the fused decode step; after f16, quantCode, MAX_CODE) */
  quantizeLane: unrollLoops(quantizeLaneWgsl, {}),
  /** WriteParams + bindings of every cache-write kernel */
  cacheWriteIo: cacheWriteIoWgsl,
  /**
   * DecodeParams + bindings of the decode kernels (after `alias CacheChunk`); FUSED_STEP (the fused
   * decode step, paged-decode-subgroup.wgsl): the K/V pools writable; MERGE_IN_DISPATCH: bindings 6
   * and 7 are the in-dispatch merge's words and counters instead of the merge kernel's partials
   */
  decodeIo: (flags: DecodeFlags = {}) => selectLines(decodeIoWgsl, decodeFlags(flags)),
  /** the result writer of the subgroup and matrix decode kernels (after decodeIo, hadamard and, with MERGE_IN_DISPATCH, splitMerge and SPLIT_MERGE_BLOCK) */
  decodeEpilogue: (flags: DecodeFlags & { SPLIT_MERGE_BLOCK?: number } = {}) => unrollLoops(selectLines(decodeEpilogueWgsl, decodeFlags(flags)), flags.SPLIT_MERGE_BLOCK ? { SPLIT_MERGE_BLOCK: flags.SPLIT_MERGE_BLOCK } : {}),
  /** the split-K merge (the merge kernel, and the subgroup kernel's in-dispatch merge); its loops unrolled by SPLIT_MERGE_ROWS and SPLIT_MERGE_BLOCK */
  splitMerge: (constants: { SPLIT_MERGE_ROWS: number; SPLIT_MERGE_BLOCK: number }) => unrollLoops(splitMergeWgsl, constants),
  /** code-word helpers of the quantized decode formats */
  kvCodes: kvCodesWgsl,
} as const;

/**
 * `enables` become `enable …;` lines and `directives` (e.g. `diagnostic(off, …);`) follow them: WGSL
 * wants both before any declaration.
 */
export function assembleWgsl(parts: { enables?: string[]; directives?: string[]; constants: Record<string, number>; sources: string[] }): string {
  const enables = (parts.enables ?? []).map((e) => `enable ${e};`).join('\n');
  return [enables, ...(parts.directives ?? []), wgslU32Constants(parts.constants), ...parts.sources].filter(Boolean).join('\n\n');
}
