/**
 * Layout facts of the paged KV cache: the one source of truth for the host code, the CPU reference,
 * the tests and (through {@link layoutConstants}) the WGSL kernels. Never retype these numbers.
 *
 * A cache holds one attention layer. K and V live in two buffers of identical layout; each buffer is
 * a pool of pages, a page holds `pageSize` tokens of one sequence for all kv heads:
 *
 *   int4 / int4-hadamard, per page (u32 words):
 *     codes     [numKvHeads, pageSize, headDim/8] u32   8 nibbles per word, see NIBBLE ORDER
 *     scaleMin  [numKvHeads, pageSize]           u32   pack2x16float(scale, min): scale low half
 *     (padding to a multiple of 4 words, so every page and row starts on a 16-byte boundary)
 *   int8 (token-wise, asymmetric, codes 0..255), per page (u32 words):
 *     codes     [numKvHeads, pageSize, headDim/4] u32   4 bytes per word, see BYTE ORDER
 *     scaleMin  [numKvHeads, pageSize]           u32   pack2x16float(scale, min)
 *   int4-g32 (INT4 with one scale/min per INT4_GROUP_SIZE = 32 channels), per page (u32 words):
 *     codes     [numKvHeads, pageSize, headDim/8] u32   as int4, NIBBLE ORDER
 *     scaleMin  [numKvHeads, pageSize, headDim/32] u32 pack2x16float(scale, min) of channels 32g..32g+31
 *   fp16, per page (u32 words):
 *     halves    [numKvHeads, pageSize, headDim/2] u32   pack2x16float(x[2i], x[2i+1]): even element low
 *
 * NIBBLE ORDER: word w of a row holds elements 8w..8w+7; element 8w+j sits in byte (j mod 4), in the
 * low nibble for j < 4 and in the high nibble for j >= 4. So `unpack4xU8(w & 0x0F0F0F0F)` yields
 * elements 8w..8w+3 and `unpack4xU8((w >> 4) & 0x0F0F0F0F)` yields 8w+4..8w+7, in order.
 *
 * BYTE ORDER (int8): word w of a row holds elements 4w..4w+3; element 4w+j sits in byte j, so
 * `unpack4xU8(w)` yields them in order.
 *
 * Every quantized method follows the numeric contract of docs/numeric-contract.md per scale group (the whole row,
 * or INT4_GROUP_SIZE channels for int4-g32): scale = (max − min)/maxCode and min stored as f16,
 * q = clamp(round((x − min16)/scale16), 0, maxCode), x̂ = q·scale16 + min16.
 */

/** The paper's methods: the run-case contract, tools/saw_int4_reference.py, the serving simulator. */
export const KV_METHODS = ['fp16', 'int4', 'int4-hadamard'] as const;
/** Methods beyond the paper: kernels, reference and accuracy lab, not part of the run-case contract. */
export const EXTRA_KV_METHODS = ['int8', 'int4-g32'] as const;
/** Every method the paged cache runs. */
export const ALL_KV_METHODS = [...KV_METHODS, ...EXTRA_KV_METHODS] as const;
export type KvMethod = (typeof ALL_KV_METHODS)[number];

export const HADAMARD_BLOCKS = [16, 32, 64, 128] as const;
export const HEAD_DIMS = [64, 128, 256] as const;
export const MIN_PAGE_SIZE = 8;
export const MAX_PAGE_SIZE = 128;
export const DEFAULT_PAGE_SIZE = 16;
export const DEFAULT_HADAMARD_BLOCK = 128;

/**
 * The Hadamard block a head_dim gets by default: the largest power of two ≤ DEFAULT_HADAMARD_BLOCK
 * that divides it (128 at head_dim 128 or 256, 32 at 96, 160 and 224, 64 at 192).
 */
export function defaultHadamardBlock(headDim: number): number {
  let block = DEFAULT_HADAMARD_BLOCK;
  while (block > 1 && headDim % block !== 0) block /= 2;
  return block;
}

/** Largest INT4 code: codes are 0..INT4_MAX_CODE. */
export const INT4_MAX_CODE = 15;
/** Largest INT8 code: codes are 0..INT8_MAX_CODE. */
export const INT8_MAX_CODE = 255;
/** Channels that share one scale/min in int4-g32. */
export const INT4_GROUP_SIZE = 32;
export const NIBBLES_PER_WORD = 8;
/** INT8 codes per u32 word (also the bytes of a word). */
export const CODES8_PER_WORD = 4;
export const HALVES_PER_WORD = 2;
export const BYTES_PER_WORD = 4;
/** Marks an unused block-table entry. */
export const NO_PAGE = 0xffffffff;

export interface CacheShape {
  method: KvMethod;
  headDim: number;
  numKvHeads: number;
  pageSize: number;
  numPages: number;
}

export interface CacheLayout extends CacheShape {
  /** u32 words of one (token, kv head) row of codes (int4, int8) or halves (fp16). */
  rowWords: number;
  /** u32 words of scale/min per (token, kv head): 1 for token-wise int4/int8, headDim/32 for int4-g32, 0 for fp16. */
  scaleMinWords: number;
  /** u32 words of one page of one of the K or V buffers. */
  pageWords: number;
  /** Word offset, inside a page, of the scale/min region (int4 only). */
  scaleMinRegionOffset: number;
  /** Bytes of one of the K or V buffers. */
  bufferBytes: number;
  /** Bytes that one token occupies in the cache, K and V, all kv heads, scale/min included. */
  bytesPerToken: number;
}

