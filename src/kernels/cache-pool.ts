/**
 * K/V pools over several storage buffers (src/layout.ts PoolSplit) in WGSL: the bindings of buffers
 * 1.. (buffer 0 keeps the kernels' `k_cache` / `v_cache` binding) and page-addressed accessors, generated
 * for the split so that a one-buffer pool compiles the same arithmetic as before. The cache-write kernels
 * store through store_cache_word(is_v, page, word_in_page, word); the subgroup decode kernel reads through
 * k_pool_chunk / v_pool_chunk(page, chunk_in_page). Extra bindings follow the kernel's own (WRITE_EXTRA_BINDING,
 * DECODE_EXTRA_BINDING): K buffers 1..N−1, then V buffers 1..N−1, in poolExtras() order.
 */
import { isKvMethod, type PoolSplit } from '../layout';

/** First binding after the cache-write kernels' own (lib/cache-write-io.wgsl: 0..5). */
export const WRITE_EXTRA_BINDING = 6;
/** First binding after the decode kernels' own (lib/decode-io.wgsl: 0..8). */
export const DECODE_EXTRA_BINDING = 9;

/** Storage bindings of the decode kernels with one buffer per pool (q, K, V, block tables, lengths, out, partials). */
export const DECODE_STORAGE_BINDINGS = 8;

/**
 * Whether a decode kernel reads `method`'s pools spread over several buffers: the subgroup kernel does,
 * for the paper's methods (fp16, int4, int4-hadamard; not int8 or int4-g32), where subgroups exist.
 */
export function readsSplitPool(method: string, subgroups: boolean): boolean {
  return isKvMethod(method) && subgroups;
}

/** Buffers one pool may span: the decode kernel's own storage bindings, then two per extra buffer. */
export function maxPoolBuffers(limits: { maxStorageBuffersPerShaderStage: number }): number {
  return Math.max(1, Math.floor((limits.maxStorageBuffersPerShaderStage - DECODE_STORAGE_BINDINGS) / 2) + 1);
}

export const ONE_BUFFER: PoolSplit = { numBuffers: 1, pagesPerBuffer: 0xffffffff };

/** Storage buffers a kernel with `own` storage bindings (pool buffer 0 of K and V included) needs. */
export function storageBindings(own: number, split: PoolSplit): number {
  return own + 2 * (split.numBuffers - 1);
}

/** The extra buffers in binding order: K pool 1..N−1, then V pool 1..N−1. */
export function poolExtras(kPool: readonly GPUBuffer[], vPool: readonly GPUBuffer[]): GPUBuffer[] {
  return [...kPool.slice(1), ...vPool.slice(1)];
}

/** Pipeline-key part of a split ('' for one buffer, so one-buffer keys are unchanged). */
export function poolKey(split: PoolSplit): string {
  return split.numBuffers === 1 ? '' : `/pool${split.numBuffers}x${split.pagesPerBuffer}`;
}

function extraBindings(split: PoolSplit, first: number, access: 'read' | 'read_write', elem: string): string {
  const lines: string[] = [];
  for (let i = 1; i < split.numBuffers; i++) {
    lines.push(`@group(0) @binding(${first + i - 1}) var<storage, ${access}> k_cache_${i}: array<${elem}>;`);
    lines.push(`@group(0) @binding(${first + split.numBuffers - 1 + i - 1}) var<storage, ${access}> v_cache_${i}: array<${elem}>;`);
  }
  return lines.join('\n');
}

const name = (kv: 'k' | 'v', i: number) => (i === 0 ? `${kv}_cache` : `${kv}_cache_${i}`);

/** Locates page `page`: `b` its buffer, `base` its first element there (in units of `per` per page). */
function locate(split: PoolSplit, per: string): string {
  return split.numBuffers === 1
    ? `  let base = page * ${per};`
    : `  let b = page / ${split.pagesPerBuffer}u;\n  let base = (page - b * ${split.pagesPerBuffer}u) * ${per};`;
}

/**
 * One statement per buffer, chosen by `b` (the last also for anything beyond it). An if/else chain, not
 * a switch: SwiftShader's compiler crashed on the switch form inside the unrolled decode loop.
 */
function byBuffer(split: PoolSplit, statement: (i: number) => string): string {
  if (split.numBuffers === 1) return `  ${statement(0)}`;
  const branches = Array.from({ length: split.numBuffers - 1 }, (_, i) => `${i === 0 ? '  if' : ' else if'} (b == ${i}u) { ${statement(i)} }`);
  return `${branches.join('')} else { ${statement(split.numBuffers - 1)} }`;
}

/** For the cache-write kernels (after lib/cache-write-io.wgsl). */
export function writePoolWgsl(split: PoolSplit): string {
  return [
    extraBindings(split, WRITE_EXTRA_BINDING, 'read_write', 'u32'),
    '// Writes word `word_in_page` of page `page` of the K (is_v false) or V pool.',
    'fn store_cache_word(is_v: bool, page: u32, word_in_page: u32, word: u32) {',
    locate(split, 'PAGE_WORDS'),
    '  let index = base + word_in_page;',
    byBuffer(split, (i) => `if (is_v) { ${name('v', i)}[index] = word; } else { ${name('k', i)}[index] = word; }`),
    '}',
  ].filter(Boolean).join('\n');
}

/** For the subgroup decode kernel (after lib/decode-io.wgsl; CacheChunk declared). */
export function readPoolWgsl(split: PoolSplit): string {
  const reader = (kv: 'k' | 'v') => [
    `// Chunk \`chunk_in_page\` (CacheChunk units) of page \`page\` of the ${kv.toUpperCase()} pool.`,
    `fn ${kv}_pool_chunk(page: u32, chunk_in_page: u32) -> CacheChunk {`,
    locate(split, '(PAGE_WORDS / CHUNK_WORDS)'),
    '  let index = base + chunk_in_page;',
    byBuffer(split, (i) => `return ${name(kv, i)}[index];`),
    '}',
  ].join('\n');
  return [extraBindings(split, DECODE_EXTRA_BINDING, 'read', 'CacheChunk'), reader('k'), reader('v')].filter(Boolean).join('\n');
}
