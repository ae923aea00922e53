/**
 * The accuracy lab: runs KV-cache methods through the REAL kernels on one workload and measures
 * what each loses, against exact float64 attention and against the GPU's own FP16 run.
 *
 * For each method: a PagedKvCache (shuffled pages), every sequence prefilled with `append` (the
 * cache-write kernel: rotate + quantize + pack), one `attention` call over all sequences (the decode
 * kernel), then the cache words are read back and decoded on the CPU — so the probabilities, the
 * KV reconstruction SNR and the kernel check below all measure the bytes the GPU actually stored, not
 * a model of them.
 *
 * Metrics of one method (docs/numeric-contract.md; "per head" = per (sequence, query head), then averaged):
 *   vsExact / vsFp16   the attention output o against exact float64 attention on the unquantized
 *                      K/V / against the GPU fp16 method's output: relative L2 ‖o − o_ref‖/‖o_ref‖
 *                      (mean and worst per head), cosine similarity (mean and worst per head), max
 *                      absolute error (over everything, with its [seq, head, dim]).
 *   kOnly              the key path alone: float64 attention with K̂ decoded from the GPU's cache words
 *                      and the exact (unquantized) V, against exact attention. Every INT4 method shares
 *                      the same token-wise INT4 V error (~20 dB SNR on Gaussian values), which sets a
 *                      floor under vsExact; kOnly shows what the rotation of K changes.
 *   klMean / klMax     KL(p_exact ‖ p_method) in nats, per head: p_exact = softmax(q·Kᵀ·s) on the
 *                      unquantized K; p_method = softmax(q̃·K̂ᵀ·s) in float64 with K̂ decoded from the
 *                      GPU's cache words (q̃ = q rotated the same way when the method rotates K).
 *   topKOverlap        |top-k(p_exact) ∩ top-k(p_method)| / k per head, mean (k = min(topK, length)).
 *   kSnrDb / vSnrDb    10·log10(Σx² / Σ(x − x̂)²) over all of K (V), x̂ the stored rows decoded and
 *                      rotated back to the original space; null when lossless.
 *   kernelRelL2        relative L2 (whole tensor) between the GPU output and float64 attention over the
 *                      GPU's own stored bytes: the kernels' arithmetic error, which should be ≪ the
 *                      quantization error (a sanity check of the run itself).
 *   bytesPerToken, bitsPerElement, compressionVsFp16   the cache footprint (src/layout.ts).
 *
 * The fp16 method always runs (first) because it is the vsFp16 baseline; it appears in the rows.
 * Pure library code: runs in the browser and in Node (no Node imports).
 */
import { KvConfigError, PagedKvCache } from '../cache/paged-kv-cache';
import { quantizeQueryRows } from '../reference/query-int8';
import { describeGpu, type GpuContext } from '../gpu/gpu-context';
import { describePlan } from '../kernels/decode-plan';
import { DEFAULT_PAGE_SIZE } from '../layout';
import { decodeAttention, type AttentionShape } from '../reference/attention';
import { rotate, unrotate } from '../reference/hadamard';
import { rowIsRotated } from '../reference/kv-methods';
import { cosineSimilarity, klDivergence } from '../reference/metrics';
import { readStoredRow } from '../reference/paged-cache';
import {
  bitsPerElement, bytesPerToken, cacheConfigFor, methodFitsHeadDim, methodSpec, referenceConfigFor, resolveMethods,
  type MethodSpec,
} from './methods';

/** What the lab measures on: a synthetic Workload (src/workloads/synthetic.ts) or a loaded KV file. */
export interface AccuracyWorkload {
  /** One line for the report and the page. */
  description: string;
  /** [S, Hq, D] f32, one decode query per sequence */
  q: Float32Array;
  /** [T, Hkv, D] f32, sequence 0's tokens, then sequence 1's, … */
  k: Float32Array;
  /** [T, Hkv, D] f32 */
  v: Float32Array;
  /** [S] tokens per sequence, each ≥ 1, summing to T */
  contextLens: readonly number[];
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Softmax scale (default 1/√headDim). */
  attentionScale?: number;
}

export interface AccuracyOptions {
  /** Tokens per page (default 16). */
  pageSize?: number;
  /** k of the top-k overlap (default 8). */
  topK?: number;
  /** Use the subgroup decode kernels where the device has them (default true). */
  useSubgroups?: boolean;
  /** Physical page order seed (default ACCURACY_PAGE_SHUFFLE_SEED: pages are always shuffled). */
  pageShuffleSeed?: number;
  /** Force a split-K count (default: the kernels' own choice). */
  numSplits?: number;
}