/** One of the paper's methods (KV_METHODS: what run-case accepts). */
export function isKvMethod(name: string): name is KvMethod {
  return (KV_METHODS as readonly string[]).includes(name);
}

/** Any method the paged cache runs (ALL_KV_METHODS). */
export function isCacheKvMethod(name: string): name is KvMethod {
  return (ALL_KV_METHODS as readonly string[]).includes(name);
}

export function isQuantized(method: KvMethod): boolean {
  return method !== 'fp16';
}

/** How a quantized method stores a row: code width, largest code, channels per scale/min. */
export interface QuantFormat {
  codeBits: 4 | 8;
  maxCode: number;
  /** Channels sharing one scale/min word (headDim for token-wise methods). */
  groupSize: number;
}

/** The quantization format of `method` at `headDim`, or null for fp16. */
export function quantFormat(method: KvMethod, headDim: number): QuantFormat | null {
  switch (method) {
    case 'fp16':
      return null;
    case 'int8':
      return { codeBits: 8, maxCode: INT8_MAX_CODE, groupSize: headDim };
    case 'int4-g32':
      return { codeBits: 4, maxCode: INT4_MAX_CODE, groupSize: INT4_GROUP_SIZE };
    default:
      return { codeBits: 4, maxCode: INT4_MAX_CODE, groupSize: headDim };
  }
}

/** Derives every size and offset of a cache from its shape (validated by the caller). */
export function cacheLayout(shape: CacheShape): CacheLayout {
  const format = quantFormat(shape.method, shape.headDim);
  const rowWords = format === null ? shape.headDim / HALVES_PER_WORD : shape.headDim / (format.codeBits === 8 ? CODES8_PER_WORD : NIBBLES_PER_WORD);
  const scaleMinWords = format === null ? 0 : shape.headDim / format.groupSize;
  const tokenHeads = shape.numKvHeads * shape.pageSize;
  const scaleMinRegionOffset = tokenHeads * rowWords;
  // Pages start on 16-byte boundaries so kernels can read rows as vec4<u32>.
  const pageWords = Math.ceil((tokenHeads * (rowWords + scaleMinWords)) / 4) * 4;
  return {
    ...shape,
    rowWords,
    scaleMinWords,
    pageWords,
    scaleMinRegionOffset,
    bufferBytes: pageWords * shape.numPages * BYTES_PER_WORD,
    bytesPerToken: 2 * shape.numKvHeads * (rowWords + scaleMinWords) * BYTES_PER_WORD,
  };
}

/** Word index of the first code/half word of (page, kv head, slot) in a K or V buffer. */
export function rowWordIndex(layout: CacheLayout, page: number, kvHead: number, slot: number): number {
  return page * layout.pageWords + (kvHead * layout.pageSize + slot) * layout.rowWords;
}

/**
 * Word index of the (first) scale/min word of (page, kv head, slot) in a K or V buffer (quantized
 * methods; int4-g32's group g is at + g).
 */
export function scaleMinWordIndex(layout: CacheLayout, page: number, kvHead: number, slot: number): number {
  return page * layout.pageWords + layout.scaleMinRegionOffset + (kvHead * layout.pageSize + slot) * layout.scaleMinWords;
}

/** Bit offset of element j (0..7) inside its u32 word: see NIBBLE ORDER. */
export function nibbleShift(j: number): number {
  return 8 * (j % 4) + (j < 4 ? 0 : 4);
}

/**
 * The layout facts every kernel that reads or writes the cache is compiled with, as `const NAME: u32`
 * (src/kernels/kernel-source.ts writes them), so kernels and host agree by construction.
 */
export function layoutConstants(layout: CacheLayout) {
  return {
    HEAD_DIM: layout.headDim,
    NUM_KV_HEADS: layout.numKvHeads,
    PAGE_SIZE: layout.pageSize,
    ROW_WORDS: layout.rowWords,
    PAGE_WORDS: layout.pageWords,
    SCALE_MIN_REGION_OFFSET: layout.scaleMinRegionOffset,
    SCALE_MIN_WORDS: layout.scaleMinWords,
  };
}

/**
 * How one K or V pool is spread over storage buffers: whole pages, pagesPerBuffer in each, page p in
 * buffer ⌊p / pagesPerBuffer⌋ at page p mod pagesPerBuffer. One buffer when the pool fits one binding
 * (maxStorageBufferBindingSize: 2 GiB on an H200, 128 MiB on many phones).
 */
export interface PoolSplit {
  numBuffers: number;
  pagesPerBuffer: number;
}

/** The fewest buffers of at most `maxBindingBytes` (and at most `maxPagesPerBuffer` pages) each. */
export function poolSplit(layout: CacheLayout, maxBindingBytes: number, maxPagesPerBuffer = Infinity): PoolSplit {
  const pageBytes = layout.pageWords * BYTES_PER_WORD;
  const pagesPerBuffer = Math.min(layout.numPages, Math.floor(maxBindingBytes / pageBytes), maxPagesPerBuffer);
  if (!(pagesPerBuffer >= 1)) throw new RangeError(`one page of ${pageBytes} bytes is larger than a binding of ${maxBindingBytes} bytes`);
  return { numBuffers: Math.ceil(layout.numPages / pagesPerBuffer), pagesPerBuffer };
}

/** Bytes of buffer `i` of a split pool (the last one holds the remaining pages). */
export function poolBufferBytes(layout: CacheLayout, split: PoolSplit, i: number): number {
  const pages = Math.min(split.pagesPerBuffer, layout.numPages - i * split.pagesPerBuffer);
  return pages * layout.pageWords * BYTES_PER_WORD;
}
