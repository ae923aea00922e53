/**
 * Paged decode attention (shaders/paged-decode-subgroup.wgsl for int4/fp16 with subgroups,
 * shaders/paged-decode-workgroup.wgsl otherwise, + merge) through Dawn, against float64 references (the two
 * checks of test/decode-checks.ts). The matrix kernel: test/paged-decode-matrix.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { KvConfigError, PagedKvCache } from '../src/cache/paged-kv-cache';
import { decodeKernelKind, lanesPerToken, subgroupDecodeConstants } from '../src/kernels/paged-decode';
import { wgslU32Constants } from '../src/kernels/pipeline-cache';
import { autoTokensPerStep, autoWorkgroupSize, headsForGrid, INT4_SMALL_WORKGROUPS_FROM, resolveTuning } from '../src/kernels/decode-tuning';
import { cacheLayout, defaultHadamardBlock, type KvMethod } from '../src/layout';
import { maxAbsError } from '../src/reference/metrics';
import { ATTENTION_F32_TOL, expectDecodeMatchesReferences, maxAbs } from './decode-checks';
import { subgroupTestGpu, testGpu } from './gpu-harness';
import { gpuDecodedRows, referenceOverGpuCache, runKernelCase, type KernelCase } from './kernel-case';

interface Case extends KernelCase {
  subgroups: boolean;
}

function label(c: Case): string {
  const k = c.config;
  const t = c.tuning;
  const tuning = t ? ` lanes=${t.lanesPerToken ?? 'auto'} step=${t.tokensPerStep ?? '-'} wg=${t.workgroupSize ?? '-'} heads/wg≤${t.maxHeadsPerWorkgroup ?? '-'}${t.queryInWorkgroup ? ' q in workgroup memory' : ''}` : '';
  return `${k.method}${k.method === 'int4-hadamard' ? `-B${k.hadamardBlock ?? defaultHadamardBlock(k.headDim)}${k.rotateV ? '-KV' : ''}${k.hadamardSignSeed !== undefined ? '-signs' : ''}` : ''} D=${k.headDim} Hq/Hkv=${k.numQueryHeads}/${k.numKvHeads} P=${k.pageSize} lens=${c.contextLens.length > 6 ? `${c.contextLens.length} seqs` : c.contextLens.join(',')} splits=${c.numSplits ?? 'auto'} ${c.subgroups ? 'subgroups' : 'workgroup-reduce'}${tuning}`;
}

const GRID: Case[] = [
  // method × head_dim × page size × GQA ratio, ragged lengths including 1 and non-multiples of P
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 4, numKvHeads: 4, pageSize: 8 }, contextLens: [1, 9, 23], seed: 1, subgroups: true },
  { config: { method: 'fp16', headDim: 128, numQueryHeads: 8, numKvHeads: 2, pageSize: 16 }, contextLens: [17, 130], seed: 2, subgroups: false },
  { config: { method: 'fp16', headDim: 256, numQueryHeads: 8, numKvHeads: 1, pageSize: 32 }, contextLens: [5, 300], seed: 3, subgroups: true, numSplits: 3 },
  { config: { method: 'int4', headDim: 64, numQueryHeads: 8, numKvHeads: 1, pageSize: 8 }, contextLens: [1, 2, 129], seed: 4, subgroups: true },
  { config: { method: 'int4', headDim: 128, numQueryHeads: 4, numKvHeads: 1, pageSize: 16 }, contextLens: [33, 7], seed: 5, subgroups: false, outlierScale: 15 },
  { config: { method: 'int4', headDim: 256, numQueryHeads: 4, numKvHeads: 2, pageSize: 32 }, contextLens: [70], seed: 6, subgroups: true },
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 4, numKvHeads: 1, pageSize: 8, hadamardBlock: 16 }, contextLens: [1, 12, 40], seed: 7, subgroups: true, outlierScale: 15 },
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 2, numKvHeads: 2, pageSize: 16, hadamardBlock: 64, rotateV: true }, contextLens: [8, 31], seed: 8, subgroups: false },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 8, numKvHeads: 1, pageSize: 16, hadamardBlock: 128 }, contextLens: [3, 257], seed: 9, subgroups: true, numSplits: 2 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 32, numKvHeads: 4, pageSize: 32, hadamardBlock: 32, rotateV: true, hadamardSignSeed: 5 }, contextLens: [45, 1], seed: 10, subgroups: false },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 4, numKvHeads: 4, pageSize: 128, hadamardBlock: 64, rotateV: true }, contextLens: [200, 129], seed: 11, subgroups: true, numSplits: 2 },
  { config: { method: 'int4-hadamard', headDim: 256, numQueryHeads: 8, numKvHeads: 2, pageSize: 8, hadamardBlock: 128, rotateV: true, hadamardSignSeed: 9 }, contextLens: [19, 64], seed: 12, subgroups: false },
  { config: { method: 'int4-hadamard', headDim: 256, numQueryHeads: 4, numKvHeads: 1, pageSize: 16, hadamardBlock: 16 }, contextLens: [100], seed: 13, subgroups: true, numSplits: 1 },
  // MQA (32 query heads on one kv head: 4 head groups per kv head)
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 32, numKvHeads: 1, pageSize: 16, hadamardBlock: 64 }, contextLens: [50], seed: 14, subgroups: true },
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 32, numKvHeads: 1, pageSize: 16 }, contextLens: [50], seed: 15, subgroups: false },
  // many sequences (batch 256), short ragged lengths
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 4, numKvHeads: 1, pageSize: 8, hadamardBlock: 64, rotateV: true }, contextLens: Array.from({ length: 256 }, (_, i) => 1 + ((i * 7) % 19)), seed: 16, subgroups: true },
  // long context through split-K (automatic split choice), both reduction paths
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 1, numKvHeads: 1, pageSize: 16, hadamardBlock: 64 }, contextLens: [4099], seed: 17, subgroups: true },
  { config: { method: 'int4', headDim: 64, numQueryHeads: 1, numKvHeads: 1, pageSize: 16 }, contextLens: [3000, 77], seed: 18, subgroups: false },
  // the longest context the kernels promise (32k), next to a one-token sequence
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 2, numKvHeads: 1, pageSize: 64, hadamardBlock: 64, rotateV: true }, contextLens: [32768, 1], seed: 19, subgroups: true },
  // more splits than the merge kernel's workgroup keeps weights for (200 > 128): the rest recomputed from their (max, sum)
  { config: { method: 'int4', headDim: 64, numQueryHeads: 2, numKvHeads: 1, pageSize: 16 }, contextLens: [25000, 300], seed: 20, subgroups: true, numSplits: 200 },
  // extra methods: token-wise INT8 (lib/kv-format-int8.wgsl), INT4 with a scale/min per 32 channels (lib/kv-format-int4-g32.wgsl)
  { config: { method: 'int8', headDim: 64, numQueryHeads: 8, numKvHeads: 1, pageSize: 8 }, contextLens: [1, 2, 129], seed: 31, subgroups: true },
  { config: { method: 'int8', headDim: 128, numQueryHeads: 4, numKvHeads: 1, pageSize: 16 }, contextLens: [33, 7], seed: 32, subgroups: false, outlierScale: 15 },
  { config: { method: 'int8', headDim: 256, numQueryHeads: 4, numKvHeads: 2, pageSize: 32 }, contextLens: [70, 300], seed: 33, subgroups: true, numSplits: 3 },
  { config: { method: 'int8', headDim: 64, numQueryHeads: 1, numKvHeads: 1, pageSize: 16 }, contextLens: [3000, 77], seed: 34, subgroups: false },
  { config: { method: 'int4-g32', headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 8 }, contextLens: [1, 12, 40], seed: 35, subgroups: true, outlierScale: 15 },
  { config: { method: 'int4-g32', headDim: 128, numQueryHeads: 32, numKvHeads: 4, pageSize: 32 }, contextLens: [45, 1], seed: 36, subgroups: false },
  { config: { method: 'int4-g32', headDim: 256, numQueryHeads: 8, numKvHeads: 2, pageSize: 16 }, contextLens: [19, 300], seed: 37, subgroups: true, numSplits: 2 },
  { config: { method: 'int4-g32', headDim: 128, numQueryHeads: 4, numKvHeads: 1, pageSize: 128 }, contextLens: [2100], seed: 38, subgroups: false },
  // subgroup-kernel tunings: lanes per token 1/2/4 (a token's lanes always fit the smallest subgroup),
  // tokens per step 1..8 (halved until it divides the page: P=12 → 4, P=9 → 1), workgroups of
  // 64..256 (16 subgroups of 4 on SwiftShader: the cross-subgroup merge takes two passes), 1..4 heads
  { config: { method: 'int4', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16 }, contextLens: [1, 77, 515], seed: 41, subgroups: true, tuning: { lanesPerToken: 1, tokensPerStep: 1, workgroupSize: 64, maxHeadsPerWorkgroup: 1 } },
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 12 }, contextLens: [5, 40, 100], seed: 42, subgroups: true, tuning: { lanesPerToken: 2, tokensPerStep: 8, workgroupSize: 256, maxHeadsPerWorkgroup: 4, splitHeadsBelowWorkgroups: 0 } },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 8, numKvHeads: 2, pageSize: 9, hadamardBlock: 64, rotateV: true }, contextLens: [10, 300], seed: 43, subgroups: true, numSplits: 3, tuning: { lanesPerToken: 4, tokensPerStep: 4, maxHeadsPerWorkgroup: 2, splitHeadsBelowWorkgroups: 0 } },
  { config: { method: 'int4', headDim: 256, numQueryHeads: 4, numKvHeads: 1, pageSize: 32 }, contextLens: [64, 1000], seed: 44, subgroups: true, tuning: { lanesPerToken: 2, tokensPerStep: 2, workgroupSize: 128, maxHeadsPerWorkgroup: 4, splitHeadsBelowWorkgroups: 0 } },
  { config: { method: 'fp16', headDim: 256, numQueryHeads: 8, numKvHeads: 8, pageSize: 16 }, contextLens: [33, 130], seed: 45, subgroups: true, tuning: { lanesPerToken: 1, tokensPerStep: 1, workgroupSize: 64 } },
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 4, numKvHeads: 1, pageSize: 8, hadamardBlock: 32 }, contextLens: [3, 4, 8, 9], seed: 46, subgroups: true, tuning: { lanesPerToken: 4, tokensPerStep: 8, workgroupSize: 64, maxHeadsPerWorkgroup: 4, splitHeadsBelowWorkgroups: 0 } },
  // the large-grid INT4 configuration (autoWorkgroupSize): 64 invocations, the GQA group of 4 per workgroup
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16 }, contextLens: [1, 200, 515], seed: 49, subgroups: true, tuning: { workgroupSize: 64, splitHeadsBelowWorkgroups: 0 } },
  // the queries in workgroup memory instead of registers (DecodeTuning.queryInWorkgroup)
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16 }, contextLens: [1, 200, 515], seed: 50, subgroups: true, tuning: { workgroupSize: 64, splitHeadsBelowWorkgroups: 0, queryInWorkgroup: 1 } },
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 12 }, contextLens: [5, 40, 100], seed: 51, subgroups: true, numSplits: 2, tuning: { lanesPerToken: 2, tokensPerStep: 8, workgroupSize: 256, maxHeadsPerWorkgroup: 4, splitHeadsBelowWorkgroups: 0, queryInWorkgroup: 1 } },
  { config: { method: 'int4', headDim: 256, numQueryHeads: 4, numKvHeads: 1, pageSize: 32 }, contextLens: [64, 1000], seed: 52, subgroups: true, tuning: { lanesPerToken: 2, queryInWorkgroup: 1 } },
  // head_dims that are multiples of 32 but not powers of two (Phi-3: 96): the write kernel takes fewer
  // rows per workgroup, the subgroup kernel fewer lanes per token, the workgroup kernel spare
  // invocations; the default Hadamard block is the largest power of two ≤ 128 dividing D
  { config: { method: 'int4-hadamard', headDim: 96, numQueryHeads: 12, numKvHeads: 3, pageSize: 16 }, contextLens: [50, 17], seed: 61, subgroups: true },
  { config: { method: 'int4', headDim: 160, numQueryHeads: 8, numKvHeads: 2, pageSize: 8 }, contextLens: [1, 70], seed: 62, subgroups: false },
  { config: { method: 'int4-hadamard', headDim: 192, numQueryHeads: 8, numKvHeads: 2, pageSize: 16, rotateV: true }, contextLens: [33, 300], seed: 63, subgroups: false, numSplits: 2 },
  { config: { method: 'fp16', headDim: 224, numQueryHeads: 8, numKvHeads: 2, pageSize: 16 }, contextLens: [5, 130], seed: 64, subgroups: true },
  { config: { method: 'int8', headDim: 96, numQueryHeads: 4, numKvHeads: 1, pageSize: 16 }, contextLens: [40], seed: 65, subgroups: true },
  { config: { method: 'int4-g32', headDim: 224, numQueryHeads: 4, numKvHeads: 2, pageSize: 32 }, contextLens: [9, 77], seed: 66, subgroups: false },
  // one split with V rotated: the subgroup kernel rotates V back itself (no merge kernel)
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 8, numKvHeads: 2, pageSize: 16, hadamardBlock: 128, rotateV: true, hadamardSignSeed: 3 }, contextLens: [90, 5], seed: 47, subgroups: true, numSplits: 1 },
  { config: { method: 'int4-hadamard', headDim: 256, numQueryHeads: 4, numKvHeads: 2, pageSize: 32, hadamardBlock: 64, rotateV: true }, contextLens: [33], seed: 48, subgroups: true, numSplits: 1, tuning: { maxHeadsPerWorkgroup: 1 } },
];

describe('paged decode attention vs float64 references', () => {
  for (const c of GRID) {
    it(label(c), async () => {
      const ctx = c.subgroups ? await subgroupTestGpu() : await testGpu({ disableFeatures: ['subgroups'] });
      expect(ctx.features.subgroups).toBe(c.subgroups);
      const run = await runKernelCase(ctx, c);
      try {
        expectDecodeMatchesReferences(run, c);
      } finally {
        run.cache.destroy();
      }
    });
  }

  it('int4 and fp16 run the subgroup kernel where subgroups exist; other formats and no subgroups run the workgroup kernel', async () => {
    const ctx = await subgroupTestGpu();
    const shape = (method: KvMethod, useSubgroups: boolean) => ({ layout: cacheLayout({ method, headDim: 128, numKvHeads: 8, pageSize: 16, numPages: 4 }), useSubgroups });
    for (const method of ['fp16', 'int4', 'int4-hadamard'] as const) {
      expect(decodeKernelKind(shape(method, true))).toBe('subgroup');
      expect(decodeKernelKind(shape(method, false))).toBe('workgroup');
    }
    for (const method of ['int8', 'int4-g32'] as const) expect(decodeKernelKind(shape(method, true))).toBe('workgroup');
    expect(ctx.features.subgroups).toBe(true);
  });

  it('the default Hadamard block is the largest power of two ≤ 128 dividing head_dim', () => {
    expect([32, 64, 96, 128, 160, 192, 224, 256].map(defaultHadamardBlock)).toEqual([32, 64, 32, 128, 32, 64, 32, 128]);
  });

  it('the subgroup kernel takes a power of two of lanes per token, within the smallest subgroup, each lane whole chunks (every head_dim, GQA, subgroup size)', () => {
    const tuning = resolveTuning({}, 'subgroup');
    for (const method of ['fp16', 'int4', 'int4-hadamard'] as const) {
      for (let headDim = 32; headDim <= 256; headDim += 32) {
        for (const [numQueryHeads, numKvHeads] of [[1, 1], [4, 1], [8, 2], [32, 8], [32, 32]]) {
          for (const subgroupMinSize of [4, 8, 16, 32, 64, 128]) {
            const layout = cacheLayout({ method, headDim, numKvHeads, pageSize: 16, numPages: 4 });
            const what = `${method} D=${headDim} ${numQueryHeads}/${numKvHeads} subgroup ≥ ${subgroupMinSize}`;
            const lanes = lanesPerToken({ layout, subgroupMinSize, numQueryHeads }, tuning);
            // head_dim 96 with a GQA group used to get 6 lanes: slots and shuffles then crossed tokens
            expect(lanes & (lanes - 1), what).toBe(0);
            expect(lanes, what).toBeLessThanOrEqual(subgroupMinSize);
            expect((headDim / lanes) % 8, what).toBe(0);
            // the kernel's constants are u32 for every rotation, fused or not
            for (const rotateQ of method === 'int4-hadamard' ? [true, false] : [false]) {
              for (const fusedStep of [false, true]) {
                const shape = { layout, numQueryHeads, hadamardBlock: defaultHadamardBlock(headDim), rotateQ, rotateOut: false, randomSigns: false, useSubgroups: true, subgroupMinSize, fusedStep };
                expect(() => wgslU32Constants(subgroupDecodeConstants(shape)), what).not.toThrow();
              }
            }
          }
        }
      }
    }
  });

  it('rejects decode tunings the kernels cannot run, with what would', async () => {
    expect(() => resolveTuning({ tokensPerStep: 3 }, 'subgroup')).toThrow(/tokensPerStep must be 0 \(automatic\), 1, 2, 4 or 8/);
    expect(() => resolveTuning({ lanesPerToken: 6 }, 'subgroup')).toThrow(/power of two/);
    expect(() => resolveTuning({ workgroupSize: 96 }, 'subgroup')).toThrow(/one of 64, 128, 256 for the subgroup kernel/);
    expect(() => resolveTuning({ tileTokens: 24 }, 'matrix')).toThrow(/tileTokens must be 0 \(automatic\), 8, 16, 32 or 64/);
    expect(() => resolveTuning({ matrixTokenLanes: 12 }, 'matrix')).toThrow(/matrixTokenLanes must be 0 \(automatic\) or a power of two/);
    expect(() => resolveTuning({ queryInWorkgroup: 2 }, 'subgroup')).toThrow(/queryInWorkgroup must be 0 \(queries in registers\) or 1/);
    const ctx = await subgroupTestGpu();
    const cache = await PagedKvCache.create(ctx, { method: 'int4', headDim: 128, numQueryHeads: 8, numKvHeads: 2, numPages: 2 });
    const seq = cache.createSequence();
    await cache.append([seq], [1], new Float32Array(2 * 128).fill(0.5), new Float32Array(2 * 128).fill(0.25));
    // 32 lanes would leave each lane 4 INT4 channels (the kernel loads ≥ 16 per lane)
    await expect(cache.attention([seq], new Float32Array(8 * 128), { tuning: { lanesPerToken: 32 } })).rejects.toThrow(/lanesPerToken 32 is too many: at most [48] here/);
    await expect(cache.attention([seq], new Float32Array(8 * 128), { tuning: { tokensPerStep: 5 } })).rejects.toBeInstanceOf(KvConfigError);
    cache.destroy();
  });

  it('small grids spread a GQA group over more workgroups before splitting the context; automatic tokens per step', async () => {
    const defaults = resolveTuning({}, 'subgroup');
    // Llama-3.1-8B heads (group 4, 8 kv heads): batch 1 → 8 workgroups with 4 heads, 32 with 1
    expect([1, 2, 4, 8, 64].map((batch) => headsForGrid(4, 128, batch, 8, defaults))).toEqual([1, 1, 2, 4, 4]);
    expect(headsForGrid(4, 128, 1, 8, { ...defaults, splitHeadsBelowWorkgroups: 0 })).toBe(4);
    // group 6 on one kv head: 6 heads (1 workgroup) → 3 (2) → 2 (3 workgroups, enough)
    expect(headsForGrid(6, 128, 1, 1, { maxHeadsPerWorkgroup: 8, splitHeadsBelowWorkgroups: 3 })).toBe(2);
    expect(headsForGrid(1, 128, 1, 1, defaults)).toBe(1);
    expect(resolveTuning({}, 'workgroup').splitHeadsBelowWorkgroups).toBe(0);

    // automatic tokens per step: 2 only for memory-bound FP16 grids (1 head per workgroup, ≥ 32 B of K
    // per lane, ≥ targetWorkgroups workgroups), else 4
    const layout = (method: KvMethod, headDim: number) => cacheLayout({ method, headDim, numKvHeads: 32, pageSize: 16, numPages: 4 });
    expect(autoTokensPerStep(layout('fp16', 128), 8, 1, 512, defaults)).toBe(2);
    expect(autoTokensPerStep(layout('fp16', 128), 8, 1, 32, defaults)).toBe(4); // small grid (batch 1)
    expect(autoTokensPerStep(layout('fp16', 128), 8, 4, 512, defaults)).toBe(4); // GQA group in the workgroup
    expect(autoTokensPerStep(layout('fp16', 64), 8, 1, 512, defaults)).toBe(4); // 16 B per lane
    expect(autoTokensPerStep(layout('int4', 128), 4, 1, 512, defaults)).toBe(4);
    expect(() => resolveTuning({ splitHeadsBelowWorkgroups: -1 }, 'subgroup')).toThrow(/splitHeadsBelowWorkgroups must be a non-negative integer/);

    const ctx = await subgroupTestGpu();
    const cache = await PagedKvCache.create(ctx, { method: 'int4-hadamard', headDim: 128, numQueryHeads: 32, numKvHeads: 8, numPages: 8 });
    const seq = cache.createSequence();
    await cache.append([seq], [20], new Float32Array(20 * 8 * 128).fill(0.5), new Float32Array(20 * 8 * 128).fill(0.25));
    const small = await cache.prepareAttention([seq]);
    const whole = await cache.prepareAttention([seq], { tuning: { splitHeadsBelowWorkgroups: 0 } });
    expect([small.headsPerWorkgroup, whole.headsPerWorkgroup]).toEqual([1, 4]);
    small.destroy();
    whole.destroy();
    cache.destroy();
  });

  it('INT4 grids of ≥ 512 workgroups of 4 heads take 64 invocations; smaller grids, FP16 and explicit tunings keep theirs', async () => {
    const layout = (method: KvMethod) => cacheLayout({ method, headDim: 128, numKvHeads: 8, pageSize: 16, numPages: 4 });
    expect(autoWorkgroupSize(layout('int4-hadamard'), 4, INT4_SMALL_WORKGROUPS_FROM, 128)).toBe(64);
    expect(autoWorkgroupSize(layout('int4'), 4, INT4_SMALL_WORKGROUPS_FROM - 1, 128)).toBe(128);
    expect(autoWorkgroupSize(layout('int4'), 2, 4 * INT4_SMALL_WORKGROUPS_FROM, 128)).toBe(128);
    expect(autoWorkgroupSize(layout('fp16'), 4, 4 * INT4_SMALL_WORKGROUPS_FROM, 128)).toBe(128);

    // through the plan: Llama-3.1-8B heads, 8 kv heads × 4 heads per workgroup, one token per sequence
    const ctx = await subgroupTestGpu();
    for (const method of ['int4-hadamard', 'fp16'] as const) {
      const cache = await PagedKvCache.create(ctx, { method, headDim: 128, numQueryHeads: 32, numKvHeads: 8, numPages: 64 });
      const seqs = Array.from({ length: 64 }, () => cache.createSequence());
      await cache.append(seqs, seqs.map(() => 1), new Float32Array(64 * 8 * 128).fill(0.5), new Float32Array(64 * 8 * 128).fill(0.25));
      const sizes = [cache.planAttention(seqs), cache.planAttention(seqs.slice(0, 32)), cache.planAttention(seqs, { tuning: { workgroupSize: 128 } })]
        .map((plan) => [plan.kernel, plan.headsPerWorkgroup, plan.tuning.workgroupSize]);
      expect(sizes).toEqual(method === 'fp16' ? [['subgroup', 4, 128], ['subgroup', 4, 128], ['subgroup', 4, 128]] : [['subgroup', 4, 64], ['subgroup', 4, 128], ['subgroup', 4, 128]]);
      cache.destroy();
    }
  });

  it('a corrupted output fails the attention check (the tolerance bites)', async () => {
    const ctx = await testGpu();
    const run = await runKernelCase(ctx, GRID[6]);
    const overCache = referenceOverGpuCache(run);
    const tol = ATTENTION_F32_TOL * maxAbs(gpuDecodedRows(run, false));
    expect(maxAbsError(run.out, overCache).value).toBeLessThanOrEqual(tol);
    // Off by one quantization step of one V element in one output: far below INT4's own error.
    run.out[17] += 0.01;
    expect(maxAbsError(run.out, overCache).value).toBeGreaterThan(tol);
    run.cache.destroy();
  });

  it('a corrupted output fails the INT8 and int4-g32 checks too', async () => {
    const ctx = await testGpu();
    for (const c of [GRID.find((g) => g.config.method === 'int8')!, GRID.find((g) => g.config.method === 'int4-g32')!]) {
      const run = await runKernelCase(ctx, c);
      const overCache = referenceOverGpuCache(run);
      const tol = ATTENTION_F32_TOL * maxAbs(gpuDecodedRows(run, false));
      expect(maxAbsError(run.out, overCache).value).toBeLessThanOrEqual(tol);
      run.out[3] += 0.01;
      expect(maxAbsError(run.out, overCache).value, c.config.method).toBeGreaterThan(tol);
      run.cache.destroy();
    }
  });

  it('NaN in one token of one (sequence, kv head), written past append\'s check, leaves every other sequence and kv head unchanged', async () => {
    const ctx = await testGpu();
    const base: KernelCase = { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 4, numKvHeads: 2, pageSize: 8, hadamardBlock: 64, rotateV: true }, contextLens: [20, 13], seed: 21 };
    const clean = await runKernelCase(ctx, base);
    const dirty = await runKernelCase(ctx, { ...base, poison: { token: 20 + 4, kvHead: 1 } });
    const d = 64;
    for (let s = 0; s < 2; s++) {
      for (let h = 0; h < 4; h++) {
        const slice = (x: Float32Array) => Array.from(x.subarray((s * 4 + h) * d, (s * 4 + h + 1) * d));
        if (s === 1 && h >= 2) expect(slice(dirty.out).some(Number.isNaN)).toBe(true); // heads 2, 3 read kv head 1
        else expect(slice(dirty.out), `sequence ${s} head ${h}`).toEqual(slice(clean.out));
      }
    }
    clean.cache.destroy();
    dirty.cache.destroy();
  });
  it('words no live token owns (NaN in every unused slot of every page) never reach an output', async () => {
    const ctx = await subgroupTestGpu();
    for (const [method, decodeStep] of [['fp16', undefined], ['fp16', 'fused'], ['int4', undefined], ['int4-hadamard', 'fused']] as const) {
      // short sequences beside a long one: most token slots of their first steps lie past their context
      const base: KernelCase = { config: { method, headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 8 }, contextLens: [3, 45, 9, 1], seed: 22, decodeStep };
      const clean = await runKernelCase(ctx, base);
      const dirty = await runKernelCase(ctx, { ...base, nanPools: true });
      expect(clean.cache.planAttention(clean.seqIds).kernel).toBe('subgroup');
      expect(clean.out.every(Number.isFinite)).toBe(true);
      expect(Array.from(dirty.out), `${method} ${decodeStep ?? 'attention'}`).toEqual(Array.from(clean.out));
      clean.cache.destroy();
      dirty.cache.destroy();
    }
  });
});

describe('int8 query (the -q8 methods) vs float64 references with the same int8 query', () => {
  const Q8_CASES: KernelCase[] = [
    { config: { method: 'int4', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16, queryInt8: true }, contextLens: [1, 77, 530], seed: 41, integerQueries: true },
    { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 64, numKvHeads: 8, pageSize: 16, hadamardSignSeed: 5, queryInt8: true }, contextLens: [40, 300], seed: 42, integerQueries: true, outlierScale: 15 },
    { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 8, numKvHeads: 1, pageSize: 8, rotateV: true, queryInt8: true }, contextLens: [1, 9, 129], seed: 43, integerQueries: true },
    { config: { method: 'int4-hadamard', headDim: 256, numQueryHeads: 8, numKvHeads: 2, pageSize: 32, queryInt8: true }, contextLens: [70, 300], seed: 44, integerQueries: true, numSplits: 3 },
    { config: { method: 'int4-hadamard', headDim: 96, numQueryHeads: 12, numKvHeads: 3, pageSize: 16, queryInt8: true }, contextLens: [50, 17], seed: 45, integerQueries: true },
    { config: { method: 'int4', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16, queryInt8: true }, contextLens: [300, 2], seed: 46, integerQueries: true, tuning: { workgroupSize: 64, splitHeadsBelowWorkgroups: 0 } },
  ];
  for (const c of Q8_CASES) {
    const { method, headDim, numQueryHeads, numKvHeads } = c.config;
    it(`${method}-q8 D=${headDim} Hq/Hkv=${numQueryHeads}/${numKvHeads} lens=${c.contextLens} splits=${c.numSplits ?? 'auto'}`, async () => {
      const ctx = await subgroupTestGpu();
      const run = await runKernelCase(ctx, c);
      try {
        expect(run.cache.planAttention(run.seqIds).variant.key).toMatch(/^paged-decode-subgroup-int4-q8(-merged)?\//);
        expectDecodeMatchesReferences(run, c);
        // the int8 query is really used: the f32-query output differs by far more than the tolerance
        const f32 = await runKernelCase(ctx, { ...c, config: { ...c.config, queryInt8: false } });
        expect(maxAbsError(run.out, f32.out).value).toBeGreaterThan(3 * ATTENTION_F32_TOL * maxAbs(gpuDecodedRows(run, false)));
        f32.cache.destroy();
      } finally {
        run.cache.destroy();
      }
    });
  }

  it('refuses what it cannot run, before any GPU work', async () => {
    const ctx = await subgroupTestGpu();
    await expect(PagedKvCache.create(ctx, { method: 'fp16', headDim: 64, numQueryHeads: 4, numKvHeads: 2, numPages: 4, queryInt8: true })).rejects.toThrow(/queryInt8 needs method int4 or int4-hadamard \(method is fp16\)/);
    const cache = await PagedKvCache.create(ctx, { method: 'int4', headDim: 64, numQueryHeads: 4, numKvHeads: 2, numPages: 4, queryInt8: true });
    const seq = cache.createSequence();
    await cache.append([seq], [3], new Float32Array(3 * 128), new Float32Array(3 * 128));
    expect(() => cache.planAttention([seq], { kernel: 'workgroup' })).toThrow(/an int8 query runs on the subgroup decode kernel, not the workgroup kernel/);
    expect(() => cache.planAttention([seq], { kernel: 'matrix' })).toThrow(KvConfigError);
    cache.destroy();
  });
});

describe('pools over several storage buffers (maxPagesPerBuffer forces the split into 3)', () => {
  const POOL_CASES: KernelCase[] = [
    { config: { method: 'int4', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16, maxPagesPerBuffer: 15 }, contextLens: [1, 77, 530], seed: 51 },
    { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 8, rotateV: true, hadamardSignSeed: 3, maxPagesPerBuffer: 10 }, contextLens: [9, 130, 41], seed: 52, numSplits: 3 },
    { config: { method: 'fp16', headDim: 96, numQueryHeads: 12, numKvHeads: 3, pageSize: 16, maxPagesPerBuffer: 8 }, contextLens: [50, 17, 200], seed: 53 },
    { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 16, numKvHeads: 4, pageSize: 16, queryInt8: true, maxPagesPerBuffer: 9 }, contextLens: [300, 33], seed: 54, integerQueries: true },
  ];
  for (const c of POOL_CASES) {
    it(`${c.config.method}${c.config.queryInt8 ? '-q8' : ''} D=${c.config.headDim} lens=${c.contextLens}, ≤ ${c.config.maxPagesPerBuffer} pages per buffer`, async () => {
      const ctx = await subgroupTestGpu();
      const run = await runKernelCase(ctx, c);
      try {
        expect(run.cache.pool.numBuffers).toBe(3); // SwiftShader binds 12 storage buffers per stage: 3 per pool at most
        expect(run.cache.kPool).toHaveLength(run.cache.pool.numBuffers);
        // a sequence's (shuffled) pages lie in several buffers
        const buffersOf = (seq: number) => new Set(Array.from(run.cache.allocator.blockTable(seq), (p) => Math.floor(p / run.cache.pool.pagesPerBuffer)));
        expect(Math.max(...run.seqIds.map((s) => buffersOf(s).size))).toBeGreaterThan(1);
        expect(run.cache.planAttention(run.seqIds).variant.key).toMatch(/\/pool\d+x\d+$/);
        expectDecodeMatchesReferences(run, c);
      } finally {
        run.cache.destroy();
      }
    });
  }

  it('a split pool is refused where no kernel reads it, with what fits', async () => {
    const ctx = await subgroupTestGpu();
    const base = { headDim: 64, numQueryHeads: 4, numKvHeads: 2, numPages: 8, maxPagesPerBuffer: 3 };
    await expect(PagedKvCache.create(ctx, { ...base, method: 'int8' })).rejects.toThrow(/needs 3 storage buffers .* read by the subgroup decode kernel .* only; at most \d+ pages fit one buffer/);
    const cache = await PagedKvCache.create(ctx, { ...base, method: 'int4' });
    const seq = cache.createSequence();
    await cache.append([seq], [3], new Float32Array(3 * 128), new Float32Array(3 * 128));
    expect(() => cache.planAttention([seq], { kernel: 'workgroup' })).toThrow(/a cache over several buffers is read by the subgroup decode kernel, not the workgroup kernel/);
    cache.destroy();
  });
});