/**
 * Host bytes an accuracy run holds per element of K (and again per element of V): the f32 input, its
 * stored (dequantized) and un-rotated float64 copies, references and outputs; an estimate, rounded up.
 * The CLI sizes runs by it; the page's file limit quotes it.
 */
export const ACCURACY_HOST_BYTES_PER_ELEMENT = 48;

export const DEFAULT_TOP_K = 8;
export const ACCURACY_PAGE_SHUFFLE_SEED = 0xacc;
/** Tokens per append call: bounds the append input buffer (≤ 4096 × Hkv × D × 4 bytes). */
const APPEND_CHUNK_TOKENS = 4096;

export interface OutputError {
  /** Mean over (sequence, query head) of ‖o − o_ref‖₂ / ‖o_ref‖₂. */
  relL2: number;
  /** Worst (sequence, query head). */
  relL2Max: number;
  /** Mean over (sequence, query head) of the cosine similarity. */
  cosine: number;
  cosineMin: number;
  /** Largest |o − o_ref| over every element. */
  maxAbs: number;
  /** [sequence, query head, dim] of maxAbs. */
  maxAbsAt: [number, number, number];
}

export interface MethodAccuracy {
  id: string;
  displayName: string;
  kvMethod: string;
  hadamardBlock: number | null;
  rotateV: boolean;
  signSeed: number | null;
  /** K scored with an int8 query (the `-q8` methods). */
  queryInt8: boolean;
  bytesPerToken: number;
  bitsPerElement: number;
  /** FP16 bytes per token / this method's. */
  compressionVsFp16: number;
  vsExact: OutputError;
  vsFp16: OutputError;
  /** Attention with the stored K̂ and exact V, vs exact (float64; see the module comment). */
  kOnly: OutputError;
  /** Mean KL(p_exact ‖ p_method) over (sequence, query head), nats. */
  klMean: number;
  klMax: number;
  /** Mean top-k overlap of attended tokens, in [0, 1]. */
  topKOverlap: number;
  /** dB; null when the stored K (V) equals the input exactly. */
  kSnrDb: number | null;
  vSnrDb: number | null;
  /** GPU output vs float64 attention over the GPU's stored bytes (relative L2, whole tensor). */
  kernelRelL2: number;
  /** Wall time of the GPU part (pipelines, append, attention, read-back), ms. */
  gpuMs: number;
  /** The decode plan the attention ran (describePlan: kernel, matrix step, heads/wg, splits). */
  decodePlan: string;
}

export interface AccuracyReport {
  format: 'webgpu-int4-kv/accuracy';
  version: 1;
  /** ISO 8601. */
  date: string;
  /** describeGpu() of the device that ran the kernels. */
  adapter: string;
  workload: {
    description: string;
    numSeqs: number;
    contextLens: number[];
    totalTokens: number;
    numQueryHeads: number;
    numKvHeads: number;
    headDim: number;
    attentionScale: number;
  };
  settings: {
    pageSize: number;
    topK: number;
    /** Whether the subgroup decode kernels ran (asked for and present on the device). */
    useSubgroups: boolean;
    /** How p_method is obtained (see the module comment). */
    probabilities: 'float64 softmax over K decoded from the GPU cache words';
  };
  methods: MethodAccuracy[];
}

export interface AccuracyProgress {
  /** 0-based position of the method being run, of `total`. */
  index: number;
  total: number;
  methodId: string;
  stage: 'gpu' | 'metrics' | 'done';
  /** The finished row (stage 'done'). */
  result?: MethodAccuracy;
}

/** What one method's GPU run leaves for the metrics. */
interface GpuRun {
  /** [S, Hq, D] */
  out: Float32Array;
  /** [T, Hkv, D] rows decoded from the cache words (rotated space where the method rotates). */
  kStored: Float64Array;
  vStored: Float64Array;
  gpuMs: number;
  /** describePlan() of the attention call. */
  decodePlan: string;
}

