/**
 * The serving simulator's cache: how many pages a memory budget buys for one layer and method, how its
 * K and V pools spread over storage buffers on a device, and the PagedKvCache itself. Library code for
 * Node and the browser; everything but createServingCache runs without a device (limits may be fakes).
 *
 * A pool larger than one storage binding (maxStorageBufferBindingSize: 2 GiB on an H200, 128 MiB on
 * many phones) is spread over several buffers, whole pages in each (src/layout.ts poolSplit), as the
 * cache does it. The decode kernel binds DECODE_STORAGE_BINDINGS storage buffers of its own (pool
 * buffer 0 of K and of V among them) and two more per extra pool buffer (src/kernels/cache-pool.ts),
 * so a pool spans at most ⌊(maxStorageBuffersPerShaderStage − 8) / 2⌋ + 1 buffers: 5 on the H200
 * (16 per stage), i.e. 10 GiB per pool and 20 GiB of K + V per layer there. Only the subgroup decode
 * kernel reads a split pool (PagedKvCache refuses the others), so without `subgroups` a pool is one
 * buffer. Every refusal says what the budget needs, the limit, and a budget that fits.
 *
 * WebGPU does not report a device's memory: a real GPU that runs out while the pools are allocated is
 * reported as such (GPU out of memory → KvConfigError naming the pools' size); a software adapter's
 * buffers are host memory, which the caller may bound (PoolMemoryLimit, e.g. half the free memory).
 */
import { MAX_POOL_PAGES } from '../cache/page-allocator';
import { KvConfigError, PagedKvCache, resolveKvCacheConfig } from '../cache/paged-kv-cache';
import { GpuError, type GpuContext } from '../gpu/gpu-context';
import { DECODE_STORAGE_BINDINGS, maxPoolBuffers, readsSplitPool } from '../kernels/cache-pool';
import { formatBytes } from '../kernels/gpu-buffers';
import { BYTES_PER_WORD, cacheLayout, DEFAULT_PAGE_SIZE, isKvMethod, poolSplit, type KvMethod, type PoolSplit } from '../layout';
import type { ModelShape } from './simulator';

export interface ServingCacheOptions {
  model: ModelShape;
  method: KvMethod;
  /** KV-cache bytes of the simulated layer (K and V, scale/min included). */
  budgetBytes: number;
  /** Tokens per page (default 16). */
  pageSize?: number;
  /** Hadamard block for int4-hadamard (default defaultHadamardBlock(headDim)). */
  hadamardBlock?: number;
  rotateV?: boolean;
  /** Physical page order seed (default 1: pages come out shuffled, as the kernels must tolerate). */
  pageShuffleSeed?: number;
  /**
   * At most this many pages per storage buffer of a pool (default: as many as one binding holds): a
   * small value spreads the pools over several buffers as a budget of tens of GiB does (tests, CI).
   */
  maxPagesPerBuffer?: number;
}

/** What a device offers the pools: GpuContext.limits and its `subgroups` feature (or fakes in tests). */
export interface PoolDeviceLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxStorageBuffersPerShaderStage: number;
  /** The subgroup decode kernel runs (the `subgroups` feature): the only kernel that reads a split pool. */
  subgroups: boolean;
}

/** Bytes the K and V pools together may take, where known (a software adapter: host memory). */
export interface PoolMemoryLimit {
  bytes: number;
  /** How it was chosen, for messages ("half the 22.0 GiB of free host memory"). */
  source: string;
}

/** How a budget becomes pools on a device (planServingPool). */
export interface ServingPoolPlan {
  numPages: number;
  /** Bytes of one page in the K and V pools together. */
  pageBytes: number;
  /** Bytes of the K and V pools together (numPages × pageBytes ≤ the budget). */
  poolBytes: number;
  /** How each of the K and V pools is spread over buffers (as PagedKvCache spreads it). */
  split: PoolSplit;
  /** Buffers a pool may span on this device for this method (1 where no kernel reads a split pool). */
  maxBuffers: number;
  /** Pages one buffer holds at most (one binding, or maxPagesPerBuffer). */
  pagesPerBuffer: number;
  /** Pages the device's bindings (and the memory limit) allow this method: what a budget may buy. */
  maxPages: number;
}

/** The limits createServingCache plans with. */
export function poolDeviceLimits(ctx: GpuContext): PoolDeviceLimits {
  const { maxBufferSize, maxStorageBufferBindingSize, maxStorageBuffersPerShaderStage } = ctx.limits;
  return { maxBufferSize, maxStorageBufferBindingSize, maxStorageBuffersPerShaderStage, subgroups: ctx.features.subgroups };
}

