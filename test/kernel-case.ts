/**
 * Shared fixture of the kernel tests: builds a decode case (ragged sequences in a shuffled page pool),
 * runs it through the real kernels, and gives everything the checks compare.
 */
import { PagedKvCache, type KvCacheConfig } from '../src/cache/paged-kv-cache';
import type { GpuContext } from '../src/gpu/gpu-context';
import type { DecodeKernelKind, DecodeTuning } from '../src/kernels/decode-tuning';
import type { MethodConfig } from '../src/reference/kv-methods';
import { SeededRandom } from '../src/reference/random';
import { decodeAttention } from '../src/reference/attention';
import { unrotate, rotate } from '../src/reference/hadamard';
import { readStoredRow } from '../src/reference/paged-cache';

export interface KernelCase {
  config: Omit<KvCacheConfig, 'numPages'>;
  contextLens: number[];
  seed: number;
  /** Multiply K channel `outlierChannel` by this (outlier keys). */
  outlierScale?: number;
  numSplits?: number;
  /** Decode-kernel tuning (lanes per token, tokens per step, workgroup size, heads per workgroup). */
  tuning?: Partial<DecodeTuning>;
  /** Put NaN into K of this (token, kv head), token counted over all sequences. */
  poison?: { token: number; kvHead: number };
  /** Force a decode kernel (default: the automatic choice). */
  kernel?: DecodeKernelKind;
}

export interface KernelRun {
  cache: PagedKvCache;
  seqIds: number[];
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  out: Float32Array;
  cacheWords: { k: Uint32Array; v: Uint32Array };
  methodConfig: MethodConfig;
}

export async function runKernelCase(ctx: GpuContext, c: KernelCase): Promise<KernelRun> {
  const { headDim: d, numKvHeads: hkv, numQueryHeads: hq } = c.config;
  const pageSize = c.config.pageSize ?? 16;
  const rng = new SeededRandom(c.seed);
  const total = c.contextLens.reduce((a, b) => a + b, 0);
  const k = rng.normalArray(total * hkv * d);
  const v = rng.normalArray(total * hkv * d);
  if (c.outlierScale) for (let i = 3; i < k.length; i += d) k[i] *= c.outlierScale;
  if (c.poison) k[(c.poison.token * hkv + c.poison.kvHead) * d + 5] = NaN;
  const q = rng.normalArray(c.contextLens.length * hq * d);
  const pagesNeeded = c.contextLens.reduce((n, len) => n + Math.ceil(len / pageSize), 0);
  const cache = await PagedKvCache.create(ctx, { ...c.config, numPages: pagesNeeded + 3, pageShuffleSeed: c.seed });
  const seqIds = c.contextLens.map(() => cache.createSequence());
  // Prefill in two appends per sequence batch (a prefix, then the rest) to exercise appends at offsets.
  const firstPart = c.contextLens.map((len) => Math.floor(len / 2));
  const rest = c.contextLens.map((len, i) => len - firstPart[i]);
  /** Rows [parts[i]] of each sequence i, starting offsetParts[i] tokens into it. */
  const gather = (x: Float32Array, parts: number[], offsetParts: number[]) => {
    const out = new Float32Array(parts.reduce((a, b) => a + b, 0) * hkv * d);
    let first = 0;
    let next = 0;
    c.contextLens.forEach((len, i) => {
      const from = (first + offsetParts[i]) * hkv * d;
      out.set(x.subarray(from, from + parts[i] * hkv * d), next);
      next += parts[i] * hkv * d;
      first += len;
    });
    return out;
  };
  const zeros = c.contextLens.map(() => 0);
  // A poisoned case bypasses append's finiteness check (which refuses NaN) to test the kernels' isolation.
  const write = c.poison ? (ids: number[], counts: number[], kk: Float32Array, vv: Float32Array) => appendUnchecked(cache, ids, counts, kk, vv) : cache.append.bind(cache);
  await write(seqIds, firstPart, gather(k, firstPart, zeros), gather(v, firstPart, zeros));
  await write(seqIds, rest, gather(k, rest, firstPart), gather(v, rest, firstPart));
  const out = await cache.attention(seqIds, q, { numSplits: c.numSplits, tuning: c.tuning, kernel: c.kernel });
  const cacheWords = await cache.readCacheWords();
  const methodConfig: MethodConfig = {
    method: cache.config.method,
    hadamardBlock: cache.config.hadamardBlock,
    rotateV: cache.config.rotateV,
    signs: cache.signs,
  };
  return { cache, seqIds, q, k, v, out, cacheWords, methodConfig };
}

