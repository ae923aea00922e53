/** Bad input gets a clear error before any dispatch, and changes nothing. */
import { describe, expect, it } from 'vitest';
import { KvConfigError, PagedKvCache, resolveKvCacheConfig, type KvCacheConfig } from '../src/cache/paged-kv-cache';
import { KvCacheFullError } from '../src/cache/page-allocator';
import { GpuError } from '../src/gpu/gpu-context';
import { checkBufferFits } from '../src/kernels/gpu-buffers';
import { SeededRandom } from '../src/reference/random';
import { testGpu } from './gpu-harness';

const BASE: KvCacheConfig = { method: 'int4-hadamard', headDim: 64, numQueryHeads: 4, numKvHeads: 2, numPages: 4, pageSize: 8, hadamardBlock: 64 };

describe('configuration errors (no GPU work)', () => {
  const cases: [string, Partial<KvCacheConfig> & Record<string, unknown>, RegExp][] = [
    ['unknown method', { method: 'int3' as never }, /unknown method 'int3'.*fp16, int4, int4-hadamard/],
    ['head_dim not a multiple of 8/32', { headDim: 100 }, /headDim 100 must be a multiple of 32/],
    ['head_dim too large', { headDim: 512 }, /headDim must be an integer in \[32, 256\]/],
    ['head_dim not divisible by B', { headDim: 96, hadamardBlock: 64 }, /must be ≥ 2 and divide headDim 96/],
    ['B not a power of two', { hadamardBlock: 48 }, /Hadamard block 48 is not a power of two/],
    ['B larger than head_dim', { hadamardBlock: 128 }, /divide headDim 64/],
    ['GQA mismatch', { numQueryHeads: 6, numKvHeads: 4 }, /numQueryHeads 6 is not a multiple of numKvHeads 4/],
    ['page size out of range', { pageSize: 4 }, /pageSize must be an integer in \[8, 128\]/],
    ['rotateV without rotation', { method: 'int4', rotateV: true }, /rotateV needs method int4-hadamard/],
    ['no pages', { numPages: 0 }, /numPages must be an integer/],
    ['a pool of a billion pages (refused before any allocation)', { numPages: 1e9 }, /numPages must be an integer in \[1, 67108864\], got 1000000000/],
    ['negative sign seed', { hadamardSignSeed: -1 }, /hadamardSignSeed must be an integer in \[0, 4294967295\], got -1/],
    ['fractional sign seed', { hadamardSignSeed: 1.5 }, /hadamardSignSeed must be an integer.*got 1.5/],
    ['fractional page shuffle seed', { pageShuffleSeed: 0.5 }, /pageShuffleSeed must be an integer/],
  ];
  for (const [name, patch, message] of cases) {
    it(name, () => {
      expect(() => resolveKvCacheConfig({ ...BASE, ...patch } as KvCacheConfig)).toThrow(KvConfigError);
      expect(() => resolveKvCacheConfig({ ...BASE, ...patch } as KvCacheConfig)).toThrow(message);
    });
  }
});

