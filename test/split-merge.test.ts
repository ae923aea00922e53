/**
 * Split-K merged in the decode dispatch (lib/decode-epilogue.wgsl, MERGE_IN_DISPATCH; the merge itself
 * lib/split-merge.wgsl, shared with shaders/paged-decode-merge.wgsl): the last workgroup of each
 * (sequence, head group) merges every split through atomics. Against the float64 references of
 * decode-checks.ts, both ways (in the dispatch and by the merge kernel); the same bits call after
 * call (the merge words and counters are restored after each call, whatever the shape of the next);
 * the plan's choice (by default at small grids) and its refusals.
 */
import { describe, expect, it } from 'vitest';
import { KvConfigError, PagedKvCache } from '../src/cache/paged-kv-cache';
import { splitMergeBlock } from '../src/kernels/decode-tuning';
import { SeededRandom } from '../src/reference/random';
import { maxAbsError } from '../src/reference/metrics';
import { ATTENTION_F32_TOL, expectDecodeMatchesReferences, maxAbs } from './decode-checks';
import { subgroupTestGpu } from './gpu-harness';
import { runKernelCase, type KernelCase } from './kernel-case';

const CASES: KernelCase[] = [
  // Llama-3 heads at batch 3: one head per workgroup, a sequence of 1 token (its other splits empty), V rotated
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16, rotateV: true, hadamardSignSeed: 9 }, contextLens: [1, 700, 2049], seed: 71 },
  // 7 splits (a block of four and a remainder of three), 4 heads per workgroup
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 8 }, contextLens: [3000, 5], seed: 72, numSplits: 7, tuning: { splitHeadsBelowWorkgroups: 0 } },
  // many splits, head_dim 256 (two elements per invocation of a 128-invocation workgroup)
  { config: { method: 'int4', headDim: 256, numQueryHeads: 4, numKvHeads: 1, pageSize: 32 }, contextLens: [5000], seed: 73, numSplits: 18, outlierScale: 15 },
  // the int8 query, a fused decode step (its new token in the last split)
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 8, numKvHeads: 2, pageSize: 16, queryInt8: true }, contextLens: [900, 33], seed: 74, integerQueries: true, numSplits: 3 },
  { config: { method: 'int4-hadamard', headDim: 96, numQueryHeads: 4, numKvHeads: 1, pageSize: 16, rotateV: true }, contextLens: [1000], seed: 75, numSplits: 4, decodeStep: 'fused' },
];

function label(c: KernelCase): string {
  const k = c.config;
  return `${k.method}${k.rotateV ? '-KV' : ''}${k.queryInt8 ? '-q8' : ''} D=${k.headDim} Hq/Hkv=${k.numQueryHeads}/${k.numKvHeads} lens=${c.contextLens} splits=${c.numSplits ?? 'auto'}${c.decodeStep ? ` ${c.decodeStep} step` : ''}`;
}

