/**
 * A float64 model of the paged KV cache: the bytes the cache-write kernels must produce, and the
 * paged gather the attention kernels perform. Physical pages come in any order (tests shuffle them).
 */
import { NO_PAGE, rowWordIndex, scaleMinWordIndex, type CacheLayout } from '../layout';
import { decodeRowWords, encodeRow, type MethodConfig } from './kv-methods';
import { SeededRandom } from './random';

export interface PagedSequences {
  /** [S][pages] physical page ids in logical order */
  blockTables: number[][];
  /** [S] tokens per sequence */
  contextLens: number[];
}

/** Where each token of `contextLens` goes, with pages drawn from a shuffled pool of `numPages`. */
export function shuffledPaging(contextLens: number[], pageSize: number, numPages: number, seed: number): PagedSequences {
  const needed = contextLens.reduce((n, len) => n + Math.ceil(len / pageSize), 0);
  if (needed > numPages) throw new Error(`need ${needed} pages, pool has ${numPages}`);
  const pool = new SeededRandom(seed).shuffle(Array.from({ length: numPages }, (_, i) => i));
  let next = 0;
  const blockTables = contextLens.map((len) => pool.slice(next, (next += Math.ceil(len / pageSize))));
  return { blockTables, contextLens: [...contextLens] };
}

/** Physical (page, slot) of logical token `position` of a sequence. */
export function slotOf(blockTable: number[], pageSize: number, position: number): { page: number; slot: number } {
  const page = blockTable[Math.floor(position / pageSize)];
  if (page === undefined || page === NO_PAGE) throw new Error(`token ${position} has no page`);
  return { page, slot: position % pageSize };
}

/**
 * Encodes rows [T, Hkv, D] (sequence 0's tokens, then sequence 1's, …) into K or V cache words.
 * @param cache [numPages * pageWords] u32, modified in place
 */
export function writeCacheRows(
  layout: CacheLayout,
  cfg: MethodConfig,
  cache: Uint32Array,
  rows: ArrayLike<number>,
  paging: PagedSequences,
  isKey: boolean,
): void {
  const { headDim: d, numKvHeads: hkv, pageSize } = layout;
  let token = 0;
  paging.contextLens.forEach((len, s) => {
    for (let pos = 0; pos < len; pos++, token++) {
      const { page, slot } = slotOf(paging.blockTables[s], pageSize, pos);
      for (let h = 0; h < hkv; h++) {
        const base = (token * hkv + h) * d;
        const row = encodeRow(cfg, Array.prototype.slice.call(rows, base, base + d) as number[], isKey);
        cache.set(row.words, rowWordIndex(layout, page, h, slot));
        if (layout.scaleMinWords) cache.set(row.scaleMins, scaleMinWordIndex(layout, page, h, slot));
      }
    }
  });
}

/** Gathers what attention reads for one sequence: [len, Hkv, D] decoded rows, through its block table. */
export function gatherDecodedRows(
  layout: CacheLayout,
  decodeRowAt: (page: number, kvHead: number, slot: number) => Float64Array,
  blockTable: number[],
  contextLen: number,
): Float64Array {
  const { headDim: d, numKvHeads: hkv, pageSize } = layout;
  const out = new Float64Array(contextLen * hkv * d);
  for (let pos = 0; pos < contextLen; pos++) {
    const { page, slot } = slotOf(blockTable, pageSize, pos);
    for (let h = 0; h < hkv; h++) out.set(decodeRowAt(page, h, slot), (pos * hkv + h) * d);
  }
  return out;
}

/** Decodes row (page, kv head, slot) of a K or V buffer's words (see decodeRowWords). */
export function readStoredRow(layout: CacheLayout, words: Uint32Array, page: number, kvHead: number, slot: number): Float64Array {
  const start = rowWordIndex(layout, page, kvHead, slot);
  const scaleMinStart = scaleMinWordIndex(layout, page, kvHead, slot);
  const scaleMins = words.subarray(scaleMinStart, scaleMinStart + layout.scaleMinWords);
  return decodeRowWords(layout.method, words.subarray(start, start + layout.rowWords), scaleMins, layout.headDim);
}
