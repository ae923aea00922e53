/**
 * The host API: a paged KV cache of one attention layer on the GPU, under one KV method.
 *
 *   const cache = await PagedKvCache.create(ctx, { method: 'int4-hadamard', headDim: 128,
 *     numQueryHeads: 32, numKvHeads: 8, numPages: 1024 });
 *   const seq = cache.createSequence();
 *   await cache.append([seq], [promptLen], k, v);     // prefill: k, v [promptLen, Hkv, D] f32
 *   const out = await cache.attention([seq], q);       // q [1, Hq, D] f32 → out [1, Hq, D] f32
 *
 * Every input is validated and every buffer checked against the device's limits before anything is
 * dispatched or allocated; a failed call changes nothing (no pages taken, no cache bytes written).
 */
import { GpuError, withGpuErrors, type GpuContext } from '../gpu/gpu-context';
import {
  BYTES_PER_WORD, cacheLayout, defaultHadamardBlock, DEFAULT_PAGE_SIZE, HADAMARD_BLOCKS, isCacheKvMethod,
  ALL_KV_METHODS, MAX_PAGE_SIZE, MIN_PAGE_SIZE, poolBufferBytes, poolSplit, type CacheLayout, type KvMethod, type PoolSplit,
} from '../layout';
import { randomSigns, signBits } from '../reference/hadamard';
import { checkBufferFits, formatBytes, readBuffer, storageBuffer, storageBufferFrom, uniformBufferFrom, writeFloats, writeWords } from '../kernels/gpu-buffers';
import { bindCacheWrite, writeParams, type BoundCacheWrite, type CacheWriteOptions } from '../kernels/cache-write';
import { decodeKernelKind, decodeParams, mergeParams, prepareDecode, type DecodeShape, type PreparedDecode } from '../kernels/paged-decode';
import { DECODE_KERNEL_KINDS, isDecodeKernelKind, type DecodeKernelKind, type DecodeTuning } from '../kernels/decode-tuning';
import { fusesStep, planDecode, type DecodePlan } from '../kernels/decode-plan';
import type { MatrixSupport } from '../kernels/paged-decode-matrix';
import { AttentionWorkspace, type AppendBuffers } from './attention-workspace';
import { DECODE_STORAGE_BINDINGS, maxPoolBuffers, poolExtras, readsSplitPool, storageBindings } from '../kernels/cache-pool';
import { KvCacheFullError, MAX_POOL_PAGES, PageAllocator, type PackedBlockTables } from './page-allocator';

/** Largest head_dim the kernels support (sign bits and workgroup memory are sized for it). */
export const MAX_HEAD_DIM = 256;

export interface KvCacheConfig {
  method: KvMethod;
  headDim: number;
  numQueryHeads: number;
  numKvHeads: number;
  /** Pages in the pool; capacity is numPages × pageSize tokens over all sequences. */
  numPages: number;
  /** Tokens per page (default 16). */
  pageSize?: number;
  /** Hadamard block B for int4-hadamard (default defaultHadamardBlock(headDim): the largest power of two ≤ 128 dividing it). */
  hadamardBlock?: number;
  /** Rotate V as well as K (int4-hadamard only; default false). */
  rotateV?: boolean;
  /** Seed of random ±1 signs before the rotation ("randomized" Hadamard); null/undefined: no signs. */
  hadamardSignSeed?: number | null;
  /** Shuffle the physical page order with this seed (tests; default: no shuffle). */
  pageShuffleSeed?: number;
  /** Use the subgroup kernels when the device has `subgroups` (default true). */
  useSubgroups?: boolean;
  /**
   * Score K with the query quantized to int8 per head (the `-q8` methods; int4 and int4-hadamard, on the
   * subgroup kernel; default false): faster where INT4 decode is bound by f32 arithmetic, at the
   * accuracy cost the accuracy lab reports (docs/numeric-contract.md, "Int8 query").
   */
  queryInt8?: boolean;
  /**
   * At most this many pages per storage buffer of a pool (default: as many as one binding holds). A pool
   * larger than one binding is spread over several buffers (read by the subgroup decode kernel); tests
   * force a small value to spread a sequence's pages over buffers.
   */
  maxPagesPerBuffer?: number;
}

export type ResolvedKvCacheConfig = Required<Omit<KvCacheConfig, 'pageShuffleSeed' | 'hadamardSignSeed' | 'maxPagesPerBuffer'>> & {
  pageShuffleSeed?: number;
  maxPagesPerBuffer?: number;
  hadamardSignSeed: number | null;
};

/** Largest Hadamard sign seed and page-shuffle seed: seeds are u32 (SeededRandom). */
export const MAX_SIGN_SEED = 0xffffffff;

/**
 * A bound cache write: fill kInput/vInput ([numTokens, Hkv, D] f32), encode, destroy. Its slots are
 * reserved; `unreserve` gives them back when the write could not run (the cache is as before).
 */