describe('split-K merged in the decode dispatch', () => {
  for (const c of CASES) {
    it(`${label(c)}: in the dispatch and by the merge kernel, both against the references`, async () => {
      const ctx = await subgroupTestGpu();
      for (const inDispatch of [true, false]) {
        const run = await runKernelCase(ctx, { ...c, mergeInDispatch: inDispatch });
        try {
          const plan = run.cache.planAttention(run.seqIds, { numSplits: c.numSplits, tuning: c.tuning, mergeInDispatch: inDispatch });
          expect(plan.splits.numSplits).toBeGreaterThan(1);
          expect([plan.mergeInDispatch, plan.merge]).toEqual([inDispatch, !inDispatch]);
          // the in-dispatch merge reads its splits in one round: a block of the split count rounded up (4, 8, 16; 18 splits: two blocks of 16)
          expect(/-merged(\d+)\//.exec(plan.variant.key)?.[1]).toBe(inDispatch ? String(splitMergeBlock(plan.splits.numSplits)) : undefined);
          expectDecodeMatchesReferences(run, c);
        } finally {
          run.cache.destroy();
        }
      }
    });
  }

  it('calls of other shapes in between leave nothing behind (words and counters restored): the same bits', async () => {
    const ctx = await subgroupTestGpu();
    const config = { method: 'int4-hadamard' as const, headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16, numPages: 400 };
    const cache = await PagedKvCache.create(ctx, config);
    try {
      const rng = new SeededRandom(76);
      const lens = [1500, 3, 2600];
      const seqs = lens.map(() => cache.createSequence());
      const tokens = lens.reduce((a, b) => a + b, 0);
      await cache.append(seqs, lens, rng.normalArray(tokens * 8 * 128), rng.normalArray(tokens * 8 * 128));
      const q = rng.normalArray(3 * 32 * 128);
      const ws = cache.createAttentionWorkspace();
      const merged = { mergeInDispatch: true };
      expect(cache.planAttention(seqs, merged).mergeInDispatch).toBe(true);
      const first = await ws.attention(seqs, q, merged);
      // a stale word (another shape's record) would move an output by far more than f32 rounding; the
      // merge is in split order, so the same bits are required everywhere (the H200 differed by ~2e-7 while
      // the kernel claimed subgroup indices and token slots with two atomics: docs/tuning.md)
      const sameAsFirst = (out: Float32Array) => {
        expect(maxAbsError(out, first).value).toBeLessThanOrEqual(ATTENTION_F32_TOL * maxAbs(first));
        expect(Array.from(out)).toEqual(Array.from(first));
      };
      const between: [number[], Float32Array, { numSplits?: number; mergeInDispatch?: boolean }][] = [
        [[seqs[2]], q.subarray(0, 32 * 128), { numSplits: 5, mergeInDispatch: true }],
        [[seqs[0], seqs[1]], q.subarray(0, 2 * 32 * 128), { numSplits: 2, mergeInDispatch: true }],
        [seqs, q, {}],
      ];
      for (const [ids, query, options] of between) {
        await ws.attention(ids, query, options);
        sameAsFirst(await ws.attention(seqs, q, merged));
      }
      sameAsFirst(await cache.attention(seqs, q, merged)); // the cache's own workspace
      expect(cache.planAttention(seqs).mergeInDispatch).toBe(false); // 3 sequences × 8 kv heads = 24 rows: the merge kernel by default
      sameAsFirst(await cache.attention(seqs, q)); // the merge kernel
      ws.destroy();
    } finally {
      cache.destroy();
    }
  });

  it('reads every split in one round up to 16 (blocks of the split count rounded up to a power of two, at least 4)', () => {
    expect([1, 3, 4, 5, 7, 8, 9, 16, 17, 40].map(splitMergeBlock)).toEqual([4, 4, 4, 8, 8, 8, 16, 16, 16, 16]);
  });

  it('is planned by default where the subgroup kernel splits a small grid (≤ 16 sequences × kv heads); refused on the other kernels', async () => {
    const ctx = await subgroupTestGpu();
    const cache = await PagedKvCache.create(ctx, { method: 'int4', headDim: 64, numQueryHeads: 4, numKvHeads: 1, pageSize: 16, numPages: 80 });
    try {
      const seq = cache.createSequence();
      await cache.append([seq], [1200], new Float32Array(1200 * 64), new Float32Array(1200 * 64));
      expect(cache.planAttention([seq], { numSplits: 3 }).mergeInDispatch).toBe(true); // one row
      expect(cache.planAttention([seq], { numSplits: 3, mergeInDispatch: false })).toMatchObject({ mergeInDispatch: false, merge: true });
      expect(cache.planAttention([seq], { numSplits: 1, mergeInDispatch: true }).mergeInDispatch).toBe(false);
      const split = cache.planAttention([seq], { numSplits: 3, mergeInDispatch: true });
      expect([split.mergeInDispatch, split.merge]).toEqual([true, false]);
      expect(split.partialAccBytes).toBe(4 * 3 * (64 + 2) * 4);  // [S, Hq, splits, D + 2] words
      expect(split.partialMlBytes).toBe((4 / split.headsPerWorkgroup) * 4);  // a counter per head group
      expect(cache.planAttention([seq], { numSplits: 3, kernel: 'workgroup' }).mergeInDispatch).toBe(false);
      expect(() => cache.planAttention([seq], { numSplits: 3, kernel: 'workgroup', mergeInDispatch: true })).toThrow(KvConfigError);
      expect(() => cache.planAttention([seq], { numSplits: 3, kernel: 'workgroup', mergeInDispatch: true })).toThrow(/only the subgroup decode kernel merges split-K partials in its own dispatch, not the workgroup kernel/);
    } finally {
      cache.destroy();
    }
  });
});
