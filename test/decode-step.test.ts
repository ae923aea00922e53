/**
 * The fused decode step (shaders/paged-decode-subgroup.wgsl with FUSED_STEP, PagedKvCache.decodeStep):
 * the decode kernel encodes each sequence's new token with the cache write's code, stores it and scores
 * it from registers. Over a grid (first token of a sequence, new token at a page boundary, in the last
 * of several splits, GQA with several head groups per kv head, MQA, rotate_v, random signs, the int8
 * query, every subgroup-kernel format and head_dim): the two float64 checks of decode-checks.ts, the
 * same bits run to run, and those of the separate cache write + attention (on software adapters; a
 * GPU's compiler may round the two kernels differently, in the new tokens' words only).
 */
import { describe, expect, it } from 'vitest';
import { KvConfigError, PagedKvCache } from '../src/cache/paged-kv-cache';
import { defaultHadamardBlock, rowWordIndex, scaleMinWordIndex } from '../src/layout';
import { SeededRandom } from '../src/reference/random';
import { expectDecodeMatchesReferences } from './decode-checks';
import { subgroupTestGpu, testGpu } from './gpu-harness';
import { runKernelCase, type KernelCase, type KernelRun } from './kernel-case';

const GRID: KernelCase[] = [
  // first token of a sequence (length 1), new tokens opening a page (9 = 8 + 1, 17 = 16 + 1)
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 4, numKvHeads: 4, pageSize: 8 }, contextLens: [1, 9, 23], seed: 1 },
  { config: { method: 'int4', headDim: 128, numQueryHeads: 8, numKvHeads: 2, pageSize: 16 }, contextLens: [17, 33], seed: 2, numSplits: 2, outlierScale: 15 },
  // Llama-3 heads at batch 2: one query head per workgroup (4 head groups, only the first stores); new token in the last of 3 splits
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16, hadamardBlock: 128 }, contextLens: [1, 100], seed: 3, numSplits: 3 },
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 4, numKvHeads: 1, pageSize: 16, hadamardBlock: 64, rotateV: true, hadamardSignSeed: 7 }, contextLens: [50, 17], seed: 4 },
  { config: { method: 'int4-hadamard', headDim: 256, numQueryHeads: 8, numKvHeads: 2, pageSize: 32, hadamardBlock: 128, rotateV: true }, contextLens: [300, 33], seed: 6, numSplits: 2 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 8, numKvHeads: 2, pageSize: 16, hadamardBlock: 32, queryInt8: true }, contextLens: [40, 3], seed: 6, integerQueries: true },
  { config: { method: 'int4', headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 8, queryInt8: true }, contextLens: [9, 1], seed: 7, integerQueries: true, numSplits: 2 },
  // head_dims that are multiples of 32 but not of 64; MQA; a batch of 64 short sequences
  { config: { method: 'int4-hadamard', headDim: 96, numQueryHeads: 4, numKvHeads: 2, pageSize: 16, rotateV: true }, contextLens: [33, 2], seed: 8 },
  { config: { method: 'fp16', headDim: 160, numQueryHeads: 4, numKvHeads: 1, pageSize: 16 }, contextLens: [65, 16], seed: 9, numSplits: 2 },
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 32, numKvHeads: 1, pageSize: 16, hadamardBlock: 64 }, contextLens: [50], seed: 10 },
  { config: { method: 'int4', headDim: 128, numQueryHeads: 4, numKvHeads: 1, pageSize: 16 }, contextLens: Array.from({ length: 64 }, (_, i) => 1 + ((i * 5) % 37)), seed: 11 },
  // the queries in workgroup memory (DecodeTuning.queryInWorkgroup)
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16, hadamardBlock: 128 }, contextLens: [1, 100], seed: 12, numSplits: 3, tuning: { queryInWorkgroup: 1 } },
];

function label(c: KernelCase): string {
  const k = c.config;
  const rot = k.method === 'int4-hadamard' ? `-B${k.hadamardBlock ?? defaultHadamardBlock(k.headDim)}${k.rotateV ? '-KV' : ''}${k.hadamardSignSeed !== undefined ? '-signs' : ''}` : '';
  return `${k.method}${rot}${k.queryInt8 ? '-q8' : ''} D=${k.headDim} Hq/Hkv=${k.numQueryHeads}/${k.numKvHeads} P=${k.pageSize} lens=${c.contextLens.length > 4 ? `${c.contextLens.length} seqs` : c.contextLens.join(',')} splits=${c.numSplits ?? 'auto'}`;
}

/** Word indices of the K/V rows and scale/min words of each sequence's last token (the step's new token). */
function newTokenWords(run: KernelRun): Set<number> {
  const { layout } = run.cache;
  const words = new Set<number>();
  for (const id of run.seqIds) {
    const last = run.cache.contextLength(id) - 1;
    const page = run.cache.allocator.blockTable(id)[Math.floor(last / layout.pageSize)];
    for (let h = 0; h < layout.numKvHeads; h++) {
      const start = rowWordIndex(layout, page, h, last % layout.pageSize);
      for (let w = 0; w < layout.rowWords; w++) words.add(start + w);
      if (layout.scaleMinWords > 0) words.add(scaleMinWordIndex(layout, page, h, last % layout.pageSize));
    }
  }
  return words;
}