describe('runtime errors change nothing', () => {
  async function filledCache() {
    const ctx = await testGpu();
    const cache = await PagedKvCache.create(ctx, { ...BASE, pageShuffleSeed: 3 });
    const rng = new SeededRandom(5);
    const a = cache.createSequence();
    const b = cache.createSequence();
    await cache.append([a, b], [10, 5], rng.normalArray(15 * 2 * 64), rng.normalArray(15 * 2 * 64));
    return { cache, a, b, rng, before: await cache.readCacheWords(), snapshot: cache.allocator.snapshot() };
  }

  it('out of pages: KvCacheFullError says what fits, nothing reserved or written', async () => {
    const { cache, a, b, rng, before, snapshot } = await filledCache();
    // 4 pages of 8: a holds 2 pages (10 tokens), b 1 page; 1 page free + 6 free slots in a, 3 in b.
    const tryAppend = cache.append([a, b], [6, 12], rng.normalArray(18 * 128), rng.normalArray(18 * 128));
    await expect(tryAppend).rejects.toThrow(KvCacheFullError);
    await expect(cache.append([b], [12], rng.normalArray(12 * 128), rng.normalArray(12 * 128))).rejects.toThrow(/need 2 more pages but only 1 are free; at most 11 tokens fit now/);
    expect(cache.allocator.snapshot()).toEqual(snapshot);
    expect(await cache.readCacheWords()).toEqual(before);
    cache.destroy();
  });

  it('K/V of the wrong length, unknown or repeated sequences: rejected before reserving', async () => {
    const { cache, a, b, before, snapshot } = await filledCache();
    await expect(cache.append([a], [2], new Float32Array(100), new Float32Array(2 * 128))).rejects.toThrow(/k has 100 values; \[2 tokens, 2 kv heads, 64\] needs 256/);
    await expect(cache.append([a, a], [1, 1], new Float32Array(256), new Float32Array(256))).rejects.toThrow(/appears twice/);
    await expect(cache.append([99], [1], new Float32Array(128), new Float32Array(128))).rejects.toThrow(/sequence 99/);
    await expect(cache.append([a], [-1], new Float32Array(0), new Float32Array(0))).rejects.toThrow();
    expect(cache.allocator.snapshot()).toEqual(snapshot);
    expect(await cache.readCacheWords()).toEqual(before);
    await expect(cache.attention([a, b], new Float32Array(7))).rejects.toThrow(/q has 7 values/);
    const empty = cache.createSequence();
    await expect(cache.attention([empty], new Float32Array(4 * 64))).rejects.toThrow(/sequence \d+ is empty/);
    await expect(cache.attention([a], new Float32Array(256), { scale: NaN })).rejects.toThrow(/scale must be finite/);
    cache.destroy();
  });

  it('NaN or Inf in K or V: refused naming sequence, token, kv head and channel; nothing reserved or written', async () => {
    const { cache, a, b, rng, before, snapshot } = await filledCache();
    for (const [bad, where] of [[Number.NaN, 'k'], [Infinity, 'v'], [-Infinity, 'k']] as const) {
      const k = rng.normalArray(5 * 128);
      const v = rng.normalArray(5 * 128);
      // row 3 of the input = token 1 of b (a takes 2 tokens first), kv head 1, channel 7
      (where === 'k' ? k : v)[3 * 128 + 64 + 7] = bad;
      await expect(cache.append([a, b], [2, 3], k, v)).rejects.toThrow(new RegExp(`append: ${where} is ${String(bad)} at sequence ${b}, token 6, kv head 1, channel 7 \\(row 3 of the input\\)`));
    }
    expect(cache.allocator.snapshot()).toEqual(snapshot);
    expect(await cache.readCacheWords()).toEqual(before);
    cache.destroy();
  });

  it('a write that fails after its reservation gives the slots back (unreserve restores the allocator exactly)', async () => {
    const { cache, a, b, snapshot } = await filledCache();
    const prepared = await cache.prepareAppend([a, b], [6, 4]); // b takes the last free page
    expect([cache.contextLength(a), cache.contextLength(b), cache.allocator.freePageCount]).toEqual([16, 9, 0]);
    prepared.unreserve();
    prepared.unreserve(); // idempotent
    prepared.destroy();
    expect(cache.allocator.snapshot()).toEqual(snapshot);
    cache.destroy();
  });

  it('buffers beyond the device limits: a clear error naming the limit and what fits', async () => {
    const ctx = await testGpu();
    const pagesPerBinding = Math.floor(ctx.limits.maxStorageBufferBindingSize / (8 * 2 * (64 / 8 + 1) * 4));
    // a pool over several buffers is only read by the subgroup kernel: int8 (or no subgroups) is refused
    await expect(PagedKvCache.create(ctx, { ...BASE, method: 'int8', numPages: 2 * pagesPerBinding })).rejects.toThrow(KvConfigError);
    await expect(PagedKvCache.create(ctx, { ...BASE, numPages: 2 * pagesPerBinding, useSubgroups: false })).rejects.toThrow(/needs 2 storage buffers .* read by the subgroup decode kernel .* at most \d+ pages fit one buffer/);
    // more buffers than the decode kernel can bind
    const maxBuffers = Math.floor((ctx.limits.maxStorageBuffersPerShaderStage - 8) / 2) + 1;
    await expect(PagedKvCache.create(ctx, { ...BASE, numPages: (maxBuffers + 1) * pagesPerBinding })).rejects.toThrow(new RegExp(`needs ${maxBuffers + 1} storage buffers per pool .* binds at most ${ctx.limits.maxStorageBuffersPerShaderStage} per shader stage: at most ${maxBuffers * pagesPerBinding} pages fit`));
    // a single buffer over the limits: a GpuError raised before any allocation (the CLI exits 2)
    expect(() => checkBufferFits(ctx, 'the test buffer', 2 * ctx.limits.maxStorageBufferBindingSize)).toThrow(expect.objectContaining({ kind: 'out-of-memory', beforeWork: true }));
    expect(() => checkBufferFits(ctx, 'the test buffer', 2 * ctx.limits.maxStorageBufferBindingSize)).toThrow(/the test buffer needs .* more than this device's max\w+ of .*; at most .*% of this size would fit/);
  });

  it('a destroyed cache refuses work', async () => {
    const { cache, a } = await filledCache();
    cache.destroy();
    await expect(cache.attention([a], new Float32Array(256))).rejects.toThrow(/destroyed/);
  });
});
