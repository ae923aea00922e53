/**
 * `simulate` budgets of tens of GiB per layer: the K and V pools spread over as many storage buffers
 * as the decode kernel can bind (src/serving/serving-cache.ts).
 *  - planning against fake device limits (an H200's 2 GiB bindings and 16 storage buffers per stage,
 *    a larger binding count, no subgroups, a software adapter's host memory): a 40 GiB budget is
 *    accepted where it fits and otherwise refused with "needs X, limit Y, try a budget ≤ Z", and Z fits;
 *  - the planner's rule is the cache's rule, on the real device, for every method with and without
 *    subgroups (a split pool is read by the subgroup kernel only);
 *  - a device that runs out of memory allocating the pools is reported as such (a fake device);
 *  - through the real kernels (SwiftShader in CI): a forced small per-buffer size spreads a sweep's
 *    pools over 3 buffers, through the library and the CLI.
 * (test/serving.test.ts checks the simulator's attention outputs on such a pool against float64.)
 */
import { describe, expect, it } from 'vitest';
import { PagedKvCache, KvConfigError } from '../src/cache/paged-kv-cache';
import { planSimulate, simulateCommand } from '../src/cli/simulate-command';
import type { GpuContext } from '../src/gpu/gpu-context';
import { ALL_KV_METHODS, KV_METHODS, type KvMethod } from '../src/layout';
import { regimeRequests } from '../src/serving/requests';
import {
  createServingCache, maxPoolBuffers, planServingPool, poolDeviceLimits, poolOutOfMemoryError, readsSplitPool, servingPageBytes, type PoolDeviceLimits,
} from '../src/serving/serving-cache';
import { formatSimulateReport } from '../src/serving/simulate-report';
import { checkSweepOnDevice, runSimulateSweep, type SimulateSweepOptions } from '../src/serving/simulate-sweep';
import { LLAMA_3_1_8B, type ModelShape } from '../src/serving/simulator';
import { testGpu } from './gpu-harness';
import { thrown } from './thrown';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** What the H200 reports through Dawn (docs/benchmarks.md): 2 GiB bindings, 16 storage buffers per stage. */
const H200: PoolDeviceLimits = { maxBufferSize: 128 * GiB, maxStorageBufferBindingSize: 2 * GiB, maxStorageBuffersPerShaderStage: 16, subgroups: true };
/** The same with 32 storage buffers per stage: 13 buffers per pool. */
const WIDE: PoolDeviceLimits = { ...H200, maxStorageBuffersPerShaderStage: 32 };
const BUDGET_40_GIB = 40 * GiB;

/** The budget a "try a budget ≤ N MiB" message suggests, in bytes. */
function suggestedBudget(message: string): number {
  const match = /try a budget ≤ ([\d.]+) MiB/.exec(message);
  if (!match) throw new Error(`no "try a budget ≤ N MiB" in: ${message}`);
  return Number(match[1]) * MiB;
}

const llama = (method: KvMethod, budgetBytes: number) => ({ model: LLAMA_3_1_8B, method, budgetBytes, pageSize: 16, hadamardBlock: 128 });