export interface PreparedAppend {
  numTokens: number;
  kInput: GPUBuffer;
  vInput: GPUBuffer;
  encode(pass: GPUComputePassEncoder): void;
  unreserve(): void;
  destroy(): void;
}

/** A configuration or input the cache cannot take; thrown before any GPU work. */
export class KvConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KvConfigError';
  }
}

function requireInt(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new KvConfigError(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
}

/** Fills defaults and rejects every unsupported combination with a message saying what would work. */
export function resolveKvCacheConfig(config: KvCacheConfig): ResolvedKvCacheConfig {
  if (!isCacheKvMethod(config.method)) {
    throw new KvConfigError(`unknown method '${String(config.method)}'; known methods: ${ALL_KV_METHODS.join(', ')}`);
  }
  requireInt('headDim', config.headDim, 32, MAX_HEAD_DIM);
  if (config.headDim % 32 !== 0) throw new KvConfigError(`headDim ${config.headDim} must be a multiple of 32 (8 nibbles per word, rows read as vec4<u32>)`);
  requireInt('numKvHeads', config.numKvHeads, 1, 1024);
  requireInt('numQueryHeads', config.numQueryHeads, 1, 4096);
  if (config.numQueryHeads % config.numKvHeads !== 0) {
    throw new KvConfigError(`numQueryHeads ${config.numQueryHeads} is not a multiple of numKvHeads ${config.numKvHeads}`);
  }
  const pageSize = config.pageSize ?? DEFAULT_PAGE_SIZE;
  requireInt('pageSize', pageSize, MIN_PAGE_SIZE, MAX_PAGE_SIZE);
  requireInt('numPages', config.numPages, 1, MAX_POOL_PAGES);
  const hadamardBlock = config.hadamardBlock ?? defaultHadamardBlock(config.headDim);
  const rotating = config.method === 'int4-hadamard';
  if (rotating) {
    if (!Number.isInteger(hadamardBlock) || hadamardBlock < 1 || (hadamardBlock & (hadamardBlock - 1)) !== 0) {
      throw new KvConfigError(`Hadamard block ${hadamardBlock} is not a power of two; use one of ${HADAMARD_BLOCKS.join(', ')}`);
    }
    if (hadamardBlock < 2 || hadamardBlock > config.headDim || config.headDim % hadamardBlock !== 0) {
      throw new KvConfigError(`Hadamard block ${hadamardBlock} must be ≥ 2 and divide headDim ${config.headDim}`);
    }
  }
  if (config.rotateV && !rotating) throw new KvConfigError(`rotateV needs method int4-hadamard (method is ${config.method})`);
  const seed = config.hadamardSignSeed ?? null;
  if (seed !== null && !rotating) throw new KvConfigError(`hadamardSignSeed needs method int4-hadamard (method is ${config.method})`);
  if (seed !== null) requireInt('hadamardSignSeed', seed, 0, MAX_SIGN_SEED);
  if (config.pageShuffleSeed !== undefined) requireInt('pageShuffleSeed', config.pageShuffleSeed, 0, MAX_SIGN_SEED);
  if (config.maxPagesPerBuffer !== undefined) requireInt('maxPagesPerBuffer', config.maxPagesPerBuffer, 1, MAX_POOL_PAGES);
  if (config.queryInt8 && config.method !== 'int4' && !rotating) throw new KvConfigError(`queryInt8 needs method int4 or int4-hadamard (method is ${config.method})`);
  return {
    method: config.method,
    headDim: config.headDim,
    numQueryHeads: config.numQueryHeads,
    numKvHeads: config.numKvHeads,
    numPages: config.numPages,
    pageSize,
    hadamardBlock,
    rotateV: Boolean(config.rotateV),
    hadamardSignSeed: seed,
    pageShuffleSeed: config.pageShuffleSeed,
    useSubgroups: config.useSubgroups ?? true,
    queryInt8: Boolean(config.queryInt8),
    ...(config.maxPagesPerBuffer !== undefined ? { maxPagesPerBuffer: config.maxPagesPerBuffer } : {}),
  };
}

export interface AttentionOptions {
  /** Softmax scale (default 1/√headDim). */
  scale?: number;
  /** Force a split-K count (default: chosen from the work size). */
  numSplits?: number;
  /** Decode kernel tuning for this GPU (defaults: DEFAULT_*_DECODE_TUNING, by kernel). */
  tuning?: Partial<DecodeTuning>;
  /** Run this decode kernel instead of the automatic choice ('matrix' runs its software step where the adapter has no matrices). */
  kernel?: DecodeKernelKind;
  /**
   * A decode step (decodeStep, prepareDecodeStep): true fuses the cache write into the decode kernel (an
   * error where the kernel cannot), false keeps the separate write; default: fuseDecodeStep's rule.
   */
  fuse?: boolean;
  /** Split-K partials merged in the decode dispatch (true) or by the merge kernel (false); default: mergeInDispatch's rule. */
  mergeInDispatch?: boolean;
}

/** A bound decode step (PagedKvCache.prepareDecodeStep): one new token per sequence appended, then attention over every sequence with it. */
export interface PreparedDecodeStep extends PreparedAttention {
  /** The cache write runs inside the decode kernel (plan.fusedStep): one dispatch, plus the split-K merge. */
  fused: boolean;
  /** [S, Hkv, D] f32: the new tokens' K rows in seqIds order (write before encoding). */
  kInput: GPUBuffer;
  /** [S, Hkv, D] f32: their V rows. */
  vInput: GPUBuffer;
  /** Gives the new tokens' slots back (a step abandoned before it ran). */
  unreserve(): void;
}

/** A validated, planned attention call (PagedKvCache.planCall): what workspaces bind. */
export interface AttentionCall {
  plan: DecodePlan;
  packed: PackedBlockTables;
  shape: Omit<DecodeShape, 'kernel' | 'tuning'>;
  scale: number;
}

/** A bound attention dispatch over fixed sequences, for repeated runs (benchmarks, decode loops). */
export interface PreparedAttention {
  /** The call's decode plan (planDecode; describePlan prints it). */
  plan: DecodePlan;
  /** The decode kernel that runs (= plan.kernel). */
  kernel: DecodeKernelKind;
  /** Its pipeline key: kernel, format, matrix step and configuration, tuning. */
  kernelDetail: string;
  /** Query heads each workgroup serves (the GQA group, or a divisor of it on small grids). */
  headsPerWorkgroup: number;
  /** [S, Hq, D] f32 query buffer: write new queries here between runs. */
  queryBuffer: GPUBuffer;
  /** [S, Hq, D] f32 output buffer. */
  outputBuffer: GPUBuffer;
  /** Bytes the kernels must read: K/V rows and scale/min, block tables, context lengths, q. */
  bytesRead: number;
  encode(pass: GPUComputePassEncoder): void;
  read(): Promise<Float32Array>;
  destroy(): void;
}

export class PagedKvCache {
  readonly layout: CacheLayout;
  readonly allocator: PageAllocator;
  /** ±1 per element, or null. */
  readonly signs: Int8Array | null;
  /** How the K and V pools are spread over buffers (one each unless a pool exceeds a binding). */
  readonly pool: PoolSplit;
  /** K pages, [pagesPerBuffer * pageWords] u32 per buffer (see src/layout.ts poolSplit) */
  readonly kPool: GPUBuffer[];
  /** V pages, likewise */
  readonly vPool: GPUBuffer[];
  /** The random signs as bits (bit d set = −1), as the kernels' uniforms take them. */
  readonly signBitWords: Uint32Array;
  private defaultWorkspace: AttentionWorkspace | null = null;
  private destroyed = false;

  private constructor(
    readonly ctx: GpuContext,
    readonly config: ResolvedKvCacheConfig,
  ) {
    this.layout = cacheLayout(config);
    this.pool = this.checkPool(config);
    this.allocator = new PageAllocator(config.numPages, config.pageSize, config.pageShuffleSeed === undefined ? {} : { shuffleSeed: config.pageShuffleSeed });
    this.signs = config.hadamardSignSeed === null ? null : randomSigns(config.headDim, config.hadamardSignSeed);
    this.signBitWords = signBits(this.signs, MAX_HEAD_DIM);
    const made: GPUBuffer[] = [];  // every pool buffer so far, destroyed if a later one fails
    const buffers = (kv: 'K' | 'V') => Array.from({ length: this.pool.numBuffers }, (_, i) => {
      const buffer = storageBuffer(ctx, this.pool.numBuffers === 1 ? `${kv} cache` : `${kv} cache ${i}`, poolBufferBytes(this.layout, this.pool, i));
      made.push(buffer);
      return buffer;
    });
    try {
      this.kPool = buffers('K');
      this.vPool = buffers('V');
    } catch (err) {
      made.forEach((b) => b.destroy());
      throw err;
    }
  }

  /** K pool buffer 0 (the whole K pool unless it is spread over several buffers). */
  get kBuffer(): GPUBuffer {
    return this.kPool[0];
  }

  get vBuffer(): GPUBuffer {
    return this.vPool[0];
  }

  /** The pool split for `config` on this device, with a clear error where it cannot be read. */
  private checkPool(config: ResolvedKvCacheConfig): PoolSplit {
    const ctx = this.ctx;
    const binding = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
    const what = `the ${config.method} K cache (${config.numPages} pages of ${config.pageSize} tokens, ${formatBytes(this.layout.bufferBytes)})`;
    const split = poolSplit(this.layout, binding, config.maxPagesPerBuffer);
    if (split.numBuffers === 1) {
      checkBufferFits(ctx, what, this.layout.bufferBytes);
      return split;
    }
    if (!readsSplitPool(config.method, config.useSubgroups && ctx.features.subgroups)) {
      throw new KvConfigError(`${what} needs ${split.numBuffers} storage buffers of at most ${formatBytes(binding)}; a pool over several buffers is read by the subgroup decode kernel (int4, int4-hadamard, fp16 with the subgroups feature) only; at most ${Math.floor(binding / (this.layout.pageWords * BYTES_PER_WORD))} pages fit one buffer`);
    }
    const bindings = storageBindings(DECODE_STORAGE_BINDINGS, split);
    if (bindings > ctx.limits.maxStorageBuffersPerShaderStage) {
      const maxBuffers = maxPoolBuffers(ctx.limits);
      throw new KvConfigError(`${what} needs ${split.numBuffers} storage buffers per pool (decode binds ${bindings}); this device binds at most ${ctx.limits.maxStorageBuffersPerShaderStage} per shader stage: at most ${maxBuffers * split.pagesPerBuffer} pages fit`);
    }
    return split;
  }

  /** Validates `config` against the method rules and the device limits, then allocates the pools. */
  static async create(ctx: GpuContext, config: KvCacheConfig): Promise<PagedKvCache> {
    const resolved = resolveKvCacheConfig(config);
    let cache: PagedKvCache | null = null;
    try {
      return await withGpuErrors(ctx.device, 'creating the KV cache', () => (cache = new PagedKvCache(ctx, resolved)));
    } catch (err) {
      // an allocation the GPU refused (out of memory) is reported after the buffers exist: free them now
      (cache as PagedKvCache | null)?.destroy();
      throw err;
    }
  }

  /** Pages that fit in `budgetBytes` for a config (K and V, scale/min included). */
  static pagesForBudget(config: Omit<KvCacheConfig, 'numPages'>, budgetBytes: number): number {
    const layout = cacheLayout({ ...resolveKvCacheConfig({ ...config, numPages: 1 }) });
    return Math.floor(budgetBytes / (2 * layout.pageWords * BYTES_PER_WORD));
  }

  get rotatesK(): boolean {
    return this.config.method === 'int4-hadamard';
  }

  get rotatesV(): boolean {
    return this.rotatesK && this.config.rotateV;
  }

  private checkAlive(): void {
    if (this.destroyed) throw new KvConfigError('this KV cache was destroyed');
    if (this.ctx.lostReason) throw new GpuError(this.ctx.lostReason, 'device-lost');
  }

  createSequence(): number {
    this.checkAlive();
    return this.allocator.createSequence();
  }

  /** Frees a sequence's pages for reuse (their bytes stay until overwritten). */
  freeSequence(seqId: number): void {
    this.allocator.freeSequence(seqId);
  }

  contextLength(seqId: number): number {
    return this.allocator.contextLength(seqId);
  }

  /**
   * Appends tokens to sequences through the cache-write kernel (fused rotate + quantize for int4).
   * @param seqIds sequences, each at most once
   * @param counts [seqIds.length] tokens per sequence
   * @param k [Σcounts, Hkv, D] f32: the new tokens of seqIds[0], then of seqIds[1], …
   * @param v [Σcounts, Hkv, D] f32
   */
  async append(seqIds: number[], counts: number[], k: Float32Array, v: Float32Array): Promise<void> {
    const numTokens = counts.reduce((a, b) => a + (Number.isInteger(b) ? b : NaN), 0);
    this.checkRows('k', k, numTokens);
    this.checkRows('v', v, numTokens);
    this.checkFinite('k', k, seqIds, counts);
    this.checkFinite('v', v, seqIds, counts);
    const prepared = await this.prepareAppend(seqIds, counts);
    try {
      writeFloats(this.ctx.device, prepared.kInput, k);
      writeFloats(this.ctx.device, prepared.vInput, v);
      await withGpuErrors(this.ctx.device, 'cache write', () => this.submit((pass) => prepared.encode(pass)));
    } catch (err) {
      prepared.unreserve();
      throw err;
    } finally {
      prepared.destroy();
    }
  }

  /**
   * Refuses a NaN or ±Inf in new K/V rows, naming the sequence, its token position, the kv head and the
   * channel: a quantized format would store it as finite codes and attention would come back finite
   * and wrong (the scale of the row is NaN or Inf, every other row of the head is unaffected).
   */
  private checkFinite(name: string, rows: Float32Array, seqIds: number[], counts: number[]): void {
    let bad = -1;
    for (let i = 0; i < rows.length; i++) {
      if (!Number.isFinite(rows[i])) {
        bad = i;
        break;
      }
    }
    if (bad < 0) return;
    const { numKvHeads, headDim } = this.config;
    const token = Math.floor(bad / (numKvHeads * headDim));
    let first = 0;
    let s = 0;
    while (s < counts.length - 1 && token >= first + counts[s]) first += counts[s++];
    const position = this.allocator.contextLength(seqIds[s]) + (token - first);
    throw new KvConfigError(
      `append: ${name} is ${rows[bad]} at sequence ${seqIds[s]}, token ${position}, kv head ${Math.floor(bad / headDim) % numKvHeads}, channel ${bad % headDim} (row ${token} of the input); K/V values must be finite (nothing was written)`,
    );
  }

  private checkRows(name: string, rows: Float32Array, numTokens: number): void {
    const want = numTokens * this.config.numKvHeads * this.config.headDim;
    if (rows.length !== want) {
      throw new KvConfigError(`${name} has ${rows.length} values; [${numTokens} tokens, ${this.config.numKvHeads} kv heads, ${this.config.headDim}] needs ${want}`);
    }
  }

  /**
   * Validates an append of `counts` tokens to `seqIds` (each once, known, the input within a binding, the
   * pages free: KvCacheFullError, nothing reserved) and returns the number of tokens.
   */
  private checkAppend(seqIds: number[], counts: number[]): number {
    this.checkAlive();
    if (seqIds.length !== counts.length) throw new KvConfigError(`append: ${seqIds.length} sequences but ${counts.length} counts`);
    if (new Set(seqIds).size !== seqIds.length) throw new KvConfigError('append: a sequence appears twice; pass each once with its total count');
    counts.forEach((c, i) => requireInt(`append count for sequence ${seqIds[i]}`, c, 0));
    seqIds.forEach((id) => this.allocator.contextLength(id)); // unknown ids throw here
    const numTokens = counts.reduce((a, b) => a + b, 0);
    checkBufferFits(this.ctx, `the append input (${numTokens} tokens)`, this.appendInputBytes(numTokens));
    const pagesNeeded = seqIds.reduce((n, id, i) => n + this.allocator.pagesNeeded(id, counts[i]), 0);
    if (pagesNeeded > this.allocator.freePageCount) {
      // Nothing is reserved: the whole batch is refused.
      const seqId = seqIds.length === 1 ? seqIds[0] : null;
      const fit = seqIds.length === 1 ? this.allocator.maxReservableTokens(seqIds[0]) : this.allocator.freePageCount * this.config.pageSize;
      throw new KvCacheFullError(seqId, numTokens, pagesNeeded, this.allocator.freePageCount, fit);
    }
    return numTokens;
  }

  /**
   * Reserves slots for the new tokens (atomically: all or nothing) and binds a cache write. The
   * caller fills `kInput`/`vInput` ([N, Hkv, D] f32) and encodes. Throws KvCacheFullError (nothing
   * reserved) when the pool is short. With `workspace` the write's buffers are the workspace's
   * (reused by its next append: one at a time, no allocation once warm, `destroy` a no-op); without,
   * they are the write's own, freed by `destroy`.
   */
  async prepareAppend(seqIds: number[], counts: number[], workspace?: AttentionWorkspace): Promise<PreparedAppend> {
    const numTokens = this.checkAppend(seqIds, counts);
    // Everything that can fail (buffers, the pipeline) comes before the reservation.
    const ctx = this.ctx;
    const slots = new Uint32Array(Math.max(1, numTokens));  // [numTokens] page · pageSize + offset
    const options: CacheWriteOptions = { hadamardBlock: this.config.hadamardBlock, rotateK: this.rotatesK, rotateV: this.rotatesV, randomSigns: this.signs !== null, pool: this.pool };
    const bind = (b: AppendBuffers) =>
      bindCacheWrite(ctx, this.layout, options, { newK: b.kInput, newV: b.vInput, slots: b.slots, kCache: this.kBuffer, vCache: this.vBuffer, params: b.params, poolExtras: poolExtras(this.kPool, this.vPool) });
    let buffers: AppendBuffers & { write: BoundCacheWrite };
    let destroy = () => {};
    if (workspace) {
      buffers = await workspace.bindAppend(numTokens, bind);
    } else {
      const own: GPUBuffer[] = [];
      const owned = (buffer: GPUBuffer) => (own.push(buffer), buffer);
      destroy = () => own.forEach((b) => b.destroy());
      try {
        const inputBytes = this.appendInputBytes(numTokens);
        const parts: AppendBuffers = {
          kInput: owned(storageBuffer(ctx, 'append K', inputBytes)),
          vInput: owned(storageBuffer(ctx, 'append V', inputBytes)),
          slots: owned(storageBuffer(ctx, 'append slots', slots.byteLength)),
          params: owned(uniformBufferFrom(ctx, 'append params', new Uint32Array(12))),  // WriteParams, written below
        };
        buffers = { ...parts, write: await bind(parts) };
      } catch (err) {
        destroy();
        throw err;
      }
    }
    const unreserve = this.reserve(seqIds, counts, slots);
    writeWords(ctx.device, buffers.slots, slots);
    writeWords(ctx.device, buffers.params, writeParams(numTokens, this.signBitWords));
    return {
      numTokens,
      kInput: buffers.kInput,
      vInput: buffers.vInput,
      encode: (pass) => buffers.write.encode(pass, numTokens),
      unreserve,
      destroy,
    };
  }

  /** Bytes of one of an append's f32 inputs ([numTokens, Hkv, D]; a fused step's new rows too). */
  appendInputBytes(numTokens: number): number {
    return numTokens * this.config.numKvHeads * this.config.headDim * 4;
  }

  /**
   * Reserves counts[i] tokens for each seqIds[i] (checked by checkAppend first) and, when `slots` is
   * given, writes their slots (page · pageSize + offset) into it in order. Returns the function that
   * gives them back, in reverse order, once.
   */
  private reserve(seqIds: number[], counts: number[], slots?: Uint32Array): () => void {
    let next = 0;
    seqIds.forEach((id, i) => {
      const mapping = this.allocator.reserveTokens(id, counts[i]);
      if (slots) for (let t = 0; t < mapping.pageIds.length; t++) slots[next++] = mapping.pageIds[t] * this.config.pageSize + mapping.offsets[t];
    });
    let reserved = true;
    return () => {
      if (!reserved) return;
      reserved = false;
      for (let i = seqIds.length - 1; i >= 0; i--) this.allocator.unreserveTokens(seqIds[i], counts[i]);
    };
  }

  /**
   * Decode attention for one query token per sequence.
   * @param q [seqIds.length, Hq, D] f32
   * @returns [seqIds.length, Hq, D] f32
   */
  async attention(seqIds: number[], q: Float32Array, options: AttentionOptions = {}): Promise<Float32Array> {
    this.defaultWorkspace ??= this.createAttentionWorkspace();
    return this.defaultWorkspace.attention(seqIds, q, options);
  }

  /**
   * One decode step: appends one token per sequence (k, v: [seqIds.length, Hkv, D] f32) and returns
   * attention over every sequence including it (q: [seqIds.length, Hq, D] f32 → the same shape). The
   * cache write is fused into the decode kernel where the plan says so (prepareDecodeStep); it computes
   * what append() followed by attention() computes, operation for operation (the same bits on software
   * adapters; a GPU compiler may round the two kernels differently). On a failure nothing stays reserved.
   */
  async decodeStep(seqIds: number[], k: Float32Array, v: Float32Array, q: Float32Array, options: AttentionOptions = {}): Promise<Float32Array> {
    const counts = seqIds.map(() => 1);
    this.checkRows('k', k, seqIds.length);
    this.checkRows('v', v, seqIds.length);
    this.checkFinite('k', k, seqIds, counts);
    this.checkFinite('v', v, seqIds, counts);
    this.checkQueries(seqIds, q);
    const step = await this.prepareDecodeStep(seqIds, options);
    try {
      writeFloats(this.ctx.device, step.kInput, k);
      writeFloats(this.ctx.device, step.vInput, v);
      writeFloats(this.ctx.device, step.queryBuffer, q);
      await withGpuErrors(this.ctx.device, step.fused ? 'fused decode step' : 'decode step', () => this.submit((pass) => step.encode(pass)));
      return await step.read();
    } catch (err) {
      step.unreserve();
      throw err;
    } finally {
      step.destroy();
    }
  }

  /**
   * Reserves one new token per sequence (all or nothing: KvCacheFullError) and binds a decode step over
   * them: fill kInput, vInput and queryBuffer, encode, read. Fused (plan.fusedStep: the decode kernel
   * encodes, stores and scores the new tokens) where fuseDecodeStep (or options.fuse) says so, else the
   * cache write followed by attention. Bound in `workspace` (default: the cache's own), so a fused step
   * allocates nothing once warm.
   */
  async prepareDecodeStep(seqIds: number[], options: AttentionOptions = {}, workspace?: AttentionWorkspace): Promise<PreparedDecodeStep> {
    const counts = seqIds.map(() => 1);
    const ws = workspace ?? (this.defaultWorkspace ??= this.createAttentionWorkspace());
    if (!this.fusesDecodeStep(seqIds.length, options)) {
      const append = await this.prepareAppend(seqIds, counts, ws);
      try {
        const attention = await ws.prepare(seqIds, options);
        return {
          ...attention,
          fused: false,
          kInput: append.kInput,
          vInput: append.vInput,
          encode: (pass) => {
            append.encode(pass);
            attention.encode(pass);
          },
          unreserve: () => append.unreserve(),
          destroy: () => {
            append.destroy();
            attention.destroy();
          },
        };
      } catch (err) {
        append.unreserve();
        append.destroy();
        throw err;
      }
    }
    this.checkAppend(seqIds, counts);
    const unreserve = this.reserve(seqIds, counts);
    try {
      const step = await ws.prepareFusedStep(seqIds, options);
      return { ...step, fused: true, unreserve };
    } catch (err) {
      unreserve();
      throw err;
    }
  }

  /** Whether a decode step over `numSeqs` sequences with these options fuses its cache write (planDecode decides the same). */
  fusesDecodeStep(numSeqs: number, options: AttentionOptions): boolean {
    const shape = this.decodeShape();
    try {
      return fusesStep(shape, decodeKernelKind({ ...shape, kernel: options.kernel }), numSeqs, options.fuse);
    } catch (e) {
      throw new KvConfigError((e as Error).message);
    }
  }

  /**
   * A workspace for repeated attention calls (a decode loop): its buffers and bindings are reused, so
   * steady-state calls allocate nothing. attention() uses one of its own.
   */
  createAttentionWorkspace(): AttentionWorkspace {
    this.checkAlive();
    return new AttentionWorkspace(this.ctx, this, (seqIds, options, decodeStep) => this.planCall(seqIds, options, decodeStep));
  }

  /** Throws KvConfigError unless q is [seqIds.length, Hq, D]. */
  checkQueries(seqIds: number[], q: Float32Array): void {
    const want = seqIds.length * this.config.numQueryHeads * this.config.headDim;
    if (q.length !== want) throw new KvConfigError(`q has ${q.length} values; [${seqIds.length}, ${this.config.numQueryHeads}, ${this.config.headDim}] needs ${want}`);
  }

  /**
   * The decode plan attention over `seqIds` would run with (kernel, tuning, splits, merge, …), without
   * allocating anything; validates like prepareAttention. describePlan() prints it.
   */
  planAttention(seqIds: number[], options: AttentionOptions = {}): DecodePlan {
    return this.planCall(seqIds, options).plan;
  }

  /** Validates an attention call and plans it (see planAttention); `decodeStep`: the call is a decode step (options.fuse). */
  planCall(seqIds: number[], options: AttentionOptions, decodeStep = false): AttentionCall {
    this.checkAlive();
    if (seqIds.length === 0) throw new KvConfigError('attention needs at least one sequence');
    if (seqIds.length > this.ctx.limits.maxComputeWorkgroupsPerDimension) throw new KvConfigError(`at most ${this.ctx.limits.maxComputeWorkgroupsPerDimension} sequences per attention call`);
    const scale = options.scale ?? 1 / Math.sqrt(this.config.headDim);
    if (!Number.isFinite(scale)) throw new KvConfigError(`softmax scale must be finite, got ${scale}`);
    if (options.numSplits !== undefined) requireInt('numSplits', options.numSplits, 1, 4096);
    const packed = this.allocator.packBlockTables(seqIds);
    packed.contextLens.forEach((len, i) => {
      if (len === 0) throw new KvConfigError(`sequence ${seqIds[i]} is empty: append at least one token before attention`);
    });
    if (options.kernel !== undefined && !isDecodeKernelKind(options.kernel)) {
      throw new KvConfigError(`unknown decode kernel '${String(options.kernel)}'; known kernels: ${DECODE_KERNEL_KINDS.join(', ')}`);
    }
    const shape = this.decodeShape();
    // The one plan of this call: kernel, tuning, splits, merge, grid, variant, buffer sizes.
    try {
      const plan = planDecode(shape, seqIds.length, Math.max(...packed.contextLens), {
        kernel: options.kernel, tuning: options.tuning, numSplits: options.numSplits, mergeInDispatch: options.mergeInDispatch, ...(decodeStep ? { decodeStep, fuse: options.fuse } : {}),
      });
      return { plan, packed, shape, scale };
    } catch (e) {
      throw new KvConfigError((e as Error).message);
    }
  }

  /** The decode kernels' view of this cache on this device. */
  private decodeShape(): Omit<DecodeShape, 'kernel' | 'tuning'> {
    const ctx = this.ctx;
    return {
      layout: this.layout,
      numQueryHeads: this.config.numQueryHeads,
      hadamardBlock: this.config.hadamardBlock,
      rotateQ: this.rotatesK,
      rotateOut: this.rotatesV,
      randomSigns: this.signs !== null,
      useSubgroups: this.config.useSubgroups && ctx.features.subgroups,
      subgroupMinSize: ctx.adapterInfo.subgroupMinSize,
      subgroupMaxSize: ctx.adapterInfo.subgroupMaxSize,
      matrix: this.matrixSupport(),
      maxWorkgroupStorageBytes: ctx.limits.maxComputeWorkgroupStorageSize,
      queryInt8: this.config.queryInt8,
      pool: this.pool,
    };
  }

  /** Binds attention over `seqIds` at their current lengths (see PreparedAttention). */
  async prepareAttention(seqIds: number[], options: AttentionOptions = {}): Promise<PreparedAttention> {
    const { plan, packed, shape, scale } = this.planCall(seqIds, options);
    const { numQueryHeads: hq, headDim: d, numKvHeads: hkv } = this.config;
    const numSeqs = seqIds.length;
    const ctx = this.ctx;
    const qBytes = numSeqs * hq * d * 4;
    checkBufferFits(ctx, `split-K partial results (${plan.splits.numSplits} splits)`, plan.partialAccBytes);
    const buffers = {
      q: storageBuffer(ctx, 'q', qBytes),
      kCache: this.kBuffer,
      vCache: this.vBuffer,
      poolExtras: poolExtras(this.kPool, this.vPool),
      blockTables: storageBufferFrom(ctx, 'block tables', packed.blockTables),
      contextLens: storageBufferFrom(ctx, 'context lens', packed.contextLens),
      out: storageBuffer(ctx, 'attention out', qBytes),
      // the in-dispatch merge's words start MERGE_EMPTY (0xffffffff), its counters 0
      partialAcc: plan.mergeInDispatch ? storageBufferFrom(ctx, 'merge words', new Uint32Array(plan.partialAccBytes / 4).fill(0xffffffff)) : storageBuffer(ctx, 'partial acc', plan.partialAccBytes),
      partialMl: storageBuffer(ctx, 'partial ml', plan.partialMlBytes),
      decodeParams: uniformBufferFrom(ctx, 'decode params', new Uint32Array(decodeParams(packed.maxPagesPerSeq, plan.splits, scale, this.signBitWords))),
      mergeParams: uniformBufferFrom(ctx, 'merge params', mergeParams(plan.splits, this.signBitWords)),
    };
    // the buffers made for this call (the cache's pools stay)
    const destroyOwn = () => [buffers.q, buffers.blockTables, buffers.contextLens, buffers.out, buffers.partialAcc, buffers.partialMl, buffers.decodeParams, buffers.mergeParams].forEach((b) => b.destroy());
    let decode: PreparedDecode;
    try {
      decode = await prepareDecode(ctx, plan, { ...shape, kernel: plan.kernel, tuning: plan.tuning }, buffers);
    } catch (e) {
      destroyOwn();
      throw e;
    }
    return this.describePrepared({ plan, packed, shape, scale }, {
      queryBuffer: buffers.q,
      outputBuffer: buffers.out,
      encode: (pass) => decode.encode(pass),
      read: async () => new Float32Array(await readBuffer(ctx, buffers.out, qBytes)),
      destroy: destroyOwn,
    });
  }

  /** A PreparedAttention from a planned call and its bound parts (shared by prepareAttention and workspaces). */
  describePrepared(call: AttentionCall, parts: Pick<PreparedAttention, 'queryBuffer' | 'outputBuffer' | 'encode' | 'read' | 'destroy'>): PreparedAttention {
    const { plan, packed } = call;
    const tokens = packed.contextLens.reduce((a, b) => a + b, 0);
    const rowBytes = (this.layout.rowWords + this.layout.scaleMinWords) * BYTES_PER_WORD;
    const qBytes = packed.contextLens.length * this.config.numQueryHeads * this.config.headDim * 4;
    return {
      plan,
      kernel: plan.kernel,
      kernelDetail: plan.variant.key,
      headsPerWorkgroup: plan.headsPerWorkgroup,
      // What must be read, each byte once (re-reads by several head groups of one kv head hit caches).
      bytesRead: 2 * tokens * this.config.numKvHeads * rowBytes + packed.blockTables.byteLength + packed.contextLens.byteLength + qBytes,
      ...parts,
    };
  }

  /** What the device offers the matrix decode kernel. */
  private matrixSupport(): MatrixSupport {
    const { features, adapterInfo } = this.ctx;
    return {
      configs: features['chromium-experimental-subgroup-matrix'] && features.subgroups ? adapterInfo.subgroupMatrixConfigs : [],
      shaderF16: features['shader-f16'],
      builtins: this.ctx.matrixBuiltins ?? undefined,  // absent: matrixDecodeVariant's default
    };
  }

  /** The raw K and V cache words (tests and debugging). */
  async readCacheWords(): Promise<{ k: Uint32Array; v: Uint32Array }> {
    this.checkAlive();
    // the buffers of a split pool, concatenated: [numPages * pageWords] as if it were one
    const read = async (pool: GPUBuffer[]) => {
      const words = new Uint32Array(this.layout.bufferBytes / BYTES_PER_WORD);
      let at = 0;
      for (const buffer of pool) {
        const part = new Uint32Array(await readBuffer(this.ctx, buffer));
        words.set(part, at);
        at += part.length;
      }
      return words;
    };
    return { k: await read(this.kPool), v: await read(this.vPool) };
  }

  /** Human-readable capacity, for messages. */
  describeCapacity(): string {
    return `${this.config.numPages} pages × ${this.config.pageSize} tokens, ${formatBytes(2 * this.layout.bufferBytes)} (${this.config.method})`;
  }

  /** Records `encodeWork` in one compute pass, submits it and resolves when the GPU is done. */
  submit(encodeWork: (pass: GPUComputePassEncoder) => void): Promise<void> {
    const encoder = this.ctx.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    encodeWork(pass);
    pass.end();
    this.ctx.device.queue.submit([encoder.finish()]);
    return this.ctx.device.queue.onSubmittedWorkDone();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.defaultWorkspace?.destroy();
    for (const b of [...this.kPool, ...this.vPool]) b.destroy();
  }
}