/** Indices where two word arrays differ. */
function differingWords(a: Uint32Array, b: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

describe('fused decode step', () => {
  for (const c of GRID) {
    it(label(c), async () => {
      const ctx = await subgroupTestGpu();
      const fused = await runKernelCase(ctx, { ...c, decodeStep: 'fused' });
      expect(fused.cache.planAttention(fused.seqIds, { numSplits: c.numSplits }).kernel).toBe('subgroup');
      expectDecodeMatchesReferences(fused, c);
      // run to run: bit for bit
      const again = await runKernelCase(ctx, { ...c, decodeStep: 'fused' });
      expectDecodeMatchesReferences(again, c);
      expect(Array.from(again.out)).toEqual(Array.from(fused.out));
      expect(differingWords(again.cacheWords.k, fused.cacheWords.k)).toEqual([]);
      expect(differingWords(again.cacheWords.v, fused.cacheWords.v)).toEqual([]);
      // against the separate cache write + attention: the same code, so the same bits where f32 is
      // evaluated as written (software adapters); a GPU compiler may contract or reassociate the two
      // kernels differently (measured on an H200: 1 case of 13), which only the new tokens' words and
      // the output's last bits can show
      const separate = await runKernelCase(ctx, { ...c, decodeStep: 'separate' });
      expectDecodeMatchesReferences(separate, c);
      const mayDiffer = newTokenWords(fused);
      for (const pool of ['k', 'v'] as const) {
        const differ = differingWords(separate.cacheWords[pool], fused.cacheWords[pool]);
        expect(differ.filter((i) => !mayDiffer.has(i)), `${pool} words other than the new tokens'`).toEqual([]);
        if (ctx.adapterInfo.isFallbackAdapter) expect(differ, `${pool} words of the new tokens`).toEqual([]);
      }
      if (ctx.adapterInfo.isFallbackAdapter) expect(Array.from(separate.out)).toEqual(Array.from(fused.out));
      for (const run of [fused, again, separate]) run.cache.destroy();
    });
  }

  it('fuses by default where the subgroup kernel runs, keeps the write separate elsewhere, and gives the slots back on failure', async () => {
    const ctx = await subgroupTestGpu();
    const config = { method: 'int4-hadamard' as const, headDim: 64, numQueryHeads: 8, numKvHeads: 2, numPages: 4, pageSize: 8 };
    const cache = await PagedKvCache.create(ctx, config);
    const rng = new SeededRandom(3);
    const seq = cache.createSequence();
    const row = config.numKvHeads * config.headDim;
    const q = rng.normalArray(config.numQueryHeads * config.headDim);
    const step = await cache.prepareDecodeStep([seq]);
    expect(step.fused).toBe(true);
    expect(step.plan.fusedStep).toBe(true);
    expect(cache.contextLength(seq)).toBe(1);
    step.unreserve();
    step.destroy();
    expect(cache.contextLength(seq)).toBe(0);
    // the workgroup-memory kernel has no fused step: the write stays separate, and forcing it is refused
    const separate = await cache.prepareDecodeStep([seq], { kernel: 'workgroup' });
    expect(separate.fused).toBe(false);
    separate.unreserve();
    separate.destroy();
    await expect(cache.prepareDecodeStep([seq], { kernel: 'workgroup', fuse: true })).rejects.toThrow(/fused decode step runs on the subgroup decode kernel/);
    // bad inputs: nothing reserved
    await expect(cache.decodeStep([seq], new Float32Array(row), new Float32Array(row), new Float32Array(3))).rejects.toThrow(/q has 3 values/);
    const nan = rng.normalArray(row);
    nan[5] = NaN;
    await expect(cache.decodeStep([seq], nan, rng.normalArray(row), q)).rejects.toThrow(KvConfigError);
    expect(cache.contextLength(seq)).toBe(0);
    // a full pool: KvCacheFullError before anything is reserved (4 pages of 8 tokens)
    for (let t = 0; t < 32; t++) await cache.decodeStep([seq], rng.normalArray(row), rng.normalArray(row), q);
    await expect(cache.decodeStep([seq], rng.normalArray(row), rng.normalArray(row), q)).rejects.toThrow(/pages/);
    expect(cache.contextLength(seq)).toBe(32);
    cache.destroy();
  });

  it('is refused for a cache without the subgroup kernel', async () => {
    const ctx = await testGpu({ disableFeatures: ['subgroups'] });
    const cache = await PagedKvCache.create(ctx, { method: 'int4', headDim: 64, numQueryHeads: 4, numKvHeads: 1, numPages: 4, pageSize: 8 });
    const seq = cache.createSequence();
    await expect(cache.prepareDecodeStep([seq], { fuse: true })).rejects.toThrow(/subgroup decode kernel/);
    const step = await cache.prepareDecodeStep([seq]);
    expect(step.fused).toBe(false);
    step.destroy();
    cache.destroy();
  });
});