describe('a budget of tens of GiB per layer, planned against device limits (no GPU)', () => {
  it('one pool spans ⌊(storage buffers per stage − 8) / 2⌋ + 1 buffers: 5 on the H200, 13 with 32 per stage, 1 at the WebGPU default of 8', () => {
    expect(maxPoolBuffers(H200)).toBe(5);
    expect(maxPoolBuffers(WIDE)).toBe(13);
    expect(maxPoolBuffers({ maxStorageBuffersPerShaderStage: 8 })).toBe(1);
    expect(maxPoolBuffers({ maxStorageBuffersPerShaderStage: 12 })).toBe(3); // SwiftShader
  });

  it('40 GiB of FP16 for Llama-3.1-8B: 10 buffers of 2 GiB per pool, where the device binds 13', () => {
    const plan = planServingPool(WIDE, llama('fp16', BUDGET_40_GIB));
    const pageBytes = servingPageBytes(llama('fp16', 0)); // 16 tokens × 8 heads × 128 × 2 B, K and V
    expect(pageBytes).toBe(64 * 1024);
    expect(plan).toMatchObject({ numPages: BUDGET_40_GIB / pageBytes, pageBytes, poolBytes: BUDGET_40_GIB, split: { numBuffers: 10, pagesPerBuffer: (2 * GiB) / (32 * 1024) }, maxBuffers: 13 });
    expect(plan.maxPages * pageBytes).toBe(13 * 2 * 2 * GiB);
    // Every method of the paper fits 40 GiB there (INT4's 8.5 KiB pages do not divide 2 GiB: 11 buffers).
    for (const method of KV_METHODS) {
      const p = planServingPool(WIDE, llama(method, BUDGET_40_GIB));
      expect(p.poolBytes, method).toBeLessThanOrEqual(BUDGET_40_GIB);
      expect(p.split.numBuffers, method).toBe(method === 'fp16' ? 10 : 11);
      expect(p.split.numBuffers * p.split.pagesPerBuffer, method).toBeGreaterThanOrEqual(p.numPages);
    }
  });

  it('40 GiB on the H200 is refused: needs 10 buffers per pool, limit 5, try a budget ≤ 20 GiB, and that budget plans', () => {
    const err = thrown(() => planServingPool(H200, llama('fp16', BUDGET_40_GIB)));
    expect(err).toBeInstanceOf(KvConfigError);
    expect(err.message).toBe(
      'a KV budget of 40.00 GiB (655360 fp16 pages) needs a K pool of 20.00 GiB (and as much for V) over 10 storage buffers of ≤ 2.00 GiB (maxStorageBufferBindingSize); ' +
        'limit 5 buffers per pool (decode binds 8 storage buffers + 2 per extra pool buffer, this device at most 16 per shader stage); try a budget ≤ 20480 MiB (20.00 GiB)',
    );
    const fits = suggestedBudget(err.message);
    expect(planServingPool(H200, llama('fp16', fits)).split).toEqual({ numBuffers: 5, pagesPerBuffer: 65536 });
    expect(() => planServingPool(H200, llama('fp16', fits + 64 * 1024))).toThrow(/limit 5 buffers per pool/);
    // INT4's pages are 3.76× smaller: its suggestion is in pages of its own size, and fits as well.
    const int4 = thrown(() => planServingPool(H200, llama('int4-hadamard', BUDGET_40_GIB)));
    expect(int4.message).toMatch(/needs a K pool of 20\.00 GiB .* over 11 storage buffers .* limit 5 buffers per pool/);
    expect(planServingPool(H200, llama('int4-hadamard', suggestedBudget(int4.message))).split.numBuffers).toBe(5);
  });

  it('without subgroups a pool is one buffer (only the subgroup kernel reads a split pool): 40 GiB refused, try ≤ 4 GiB', () => {
    const err = thrown(() => planServingPool({ ...WIDE, subgroups: false }, llama('int4', BUDGET_40_GIB)));
    expect(err.message).toMatch(/needs a K pool of 20\.00 GiB \(and as much for V\) over 11 storage buffers of ≤ 2\.00 GiB \(maxStorageBufferBindingSize\); limit one buffer per pool: this device has no `subgroups` feature .* only the subgroup decode kernel reads a pool over several buffers; try a budget ≤ 4095\.99 MiB \(4\.00 GiB\)$/);
    expect(planServingPool({ ...WIDE, subgroups: false }, llama('int4', suggestedBudget(err.message))).split.numBuffers).toBe(1);
    // Methods whose decode kernel reads one buffer only say so, with subgroups or without.
    for (const method of ['int8', 'int4-g32'] as const) {
      expect(readsSplitPool(method, true)).toBe(false);
      expect(() => planServingPool(WIDE, llama(method, BUDGET_40_GIB))).toThrow(new RegExp(`limit one buffer per pool: the ${method} decode kernel reads a pool from one buffer only; try a budget ≤`));
    }
  });

  it("a software adapter's pools are bounded by the host memory it is given", () => {
    const memory = { bytes: 11 * GiB, source: 'test memory' };
    const err = thrown(() => planServingPool(WIDE, llama('fp16', BUDGET_40_GIB), memory));
    expect(err.message).toBe('a KV budget of 40.00 GiB (655360 fp16 pages) needs 40.00 GiB of K and V pools; limit 11.00 GiB (test memory); try a budget ≤ 11264 MiB (11.00 GiB)');
    expect(planServingPool(WIDE, llama('fp16', suggestedBudget(err.message)), memory).poolBytes).toBeLessThanOrEqual(memory.bytes);
  });

  it('a binding smaller than one page, and a forced per-buffer page count, are planned as the cache would', () => {
    const tiny: PoolDeviceLimits = { ...H200, maxStorageBufferBindingSize: 16 * 1024 };
    expect(() => planServingPool(tiny, llama('fp16', GiB))).toThrow(/one page of the K pool takes 32\.0 KiB, more than this device's maxStorageBufferBindingSize of 16\.0 KiB; try a smaller page size/);
    const forced = planServingPool(H200, { ...llama('fp16', 64 * 64 * 1024), maxPagesPerBuffer: 16 });
    expect(forced.split).toEqual({ numBuffers: 4, pagesPerBuffer: 16 });
    expect(() => planServingPool(H200, { ...llama('fp16', 96 * 64 * 1024), maxPagesPerBuffer: 16 })).toThrow(/over 6 storage buffers of ≤ 16 pages \(maxPagesPerBuffer\); limit 5 buffers per pool.*try a budget ≤ 5 MiB$/);
  });

  it('the CLI takes --budget-mib 40960 without a device; the device check refuses it on H200 limits before any allocation', () => {
    const plan = planSimulate(['--budget-mib', '40960', '--steps', '4', '--max-concurrency', '1,8']);
    expect(plan.sweep.budgetBytes).toBe(BUDGET_40_GIB);
    const fake = (limits: PoolDeviceLimits) => ({
      limits: { ...limits, maxComputeWorkgroupsPerDimension: 65535, maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 },
      features: { subgroups: limits.subgroups, 'shader-f16': false, 'timestamp-query': true, 'chromium-experimental-subgroup-matrix': false },
    }) as unknown as GpuContext;
    expect(() => checkSweepOnDevice(fake(H200), plan.sweep)).toThrow(/fp16 pages\) needs a K pool of 20\.00 GiB .* limit 5 buffers per pool .* try a budget ≤ 20480 MiB/);
    expect(() => checkSweepOnDevice(fake(WIDE), plan.sweep)).not.toThrow();
    expect(() => checkSweepOnDevice(fake(WIDE), { ...plan.sweep, poolMemory: { bytes: 8 * GiB, source: 'half the free host memory' } })).toThrow(/limit 8\.00 GiB \(half the free host memory\); try a budget ≤ 8192 MiB/);
  });

  it('a GPU out of memory while the pools are allocated: the pools, the cause, and a smaller budget', async () => {
    await testGpu(); // the WebGPU globals (GPUBufferUsage) the cache uses
    const plan = planServingPool(WIDE, llama('fp16', BUDGET_40_GIB));
    expect(poolOutOfMemoryError(llama('fp16', BUDGET_40_GIB), plan, 'creating the KV cache: GPU out of memory: fake').message).toBe(
      'a KV budget of 40.00 GiB needs 40.00 GiB of fp16 K and V pools (10 buffers each); the GPU ran out of memory allocating them (creating the KV cache: GPU out of memory: fake); ' +
        "limit: this device's free GPU memory, which WebGPU does not report; try a budget ≤ 20480 MiB (20.00 GiB) (half)",
    );
    // A device whose out-of-memory scope catches the allocation: createServingCache says the above.
    const created: { destroyed: boolean }[] = [];
    let pops = 0;
    const device = {
      pushErrorScope() {},
      popErrorScope: async () => (pops++ % 3 === 1 ? { message: 'fake allocation failure' } : null),
      createBuffer: () => {
        const b = { destroyed: false, destroy() { b.destroyed = true; } };
        created.push(b);
        return b;
      },
    };
    const ctx = {
      device,
      limits: { maxBufferSize: WIDE.maxBufferSize, maxStorageBufferBindingSize: WIDE.maxStorageBufferBindingSize, maxStorageBuffersPerShaderStage: 32, maxComputeWorkgroupsPerDimension: 65535 },
      features: { subgroups: true },
      lostReason: null,
    } as unknown as GpuContext;
    await expect(createServingCache(ctx, llama('fp16', BUDGET_40_GIB))).rejects.toThrow(/needs 40\.00 GiB of fp16 K and V pools \(10 buffers each\); the GPU ran out of memory allocating them \(creating the KV cache: GPU out of memory: fake allocation failure\).*try a budget ≤ 20480 MiB/);
    expect(created.length).toBe(20); // K and V, 10 buffers each, were asked for (and failed together)
  });
});