/** Decodes one (page, kv head, slot) row from raw cache words, independently of the kernels. */
export function decodeCacheRow(run: KernelRun, words: Uint32Array, page: number, kvHead: number, slot: number): Float64Array {
  return readStoredRow(run.cache.layout, words, page, kvHead, slot);
}

/** [T, Hkv, D] rows as the GPU cache holds them (rotated space where the method rotates). */
export function gpuDecodedRows(run: KernelRun, isKey: boolean): Float64Array {
  const { headDim: d, numKvHeads: hkv, pageSize } = run.cache.config;
  const words = isKey ? run.cacheWords.k : run.cacheWords.v;
  const lens = run.seqIds.map((id) => run.cache.contextLength(id));
  const out = new Float64Array(lens.reduce((a, b) => a + b, 0) * hkv * d);
  let token = 0;
  run.seqIds.forEach((id, s) => {
    const table = run.cache.allocator.blockTable(id);
    for (let pos = 0; pos < lens[s]; pos++, token++) {
      for (let h = 0; h < hkv; h++) out.set(decodeCacheRow(run, words, table[Math.floor(pos / pageSize)], h, pos % pageSize), (token * hkv + h) * d);
    }
  });
  return out;
}

/**
 * float64 attention over exactly what the GPU cached: isolates the attention kernel's arithmetic from
 * the write kernel's rounding ties.
 */
export function referenceOverGpuCache(run: KernelRun): Float64Array {
  const cfg = run.cache.config;
  const d = cfg.headDim;
  const mapRows = (x: ArrayLike<number>, f: (r: number[]) => Float64Array) => {
    const out = new Float64Array(x.length);
    for (let i = 0; i < x.length; i += d) out.set(f(Array.prototype.slice.call(x, i, i + d) as number[]), i);
    return out;
  };
  const rotK = run.cache.rotatesK;
  const rotV = run.cache.rotatesV;
  const qUsed = rotK ? mapRows(run.q, (r) => rotate(r, cfg.hadamardBlock, run.cache.signs)) : run.q;
  const shape = { numQueryHeads: cfg.numQueryHeads, numKvHeads: cfg.numKvHeads, headDim: d, contextLens: run.seqIds.map((id) => run.cache.contextLength(id)) };
  const { out } = decodeAttention(shape, qUsed, gpuDecodedRows(run, true), gpuDecodedRows(run, false));
  return rotV ? mapRows(out, (r) => unrotate(r, cfg.hadamardBlock, run.cache.signs)) : out;
}

/** cache.append without its input checks: prepareAppend, fill, encode (what a corrupted writer could do). */
async function appendUnchecked(cache: PagedKvCache, seqIds: number[], counts: number[], k: Float32Array, v: Float32Array): Promise<void> {
  const prepared = await cache.prepareAppend(seqIds, counts);
  const queue = cache.ctx.device.queue;
  queue.writeBuffer(prepared.kInput, 0, k.buffer as ArrayBuffer, k.byteOffset, k.byteLength);
  queue.writeBuffer(prepared.vInput, 0, v.buffer as ArrayBuffer, v.byteOffset, v.byteLength);
  const encoder = cache.ctx.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  prepared.encode(pass);
  pass.end();
  queue.submit([encoder.finish()]);
  await queue.onSubmittedWorkDone();
  prepared.destroy();
}