function cacheConfigBase(o: Omit<ServingCacheOptions, 'pageShuffleSeed'>) {
  return {
    method: o.method,
    headDim: o.model.headDim,
    numQueryHeads: o.model.numQueryHeads,
    numKvHeads: o.model.numKvHeads,
    pageSize: o.pageSize,
    ...(o.method === 'int4-hadamard' ? { hadamardBlock: o.hadamardBlock, rotateV: o.rotateV } : {}),
    ...(o.maxPagesPerBuffer !== undefined ? { maxPagesPerBuffer: o.maxPagesPerBuffer } : {}),
  };
}

/** Pages that `budgetBytes` buys for this layer and method. */
export function pagesForServingBudget(o: Omit<ServingCacheOptions, 'pageShuffleSeed'>): number {
  return PagedKvCache.pagesForBudget(cacheConfigBase(o), o.budgetBytes);
}

/** Bytes one page takes in the K and V buffers together (validates the shape: KvConfigError). */
export function servingPageBytes(o: Omit<ServingCacheOptions, 'pageShuffleSeed' | 'budgetBytes'>): number {
  const layout = cacheLayout(resolveKvCacheConfig({ ...cacheConfigBase({ ...o, budgetBytes: 0 }), numPages: 1 }));
  return 2 * layout.pageWords * BYTES_PER_WORD;
}

/**
 * A budget that buys exactly `pages` pages of `pageBytes`, in MiB as the CLI (--budget-mib) and the
 * page take it: pages × pageBytes rounded up to as few decimals as keep it below one more page.
 */
export function budgetForPagesText(pages: number, pageBytes: number): string {
  const digits = Math.max(0, Math.floor(Math.log10(2 ** 20 / pageBytes)) + 1);
  const mib = Math.ceil(((pages * pageBytes) / 2 ** 20) * 10 ** digits) / 10 ** digits;
  const text = digits === 0 ? String(mib) : mib.toFixed(digits).replace(/\.?0+$/, '');
  return `${text} MiB${pages * pageBytes >= 2 ** 30 ? ` (${formatBytes(mib * 2 ** 20)})` : ''}`;
}

/**
 * The pages `o.budgetBytes` buys, checked without a device: at least one, at most MAX_POOL_PAGES.
 * @throws KvConfigError naming the budget that would work (or the shape the cache refuses)
 */
export function checkServingBudget(o: Omit<ServingCacheOptions, 'pageShuffleSeed'>): number {
  const pageBytes = servingPageBytes(o);
  const numPages = pagesForServingBudget(o);
  if (numPages < 1) {
    throw new KvConfigError(`a KV budget of ${o.budgetBytes} bytes holds no ${o.method} page of ${o.pageSize ?? DEFAULT_PAGE_SIZE} tokens for ${o.model.name} (one layer; a page takes ${pageBytes} bytes); raise the budget`);
  }
  if (numPages > MAX_POOL_PAGES) {
    throw new KvConfigError(
      `a KV budget of ${formatBytes(o.budgetBytes)} buys ${numPages} ${o.method} pages, more than the ${MAX_POOL_PAGES} a pool may have; try a budget ≤ ${formatBytes(MAX_POOL_PAGES * pageBytes)}`,
    );
  }
  return numPages;
}

// the split-pool rule is the cache's own (src/kernels/cache-pool.ts), re-exported for the simulator's users
export { maxPoolBuffers, readsSplitPool };

/**
 * The pools a budget buys on a device, without allocating: pages, the split of each pool over buffers,
 * and the most pages this device allows the method.
 * @throws KvConfigError "needs X, limit Y, try a budget ≤ Z" when the budget holds no page, passes
 *   MAX_POOL_PAGES, needs more buffers per pool than the decode kernel can bind, needs a split pool
 *   that no kernel of this device reads for the method, or passes `memory`
 */