describe('the planner and the cache agree (real device)', () => {
  const model: ModelShape = { name: 'tiny', headDim: 64, numQueryHeads: 4, numKvHeads: 2, numLayers: 1 };
  for (const subgroups of [true, false]) {
    it(`every method ${subgroups ? 'with' : 'without'} subgroups: a pool over 2 buffers is planned iff the cache creates it, with the same split`, async () => {
      const ctx = subgroups ? await testGpu({ adapter: 'swiftshader' }) : await testGpu({ adapter: 'swiftshader', disableFeatures: ['subgroups'] });
      expect(ctx.features.subgroups).toBe(subgroups);
      for (const method of ALL_KV_METHODS) {
        const o = { model, method, budgetBytes: 8 * servingPageBytes({ model, method, pageSize: 8, hadamardBlock: 64 }), pageSize: 8, hadamardBlock: 64, maxPagesPerBuffer: 5 };
        let planned: ReturnType<typeof planServingPool> | Error;
        try {
          planned = planServingPool(poolDeviceLimits(ctx), o);
        } catch (err) {
          planned = err as Error;
        }
        const created = await createServingCache(ctx, o).catch((err: Error) => err);
        try {
          if (planned instanceof Error) {
            expect(created, `${method}: planner refused (${planned.message}), cache created`).toBeInstanceOf(Error);
            expect(readsSplitPool(method, subgroups)).toBe(false);
            // The cache's own refusal when asked directly (not through the planner) says the same thing.
            await expect(PagedKvCache.create(ctx, { method, headDim: 64, numQueryHeads: 4, numKvHeads: 2, pageSize: 8, numPages: 8, maxPagesPerBuffer: 5, ...(method === 'int4-hadamard' ? { hadamardBlock: 64 } : {}) }))
              .rejects.toThrow(/a pool over several buffers is read by the subgroup decode kernel/);
          } else {
            expect(created, method).toBeInstanceOf(PagedKvCache);
            expect((created as PagedKvCache).pool, method).toEqual(planned.split);
            expect(planned.split.numBuffers, method).toBe(2);
          }
        } finally {
          if (created instanceof PagedKvCache) created.destroy();
        }
      }
    });
  }
});

