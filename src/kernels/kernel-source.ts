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
import { wgslU32Constants } from './pipeline-cache';
import { selectLines, unrollLoops } from './wgsl-unroll';

export const WGSL_LIBRARIES = {
  f16: f16Wgsl,
  hadamard: hadamardWgsl,
  quantCode: quantCodeWgsl,
  /** one lane's 8 values → cache words (the cache-write kernel and the fused decode step; after f16, quantCode, MAX_CODE) */
  quantizeLane: unrollLoops(quantizeLaneWgsl, {}),
  /** WriteParams + bindings of every cache-write kernel */
  cacheWriteIo: cacheWriteIoWgsl,
  /** DecodeParams + bindings of the decode kernels (after `alias CacheChunk`) */
  decodeIo: selectLines(decodeIoWgsl, { FUSED_STEP: 0 }),
  /** the same for the fused decode step (paged-decode-subgroup.wgsl, FUSED_STEP): the K/V pools writable */
  decodeIoFusedStep: selectLines(decodeIoWgsl, { FUSED_STEP: 1 }),
  /** the result writer of the subgroup and matrix decode kernels (after decodeIo and hadamard) */
  decodeEpilogue: decodeEpilogueWgsl,
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
