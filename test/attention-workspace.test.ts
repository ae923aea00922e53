/**
 * The reusable attention workspace (src/cache/attention-workspace.ts): the same bits as a freshly
 * prepared attention for every shape of a decode loop (batches that grow and shrink, split-K with and
 * without the merge kernel), and no GPU buffer created once its buffers are large enough; the same for
 * cache writes bound in a workspace (PagedKvCache.prepareAppend with a workspace).
 */
import { describe, expect, it } from 'vitest';
import { PagedKvCache, type AttentionOptions, type KvCacheConfig } from '../src/cache/paged-kv-cache';
import { writeFloats } from '../src/kernels/gpu-buffers';
import { SeededRandom } from '../src/reference/random';
import { testGpu } from './gpu-harness';

const CONFIG: KvCacheConfig = { method: 'int4-hadamard', headDim: 64, numQueryHeads: 8, numKvHeads: 2, numPages: 64, pageSize: 8, pageShuffleSeed: 4 };
const ROW = CONFIG.numKvHeads * CONFIG.headDim;

async function freshAttention(cache: PagedKvCache, seqIds: number[], q: Float32Array, options: AttentionOptions): Promise<Float32Array> {
  const prepared = await cache.prepareAttention(seqIds, options);
  try {
    writeFloats(cache.ctx.device, prepared.queryBuffer, q);
    await cache.submit((pass) => prepared.encode(pass));
    return await prepared.read();
  } finally {
    prepared.destroy();
  }
}

describe('attention workspace', () => {
  it('matches a fresh prepareAttention bit for bit over a decode loop, and stops allocating once warm', async () => {
    const ctx = await testGpu();
    const cache = await PagedKvCache.create(ctx, CONFIG);
    const rng = new SeededRandom(11);
    const seqs = [cache.createSequence(), cache.createSequence(), cache.createSequence()];
    await cache.append(seqs, [3, 40, 17], rng.normalArray(60 * ROW), rng.normalArray(60 * ROW));
    const ws = cache.createAttentionWorkspace();
    // batches that grow and shrink; forced splits exercise the merge kernel and its binding
    const steps: [number[], AttentionOptions][] = [
      [[seqs[0]], {}],
      [seqs, {}],
      [[seqs[1], seqs[2]], { numSplits: 3 }],
      [seqs, { numSplits: 2 }],
      [[seqs[2]], {}],
      [seqs, {}],
    ];
    let createdAfterWarmup = -1;
    for (let round = 0; round < 2; round++) {
      for (const [ids, options] of steps) {
        // one new token per sequence of the batch, as a decode step appends
        await cache.append(ids, ids.map(() => 1), rng.normalArray(ids.length * ROW), rng.normalArray(ids.length * ROW));
        const q = rng.normalArray(ids.length * CONFIG.numQueryHeads * CONFIG.headDim);
        const got = await ws.attention(ids, q, options);
        const want = await freshAttention(cache, ids, q, options);
        expect(Array.from(got)).toEqual(Array.from(want));
      }
      if (round === 0) createdAfterWarmup = ws.buffersCreated;
    }
    // the second round runs the same shapes (a token longer): no buffer is created
    expect(ws.buffersCreated).toBe(createdAfterWarmup);
    ws.destroy();
    await expect(ws.attention([seqs[0]], new Float32Array(CONFIG.numQueryHeads * CONFIG.headDim))).rejects.toThrow(/workspace was destroyed/);
    // cache.attention() runs through the cache's own workspace
    const q = rng.normalArray(seqs.length * CONFIG.numQueryHeads * CONFIG.headDim);
    expect(Array.from(await cache.attention(seqs, q))).toEqual(Array.from(await freshAttention(cache, seqs, q, {})));
    await expect(cache.attention(seqs, new Float32Array(5))).rejects.toThrow(/q has 5 values/);
    cache.destroy();
  });

  it('binds cache writes in the workspace: the same cache words as writes with their own buffers, no buffer created once warm', async () => {
    const ctx = await testGpu();
    const own = await PagedKvCache.create(ctx, CONFIG);
    const shared = await PagedKvCache.create(ctx, CONFIG);
    const ws = shared.createAttentionWorkspace();
    const rng = new SeededRandom(12);
    const ids = [0, 1, 2].map(() => [own.createSequence(), shared.createSequence()]);
    const write = async (cache: PagedKvCache, seqIds: number[], counts: number[], k: Float32Array, v: Float32Array, workspace?: typeof ws) => {
      const prepared = await cache.prepareAppend(seqIds, counts, workspace);
      writeFloats(ctx.device, prepared.kInput, k);
      writeFloats(ctx.device, prepared.vInput, v);
      await cache.submit((pass) => prepared.encode(pass));
      prepared.destroy();
    };
    // a prefill of different lengths, then decode steps of batches that grow and shrink
    const batches: [number[], number[]][] = [[[0, 1, 2], [5, 9, 2]], [[0, 1, 2], [1, 1, 1]], [[1], [1]], [[0, 2], [1, 1]], [[0, 1, 2], [1, 1, 1]]];
    let createdAfterWarmup = -1;
    for (let round = 0; round < 3; round++) {
      for (const [which, counts] of batches) {
        const n = counts.reduce((a, b) => a + b, 0);
        const k = rng.normalArray(n * ROW);
        const v = rng.normalArray(n * ROW);
        await write(own, which.map((i) => ids[i][0]), counts, k, v);
        await write(shared, which.map((i) => ids[i][1]), counts, k, v, ws);
      }
      if (round === 0) createdAfterWarmup = ws.buffersCreated;
    }
    expect(ws.buffersCreated).toBe(createdAfterWarmup);
    const a = await own.readCacheWords();
    const b = await shared.readCacheWords();
    expect(b.k).toEqual(a.k);
    expect(b.v).toEqual(a.v);
    // a refused append reserves nothing and leaves the workspace usable
    await expect(shared.prepareAppend([ids[0][1]], [10_000], ws)).rejects.toThrow();
    expect(shared.contextLength(ids[0][1])).toBe(own.contextLength(ids[0][0]));
    ws.destroy();
    await expect(shared.prepareAppend([ids[0][1]], [1], ws)).rejects.toThrow(/workspace was destroyed/);
    own.destroy();
    shared.destroy();
  });
});