describe('a sweep whose pools span several buffers (real kernels)', () => {
  const TINY: ModelShape = { name: 'tiny', headDim: 64, numQueryHeads: 4, numKvHeads: 2, numLayers: 1 };
  const sweep: SimulateSweepOptions = {
    model: TINY,
    methods: ['fp16', 'int4-hadamard'],
    budgetBytes: 48 * 1024, // fp16: 12 pages of 8 tokens, int4: 42
    caps: [1, 4],
    maxSteps: 12,
    requests: regimeRequests('short', { count: 8, scale: 1 / 32 }),
    workload: 'regime short ×1/32',
    pageSize: 8,
    hadamardBlock: 64,
    prefillChunkTokens: 8,
    reservePages: 0,
    warmupSteps: 1,
    repeats: 2,
  };

  it('4 and 14 pages per buffer: 3 buffers per pool, every run finite, the report says so', async () => {
    const ctx = await testGpu();
    const fp16 = await runSimulateSweep(ctx, { ...sweep, methods: ['fp16'], maxPagesPerBuffer: 4 });
    const int4 = await runSimulateSweep(ctx, { ...sweep, methods: ['int4-hadamard'], maxPagesPerBuffer: 14 });
    for (const [result, pages] of [[fp16, 4], [int4, 14]] as const) {
      const m = result.methods[0];
      expect([m.poolBuffers, m.pagesPerBuffer], m.method).toEqual([3, pages]);
      for (const run of m.runs) {
        expect(run.summary.decodeTokens, `${m.method} cap ${run.cap}`).toBeGreaterThan(0);
        expect(run.summary.attentionNs).toBeGreaterThan(0);
        expect(run.steps.every((s) => s.usedPages <= m.numPages)).toBe(true);
      }
      expect(formatSimulateReport(result)).toMatch(new RegExp(`${m.method}\\s+\\d+\\s+\\d+\\s+[\\d.]+ KiB\\s+3 × ≤ ${pages} pages`));
      expect(result.notes.join(' ')).toMatch(/spread over several storage buffers .*3 buffers per pool/);
    }
  });

  it('one page per buffer needs more buffers than the device binds: refused before any allocation, and the suggestion runs', async () => {
    const ctx = await testGpu();
    const max = maxPoolBuffers(ctx.limits);
    const err = (await runSimulateSweep(ctx, { ...sweep, methods: ['int4'], maxPagesPerBuffer: 1 }).catch((e: Error) => e)) as Error;
    expect(err).toBeInstanceOf(KvConfigError);
    expect(err.message).toMatch(new RegExp(`needs a K pool of .* over 42 storage buffers of ≤ 1 pages \\(maxPagesPerBuffer\\); limit ${max} buffers per pool .*; try a budget ≤ [\\d.]+ MiB`));
    const fits = suggestedBudget(err.message);
    // Requests of 2 pages (12 tokens), so the few pages that fit hold one, its pages in different buffers.
    const requests = [0, 1].map((id) => ({ id, promptLen: 5, outputLen: 7, arrivalStep: 0 }));
    const result = await runSimulateSweep(ctx, { ...sweep, methods: ['int4'], caps: [1], maxSteps: 6, requests, budgetBytes: fits, maxPagesPerBuffer: 1 });
    expect(result.methods[0].poolBuffers).toBe(max);
    expect(result.methods[0].runs[0].summary.decodeTokens).toBeGreaterThan(0);
  });

  it('simulate --max-pages-per-buffer: exit 0 with the split in the table; too small a value: exit 2 naming the limit', async () => {
    const args = ['--head-dim', '64', '--query-heads', '4', '--kv-heads', '2', '--layers', '1', '--budget-mib', '0.05', '--page-size', '8', '--scale', '0.03125',
      '--max-concurrency', '1,4', '--steps', '8', '--repeats', '2', '--methods', 'int4', '--quiet'];
    const run = async (extra: string[]) => {
      const out = process.stdout.write.bind(process.stdout);
      const errw = process.stderr.write.bind(process.stderr);
      let stdout = '';
      let stderr = '';
      process.stdout.write = ((c: string) => ((stdout += c), true)) as typeof process.stdout.write;
      process.stderr.write = ((c: string) => ((stderr += c), true)) as typeof process.stderr.write;
      try {
        return { code: await simulateCommand.run([...args, ...extra], { gpu: () => testGpu() }), stdout, stderr };
      } finally {
        process.stdout.write = out;
        process.stderr.write = errw;
      }
    };
    const ok = await run(['--max-pages-per-buffer', '16']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/int4\s+45\s+144\s+50\.6 KiB\s+3 × ≤ 16 pages/);
    const bad = await run(['--max-pages-per-buffer', '5']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.split('\n')[0]).toMatch(/^simulate: a KV budget of 51\.2 KiB \(45 int4 pages\) needs a K pool of 25\.3 KiB \(and as much for V\) over 9 storage buffers of ≤ 5 pages \(maxPagesPerBuffer\); limit \d+ buffers per pool/);
    expect((await run(['--max-pages-per-buffer', '0'])).stderr).toMatch(/--max-pages-per-buffer "0": expected an integer ≥ 1/);
  });
});