function checkWorkload(w: AccuracyWorkload): void {
  const { numQueryHeads: hq, numKvHeads: hkv, headDim: d, contextLens } = w;
  const fail = (problem: string): never => {
    throw new KvConfigError(`accuracy workload: ${problem}`);
  };
  if (contextLens.length === 0) fail('needs at least one sequence');
  contextLens.forEach((len, i) => {
    if (!Number.isInteger(len) || len < 1) fail(`sequence ${i} has length ${len}; every length must be an integer ≥ 1`);
  });
  if (!(hq >= 1 && hkv >= 1 && hq % hkv === 0)) fail(`Hq ${hq} must be a positive multiple of Hkv ${hkv}`);
  const tokens = contextLens.reduce((a, b) => a + b, 0);
  const kvLength = tokens * hkv * d;
  if (w.k.length !== kvLength) fail(`k has ${w.k.length} values; [${tokens}, ${hkv}, ${d}] needs ${kvLength}`);
  if (w.v.length !== kvLength) fail(`v has ${w.v.length} values; [${tokens}, ${hkv}, ${d}] needs ${kvLength}`);
  if (w.q.length !== contextLens.length * hq * d) fail(`q has ${w.q.length} values; [${contextLens.length}, ${hq}, ${d}] needs ${contextLens.length * hq * d}`);
}

/** Runs one method through PagedKvCache and reads back what it stored. */
async function runOnGpu(ctx: GpuContext, spec: MethodSpec, w: AccuracyWorkload, opts: Required<Omit<AccuracyOptions, 'numSplits'>> & { numSplits?: number }): Promise<GpuRun> {
  const started = performance.now();
  const { numKvHeads: hkv, headDim: d, contextLens } = w;
  const pageSize = opts.pageSize;
  const numPages = contextLens.reduce((n, len) => n + Math.ceil(len / pageSize), 0) + contextLens.length;
  const cache = await PagedKvCache.create(ctx, cacheConfigFor(spec, {
    headDim: d, numQueryHeads: w.numQueryHeads, numKvHeads: hkv, numPages, pageSize,
    pageShuffleSeed: opts.pageShuffleSeed, useSubgroups: opts.useSubgroups,
  }));
  try {
    const seqIds = contextLens.map(() => cache.createSequence());
    const rowValues = hkv * d;
    let first = 0;
    for (let s = 0; s < contextLens.length; s++) {
      for (let done = 0; done < contextLens[s]; done += APPEND_CHUNK_TOKENS) {
        const count = Math.min(APPEND_CHUNK_TOKENS, contextLens[s] - done);
        const from = (first + done) * rowValues;
        const to = from + count * rowValues;
        await cache.append([seqIds[s]], [count], w.k.subarray(from, to), w.v.subarray(from, to));
      }
      first += contextLens[s];
    }
    const attentionOptions = { scale: w.attentionScale, numSplits: opts.numSplits };
    const decodePlan = describePlan(cache.planAttention(seqIds, attentionOptions));
    const out = await cache.attention(seqIds, w.q, attentionOptions);
    const words = await cache.readCacheWords();
    const kStored = new Float64Array(w.k.length);
    const vStored = new Float64Array(w.v.length);
    let token = 0;
    seqIds.forEach((id, s) => {
      const table = cache.allocator.blockTable(id);
      for (let pos = 0; pos < contextLens[s]; pos++, token++) {
        const page = table[Math.floor(pos / pageSize)];
        for (let h = 0; h < hkv; h++) {
          kStored.set(readStoredRow(cache.layout, words.k, page, h, pos % pageSize), (token * hkv + h) * d);
          vStored.set(readStoredRow(cache.layout, words.v, page, h, pos % pageSize), (token * hkv + h) * d);
        }
      }
    });
    return { out, kStored, vStored, gpuMs: performance.now() - started, decodePlan };
  } finally {
    cache.destroy();
  }
}

/**
 * Output error of `got` against `want`, both [S, Hq, D], per (sequence, query head) then averaged.
 * Identical inputs give relL2 0, cosine 1, maxAbs 0.
 */
export function outputError(got: ArrayLike<number>, want: ArrayLike<number>, numQueryHeads: number, headDim: number): OutputError {
  const heads = want.length / headDim;
  let relSum = 0;
  let relMax = 0;
  let cosSum = 0;
  let cosMin = Infinity;
  let maxAbs = 0;
  let maxAt = 0;
  for (let row = 0; row < heads; row++) {
    let num = 0;
    let den = 0;
    for (let i = row * headDim; i < (row + 1) * headDim; i++) {
      const e = got[i] - want[i];
      num += e * e;
      den += want[i] * want[i];
      const a = Number.isNaN(e) ? Infinity : Math.abs(e);
      if (a > maxAbs) {
        maxAbs = a;
        maxAt = i;
      }
    }
    const rel = num === 0 ? 0 : Math.sqrt(num / den);
    const a = Array.prototype.slice.call(got, row * headDim, (row + 1) * headDim) as number[];
    const b = Array.prototype.slice.call(want, row * headDim, (row + 1) * headDim) as number[];
    const cos = num === 0 ? 1 : cosineSimilarity(a, b);
    relSum += rel;
    relMax = Math.max(relMax, Number.isNaN(rel) ? Infinity : rel);
    cosSum += cos;
    cosMin = Math.min(cosMin, Number.isNaN(cos) ? -Infinity : cos);
  }
  const seq = Math.floor(maxAt / (numQueryHeads * headDim));
  return {
    relL2: relSum / heads,
    relL2Max: relMax,
    cosine: cosSum / heads,
    cosineMin: cosMin,
    maxAbs,
    maxAbsAt: [seq, Math.floor(maxAt / headDim) % numQueryHeads, maxAt % headDim],
  };
}

