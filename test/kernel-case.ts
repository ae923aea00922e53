/**
 * Shared fixture of the kernel tests: builds a decode case (ragged sequences in a shuffled page pool),
 * runs it through the real kernels, and gives everything the checks compare.
 */
import { PagedKvCache, type KvCacheConfig } from '../src/cache/paged-kv-cache';
import { writeFloats } from '../src/kernels/gpu-buffers';
import type { GpuContext } from '../src/gpu/gpu-context';
import type { DecodeKernelKind, DecodeTuning } from '../src/kernels/decode-tuning';
import type { MethodConfig } from '../src/reference/kv-methods';
import { SeededRandom } from '../src/reference/random';
import { decodeAttention } from '../src/reference/attention';
import { randomSigns, unrotate, rotate } from '../src/reference/hadamard';
import { defaultHadamardBlock } from '../src/layout';
import { quantizeQueryRows } from '../src/reference/query-int8';
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
  /** Every word of both pools set to two f16 NaNs before the sequences are written (what unused page slots may hold). */
  nanPools?: boolean;
  /** Force a decode kernel (default: the automatic choice). */
  kernel?: DecodeKernelKind;
  /**
   * Queries whose rotation, as the kernels compute it (signs, unnormalised butterflies), is exact:
   * small integers z with max |z| = 21 (odd) after it, so an int8 query has no near-ties between the
   * GPU's f32 and the reference's float64 (queryInt8 cases).
   */
  integerQueries?: boolean;
  /**
   * Append each sequence's last token in the decode step itself (PagedKvCache.decodeStep): 'fused' in
   * the decode kernel, 'separate' through the cache write; default: every token before attention().
   */
  decodeStep?: 'fused' | 'separate';
  /** Split-K partials merged in the decode dispatch (true) or by the merge kernel (false); default: the plan's rule. */
  mergeInDispatch?: boolean;
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
  const q = c.integerQueries ? integerQueries(rng, c.contextLens.length * hq, c.config) : rng.normalArray(c.contextLens.length * hq * d);
  const pagesNeeded = c.contextLens.reduce((n, len) => n + Math.ceil(len / pageSize), 0);
  const cache = await PagedKvCache.create(ctx, { ...c.config, numPages: pagesNeeded + 3, pageShuffleSeed: c.seed });
  const seqIds = c.contextLens.map(() => cache.createSequence());
  if (c.nanPools) {
    for (const buffer of [...cache.kPool, ...cache.vPool]) cache.ctx.device.queue.writeBuffer(buffer, 0, new Uint32Array(buffer.size / 4).fill(0x7e007e00));
  }
  // Prefill in two appends per sequence batch (a prefix, then the rest) to exercise appends at offsets;
  // with decodeStep the last token of each sequence is left to the step.
  const stepTokens = c.decodeStep ? 1 : 0;
  const firstPart = c.contextLens.map((len) => Math.floor((len - stepTokens) / 2));
  const rest = c.contextLens.map((len, i) => len - stepTokens - firstPart[i]);
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
  for (const [part, offset] of [[firstPart, zeros], [rest, firstPart]]) {
    if (part.some((n) => n > 0)) await write(seqIds, part, gather(k, part, offset), gather(v, part, offset));
  }
  const options = { numSplits: c.numSplits, tuning: c.tuning, kernel: c.kernel, mergeInDispatch: c.mergeInDispatch };
  let out: Float32Array;
  if (c.decodeStep) {
    const last = c.contextLens.map((len) => len - 1);
    const ones = c.contextLens.map(() => 1);
    out = await cache.decodeStep(seqIds, gather(k, ones, last), gather(v, ones, last), q, { ...options, fuse: c.decodeStep === 'fused' });
  } else {
    out = await cache.attention(seqIds, q, options);
  }
  const cacheWords = await cache.readCacheWords();
  const methodConfig: MethodConfig = {
    method: cache.config.method,
    hadamardBlock: cache.config.hadamardBlock,
    rotateV: cache.config.rotateV,
    signs: cache.signs,
    queryInt8: cache.config.queryInt8,
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
  const qRotated = rotK ? mapRows(run.q, (r) => rotate(r, cfg.hadamardBlock, run.cache.signs)) : run.q;
  const qUsed = cfg.queryInt8 ? quantizeQueryRows(qRotated, d) : qRotated;
  const shape = { numQueryHeads: cfg.numQueryHeads, numKvHeads: cfg.numKvHeads, headDim: d, contextLens: run.seqIds.map((id) => run.cache.contextLength(id)) };
  const { out } = decodeAttention(shape, qUsed, gpuDecodedRows(run, true), gpuDecodedRows(run, false));
  return rotV ? mapRows(out, (r) => unrotate(r, cfg.hadamardBlock, run.cache.signs)) : out;
}

/** cache.append without its input checks: prepareAppend, fill, encode (what a corrupted writer could do). */
export async function appendUnchecked(cache: PagedKvCache, seqIds: number[], counts: number[], k: Float32Array, v: Float32Array): Promise<void> {
  const prepared = await cache.prepareAppend(seqIds, counts);
  try {
    writeFloats(cache.ctx.device, prepared.kInput, k);
    writeFloats(cache.ctx.device, prepared.vInput, v);
    await cache.submit((pass) => prepared.encode(pass));
  } finally {
    prepared.destroy();
  }
}

/** See KernelCase.integerQueries: rows q with (signs ⊙ q)·H_unnormalised = z, z integers in [−21, 21]. */
function integerQueries(rng: SeededRandom, rows: number, config: KernelCase['config']): Float32Array {
  const d = config.headDim;
  const rotated = config.method === 'int4-hadamard';
  const block = config.hadamardBlock ?? defaultHadamardBlock(d);
  const signs = rotated && config.hadamardSignSeed != null ? randomSigns(d, config.hadamardSignSeed) : null;
  const q = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const z = Array.from({ length: d }, () => rng.int(41) - 20);
    z[rng.int(d)] = rng.int(2) ? 21 : -21;
    if (!rotated) {
      q.set(z.map((x) => x / 8), r * d);
      continue;
    }
    // H_B is its own inverse up to B: H(Hz / B) = z; unnormalised butterflies on integers are exact
    for (let offset = 0; offset < d; offset += block) {
      for (let half = 1; half < block; half *= 2) {
        for (let start = offset; start < offset + block; start += 2 * half) {
          for (let i = start; i < start + half; i++) [z[i], z[i + half]] = [z[i] + z[i + half], z[i] - z[i + half]];
        }
      }
    }
    for (let j = 0; j < d; j++) q[r * d + j] = (z[j] / block) * (signs ? signs[j] : 1);
  }
  return q;
}