export function planServingPool(limits: PoolDeviceLimits, o: Omit<ServingCacheOptions, 'pageShuffleSeed'>, memory?: PoolMemoryLimit): ServingPoolPlan {
  const numPages = checkServingBudget(o);
  const pageBytes = servingPageBytes(o);
  const onePool = pageBytes / 2;
  const binding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const bindingName = limits.maxStorageBufferBindingSize <= limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
  const pagesPerBinding = Math.floor(binding / onePool);
  const what = `a KV budget of ${formatBytes(o.budgetBytes)} (${numPages} ${o.method} pages)`;
  if (pagesPerBinding < 1) {
    throw new KvConfigError(`${what}: one page of the K pool takes ${formatBytes(onePool)}, more than this device's ${bindingName} of ${formatBytes(binding)}; try a smaller page size`);
  }
  const pagesPerBuffer = Math.min(pagesPerBinding, o.maxPagesPerBuffer ?? Infinity);
  const split = poolSplit(cacheLayout(resolveKvCacheConfig({ ...cacheConfigBase(o), numPages })), binding, o.maxPagesPerBuffer);
  const splits = readsSplitPool(o.method, limits.subgroups);
  const maxBuffers = splits ? maxPoolBuffers(limits) : 1;
  const byMemory = memory ? Math.floor(memory.bytes / pageBytes) : Infinity;
  const maxPages = Math.min(MAX_POOL_PAGES, maxBuffers * pagesPerBuffer, byMemory);
  const needs = `${what} needs a K pool of ${formatBytes(numPages * onePool)} (and as much for V)`;
  const perBuffer = `${o.maxPagesPerBuffer !== undefined && o.maxPagesPerBuffer < pagesPerBinding ? `${pagesPerBuffer} pages (maxPagesPerBuffer)` : `${formatBytes(pagesPerBuffer * onePool)} (${bindingName})`}`;
  const fits = maxPages >= 1 ? `try a budget ≤ ${budgetForPagesText(maxPages, pageBytes)}` : 'nothing fits';
  if (split.numBuffers > maxBuffers) {
    if (!splits) {
      const reason = isKvMethod(o.method)
        ? 'this device has no `subgroups` feature (or it was turned off), and only the subgroup decode kernel reads a pool over several buffers'
        : `the ${o.method} decode kernel reads a pool from one buffer only`;
      throw new KvConfigError(`${needs} over ${split.numBuffers} storage buffers of ≤ ${perBuffer}; limit one buffer per pool: ${reason}; ${fits}`);
    }
    throw new KvConfigError(
      `${needs} over ${split.numBuffers} storage buffers of ≤ ${perBuffer}; limit ${maxBuffers} buffers per pool ` +
        `(decode binds ${DECODE_STORAGE_BINDINGS} storage buffers + 2 per extra pool buffer, this device at most ${limits.maxStorageBuffersPerShaderStage} per shader stage); ${fits}`,
    );
  }
  if (numPages > byMemory) {
    throw new KvConfigError(`${what} needs ${formatBytes(numPages * pageBytes)} of K and V pools; limit ${formatBytes((memory as PoolMemoryLimit).bytes)} (${(memory as PoolMemoryLimit).source}); ${fits}`);
  }
  return { numPages, pageBytes, poolBytes: numPages * pageBytes, split, maxBuffers, pagesPerBuffer, maxPages };
}

/** The KvConfigError for pools the device could not allocate (GPU out of memory): what they needed, what to try. */
export function poolOutOfMemoryError(o: Pick<ServingCacheOptions, 'budgetBytes' | 'method'>, plan: ServingPoolPlan, cause: string): KvConfigError {
  const buffers = plan.split.numBuffers === 1 ? 'one buffer each' : `${plan.split.numBuffers} buffers each`;
  return new KvConfigError(
    `a KV budget of ${formatBytes(o.budgetBytes)} needs ${formatBytes(plan.poolBytes)} of ${o.method} K and V pools (${buffers}); the GPU ran out of memory allocating them ` +
      `(${cause}); limit: this device's free GPU memory, which WebGPU does not report; try a budget ≤ ${budgetForPagesText(Math.floor(plan.numPages / 2), plan.pageBytes)} (half)`,
  );
}

/**
 * A PagedKvCache holding as many pages as the budget buys, its pools over as many buffers as they need
 * (planServingPool). Refused with a KvConfigError before any allocation when the plan is refused, and
 * after it when the device runs out of memory; each message says which budget would fit.
 */
export async function createServingCache(ctx: GpuContext, o: ServingCacheOptions, memory?: PoolMemoryLimit): Promise<PagedKvCache> {
  const plan = planServingPool(poolDeviceLimits(ctx), o, memory);
  try {
    return await PagedKvCache.create(ctx, { ...cacheConfigBase(o), numPages: plan.numPages, pageShuffleSeed: o.pageShuffleSeed ?? 1 });
  } catch (err) {
    if (err instanceof GpuError && err.kind === 'out-of-memory' && !err.beforeWork) throw poolOutOfMemoryError(o, plan, err.message);
    throw err;
  }
}