/** Indices of the k largest entries (ties: lower index first). */
function topIndices(p: Float64Array, k: number): number[] {
  return Array.from(p.keys()).sort((a, b) => p[b] - p[a] || a - b).slice(0, k);
}

/** |top-k(p) ∩ top-k(q)| / k with k = min(topK, length). */
export function topKOverlap(p: Float64Array, q: Float64Array, topK: number): number {
  const k = Math.min(topK, p.length);
  const want = new Set(topIndices(p, k));
  return topIndices(q, k).filter((i) => want.has(i)).length / k;
}

/** 10·log10(Σx² / Σ(x − x̂)²), null when x̂ = x. */
export function snrDb(x: ArrayLike<number>, xHat: ArrayLike<number>): number | null {
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < x.length; i++) {
    signal += x[i] * x[i];
    noise += (x[i] - xHat[i]) ** 2;
  }
  return noise === 0 ? null : 10 * Math.log10(signal / noise);
}

function relativeL2Whole(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return num === 0 ? 0 : Math.sqrt(num / den);
}

function mapRows(x: ArrayLike<number>, d: number, f: (row: number[]) => Float64Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i += d) out.set(f(Array.prototype.slice.call(x, i, i + d) as number[]), i);
  return out;
}

/**
 * Runs `methodIds` (ids or groups of src/accuracy/methods.ts) on `workload` through the real kernels
 * and measures them (see the module comment). The fp16 baseline is added first when missing.
 *
 * @example
 *   const w = generateWorkload({ kind: 'outlier-keys', numQueryHeads: 8, numKvHeads: 2, headDim: 128, contextLens: [512], seed: 1 });
 *   const report = await runAccuracy(ctx, w, ['paper']);
 *   report.methods.map((m) => [m.id, m.vsExact.relL2, m.klMean]);
 */
export async function runAccuracy(
  ctx: GpuContext,
  workload: AccuracyWorkload,
  methodIds: readonly string[],
  options: AccuracyOptions = {},
  onProgress?: (progress: AccuracyProgress) => void,
): Promise<AccuracyReport> {
  checkWorkload(workload);
  const requested = resolveMethods(methodIds);
  const fp16 = methodSpec('fp16');
  const specs = requested.some((s) => s.id === 'fp16') ? [fp16, ...requested.filter((s) => s.id !== 'fp16')] : [fp16, ...requested];
  const { headDim: d, numQueryHeads: hq, numKvHeads: hkv, contextLens } = workload;
  const misfit = specs.find((s) => !methodFitsHeadDim(s, d));
  if (misfit) throw new KvConfigError(`method ${misfit.id} needs its Hadamard block ${misfit.hadamardBlock} to divide head_dim ${d}`);
  const opts = {
    pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE,
    topK: options.topK ?? DEFAULT_TOP_K,
    useSubgroups: options.useSubgroups ?? true,
    pageShuffleSeed: options.pageShuffleSeed ?? ACCURACY_PAGE_SHUFFLE_SEED,
    numSplits: options.numSplits,
  };
  if (!Number.isInteger(opts.topK) || opts.topK < 1) throw new KvConfigError(`topK must be an integer ≥ 1, got ${opts.topK}`);
  const scale = workload.attentionScale ?? 1 / Math.sqrt(d);
  const shape: AttentionShape = { numQueryHeads: hq, numKvHeads: hkv, headDim: d, contextLens };
  const exact = decodeAttention(shape, workload.q, workload.k, workload.v, scale);
  const fp16Bytes = bytesPerToken(fp16, { headDim: d, numKvHeads: hkv });

  let fp16Out: Float32Array | null = null;
  const rows: MethodAccuracy[] = [];
  for (const [index, spec] of specs.entries()) {
    const progress = (stage: AccuracyProgress['stage'], result?: MethodAccuracy) =>
      onProgress?.({ index, total: specs.length, methodId: spec.id, stage, ...(result ? { result } : {}) });
    progress('gpu');
    const run = await runOnGpu(ctx, spec, workload, opts);
    progress('metrics');
    fp16Out ??= run.out;
    const ref = referenceConfigFor(spec, d);
    const rotK = rowIsRotated(ref, true);
    const rotV = rowIsRotated(ref, false);
    // Attention in float64 over exactly the stored bytes, with the query rotated as the kernel does.
    const qRotated = rotK ? mapRows(workload.q, d, (r) => rotate(r, ref.hadamardBlock, ref.signs)) : workload.q;
    const qUsed = ref.queryInt8 ? quantizeQueryRows(qRotated, d) : qRotated;
    const overStored = decodeAttention(shape, qUsed, run.kStored, run.vStored, scale);
    const kOnlyOut = decodeAttention(shape, qUsed, run.kStored, workload.v, scale).out;
    const overStoredOut = rotV ? mapRows(overStored.out, d, (r) => unrotate(r, ref.hadamardBlock, ref.signs)) : overStored.out;
    let klSum = 0;
    let klMax = 0;
    let overlapSum = 0;
    let heads = 0;
    exact.probs.forEach((perHead, s) =>
      perHead.forEach((p, h) => {
        const kl = klDivergence(p, overStored.probs[s][h]);
        klSum += kl;
        klMax = Math.max(klMax, kl);
        overlapSum += topKOverlap(p, overStored.probs[s][h], opts.topK);
        heads++;
      }),
    );
    const kOriginal = rotK ? mapRows(run.kStored, d, (r) => unrotate(r, ref.hadamardBlock, ref.signs)) : run.kStored;
    const vOriginal = rotV ? mapRows(run.vStored, d, (r) => unrotate(r, ref.hadamardBlock, ref.signs)) : run.vStored;
    const bytes = bytesPerToken(spec, { headDim: d, numKvHeads: hkv });
    const result: MethodAccuracy = {
      id: spec.id,
      displayName: spec.displayName,
      kvMethod: spec.kvMethod,
      hadamardBlock: spec.hadamardBlock,
      rotateV: spec.rotateV,
      signSeed: spec.signSeed,
      queryInt8: spec.queryInt8,
      bytesPerToken: bytes,
      bitsPerElement: bitsPerElement(spec, d),
      compressionVsFp16: fp16Bytes / bytes,
      vsExact: outputError(run.out, exact.out, hq, d),
      vsFp16: outputError(run.out, fp16Out, hq, d),
      kOnly: outputError(kOnlyOut, exact.out, hq, d),
      klMean: klSum / heads,
      klMax,
      topKOverlap: overlapSum / heads,
      kSnrDb: snrDb(workload.k, kOriginal),
      vSnrDb: snrDb(workload.v, vOriginal),
      kernelRelL2: relativeL2Whole(run.out, overStoredOut),
      gpuMs: run.gpuMs,
      decodePlan: run.decodePlan,
    };
    rows.push(result);
    progress('done', result);
  }

  return accuracyReport(ctx, workload, { pageSize: opts.pageSize, topK: opts.topK, useSubgroups: opts.useSubgroups }, rows);
}

/**
 * The report of `rows` over `workload`, in the library's format (runAccuracy's result; the page also
 * builds one from the rows finished so far).
 */
export function accuracyReport(ctx: GpuContext, workload: AccuracyWorkload, settings: { pageSize: number; topK: number; useSubgroups: boolean }, rows: readonly MethodAccuracy[]): AccuracyReport {
  const { contextLens } = workload;
  return {
    format: 'webgpu-int4-kv/accuracy',
    version: 1,
    date: new Date().toISOString(),
    adapter: describeGpu(ctx),
    workload: {
      description: workload.description,
      numSeqs: contextLens.length,
      contextLens: [...contextLens],
      totalTokens: contextLens.reduce((a, b) => a + b, 0),
      numQueryHeads: workload.numQueryHeads,
      numKvHeads: workload.numKvHeads,
      headDim: workload.headDim,
      attentionScale: workload.attentionScale ?? 1 / Math.sqrt(workload.headDim),
    },
    settings: { ...settings, useSubgroups: settings.useSubgroups && ctx.features.subgroups, probabilities: 'float64 softmax over K decoded from the GPU cache words' },
    methods: [...rows],
  };
}
