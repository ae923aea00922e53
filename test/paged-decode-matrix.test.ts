/**
 * The tensor-core decode kernel (shaders/paged-decode-matrix.wgsl) through Dawn, against the float64
 * references of test/decode-checks.ts, on every matrix step this machine can run:
 *  - software step, f32 tiles holding f16 values (SwiftShader: no shader-f16);
 *  - software step, f16 tiles (lavapipe, Mesa ≥ 25: shader-f16), when installed;
 *  - hardware step (subgroup matrices, tensor cores) when the default adapter has them; otherwise the
 *    suite says so in its output. The same grid passes there (run on an H200 through the device kit:
 *    docs/tuning.md).
 * The software step multiplies the same tiles with the same hi/lo split, so its agreement tests the
 * kernel's staging, softmax, rescaling, split-K and epilogue; only the MMA itself differs. The grid runs
 * the stream kernel (paged-decode-matrix.wgsl, each subgroup its own tiles); VARIANT_GRID adds other
 * stream counts and tile sizes, and the serial kernel (matrixSubgroups 0) while it stays selectable.
 * The hardware step's WGSL, which no CI adapter can run, is at least checked by Dawn's WGSL front end
 * (types, uniformity, the matrix builtins) on Dawn's null backend, which offers the matrix feature.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KvConfigError, PagedKvCache } from '../src/cache/paged-kv-cache';
import type { GpuContext } from '../src/gpu/gpu-context';
import { LAVAPIPE_ICD_CANDIDATES } from '../src/gpu/node-gpu';
import { decodeKernel, decodeKernelKind, matrixStep, type DecodeShape } from '../src/kernels/paged-decode';
import { matrixBuiltinsAsArguments, matrixDecodeWorkgroupBytes, usableMatrixConfigs, type MatrixConfig, type MatrixDecodeConstants } from '../src/kernels/paged-decode-matrix';
import { detectMatrixBuiltins } from '../src/gpu/gpu-context';
import { cacheLayout } from '../src/layout';
import { maxAbsError } from '../src/reference/metrics';
import { attentionTolerance, expectDecodeMatchesReferences } from './decode-checks';
import { testGpu } from './gpu-harness';
import { referenceOverGpuCache, runKernelCase, type KernelCase } from './kernel-case';

/** The H200's list (Dawn/Vulkan, driver 580), for the choices that do not need a device. */
const H200_CONFIGS: MatrixConfig[] = [
  ...[[16, 16, 16], [16, 8, 16], [16, 8, 8]].flatMap(([M, N, K]) => ['f16', 'f32'].map((resultComponentType) => ({ componentType: 'f16', resultComponentType, M, N, K }))),
  ...[[16, 16, 32], [16, 8, 32]].flatMap(([M, N, K]) => ['u8', 'i8'].map((componentType) => ({ componentType, resultComponentType: componentType === 'u8' ? 'u32' : 'i32', M, N, K }))),
];

// method × head_dim × page size × GQA ratio, ragged lengths (1, non-multiples of the page and the
// 16-token tile), shuffled pages (every case), rotate_v, random signs, forced and automatic splits
const GRID: KernelCase[] = [
  { config: { method: 'int4', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16 }, contextLens: [1, 77, 530], seed: 101 },
  { config: { method: 'int4', headDim: 64, numQueryHeads: 8, numKvHeads: 1, pageSize: 8 }, contextLens: [1, 9, 129], seed: 102, outlierScale: 15 },
  { config: { method: 'int4', headDim: 256, numQueryHeads: 8, numKvHeads: 2, pageSize: 32 }, contextLens: [70, 300], seed: 103, numSplits: 3 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 4, numKvHeads: 4, pageSize: 16, rotateV: true }, contextLens: [33, 7], seed: 104, numSplits: 1 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 64, numKvHeads: 8, pageSize: 16, hadamardBlock: 32, hadamardSignSeed: 5 }, contextLens: [40], seed: 105 },
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 32, numKvHeads: 1, pageSize: 128, rotateV: true, hadamardSignSeed: 7 }, contextLens: [1030, 5], seed: 106 },
  { config: { method: 'int4-hadamard', headDim: 256, numQueryHeads: 16, numKvHeads: 2, pageSize: 8, hadamardBlock: 128, rotateV: true }, contextLens: [19, 64], seed: 107, numSplits: 2 },
  { config: { method: 'fp16', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16 }, contextLens: [1, 77, 530], seed: 108 },
  { config: { method: 'fp16', headDim: 96, numQueryHeads: 12, numKvHeads: 3, pageSize: 16 }, contextLens: [50, 17], seed: 109 },
  { config: { method: 'fp16', headDim: 256, numQueryHeads: 8, numKvHeads: 8, pageSize: 32 }, contextLens: [33, 130], seed: 110, numSplits: 3 },
  { config: { method: 'int4-hadamard', headDim: 160, numQueryHeads: 20, numKvHeads: 5, pageSize: 16 }, contextLens: [3, 45], seed: 111 },
];

/** A grid case, and a part of the variant key it must run (e.g. '/s2/': two streams). */
/** variant: a part of the kernel key the case must run; slowMs: its time limit where SwiftShader compiles it slowly. */
type MatrixCase = KernelCase & { variant?: string; slowMs?: number };

/**
 * Stream counts (the most that fit: f32 tiles on SwiftShader hold fewer), 32-token tiles, a long
 * context with outlier keys (the reference maxima and P' factors move: Oᵀ rescaled mid-stream),
 * streams left empty by short sequences, and the serial kernel (matrixSubgroups 0).
 */
const VARIANT_GRID: MatrixCase[] = [
  { config: { method: 'int4', headDim: 32, numQueryHeads: 8, numKvHeads: 2, pageSize: 8 }, contextLens: [1, 70, 257], seed: 121, tuning: { matrixSubgroups: 4 }, variant: '/s4/' },
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 16, rotateV: true }, contextLens: [5, 150], seed: 122, tuning: { matrixSubgroups: 1, tileTokens: 32 }, variant: 'm16x8x16t32' },
  { config: { method: 'int4', headDim: 64, numQueryHeads: 4, numKvHeads: 1, pageSize: 16 }, contextLens: [2000, 3], seed: 123, outlierScale: 15, numSplits: 1, tuning: { matrixSubgroups: 2 }, variant: '/s2/' },
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 8, numKvHeads: 1, pageSize: 32 }, contextLens: [9, 300], seed: 124, numSplits: 2, tuning: { matrixSubgroups: 8 } },
  { config: { method: 'int4', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16 }, contextLens: [1, 77, 530], seed: 125, tuning: { matrixSubgroups: 0 }, variant: '/serial/' },
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 8, numKvHeads: 2, pageSize: 8 }, contextLens: [40, 3], seed: 126, tuning: { matrixSubgroups: 0 }, variant: '/serial/' },
  // the softmax's head groups (lanes of a subgroup on different heads, as subgroups of 32 run 16-token
  // tiles): 2 lanes per group (2 groups of 2 heads on SwiftShader's subgroups of 4, 4 of 1 on lavapipe's
  // 8), and an idle head slot (3 heads per workgroup, 2 per lane on subgroups of 4). SwiftShader takes
  // ~160 s for each (its subgroup shuffles), so they run there only.
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 8, numKvHeads: 2, pageSize: 16 }, contextLens: [1, 77, 300], seed: 127, outlierScale: 15, tuning: { matrixSubgroups: 2, matrixTokenLanes: 2 }, variant: '/l2/', slowMs: 480_000 },
  { config: { method: 'int4', headDim: 64, numQueryHeads: 6, numKvHeads: 2, pageSize: 8 }, contextLens: [5, 40], seed: 128, numSplits: 2, tuning: { matrixSubgroups: 1, matrixTokenLanes: 2 }, variant: '/s1/l2/', slowMs: 480_000 },
];

function label(c: MatrixCase): string {
  const k = c.config;
  const t = c.tuning;
  const tuning = t ? ` subgroups=${t.matrixSubgroups ?? 'auto'}${t.tileTokens ? ` tile=${t.tileTokens}` : ''}${t.matrixTokenLanes ? ` token-lanes=${t.matrixTokenLanes}` : ''}` : '';
  return `${k.method}${k.rotateV ? '-KV' : ''}${k.hadamardSignSeed !== undefined ? '-signs' : ''} D=${k.headDim} Hq/Hkv=${k.numQueryHeads}/${k.numKvHeads} P=${k.pageSize} lens=${c.contextLens.join(',')} splits=${c.numSplits ?? 'auto'}${tuning}`;
}

/** lavapipe compiles the kernel slowly (~10–40 s per variant): a third of the grid there (two streams at D 128 with f16 tiles). */
const LAVAPIPE_GRID: MatrixCase[] = [{ ...GRID[0], variant: '/s2/' }, GRID[3], GRID[5], GRID[8], VARIANT_GRID[0]];

/** Runs `grid` with the matrix kernel on `ctx`, expecting `step` and tiles of `tileScalar`. */
function gridSuite(name: string, open: () => Promise<GpuContext>, step: 'hardware' | 'software', tileScalar: 'f16' | 'f32', grid: MatrixCase[] = GRID) {
  describe(`matrix decode kernel, ${name}`, () => {
    for (const c of grid) {
      it(label(c), async () => {
        const ctx = await open();
        const run = await runKernelCase(ctx, { ...c, kernel: 'matrix' });
        try {
          const prepared = await run.cache.prepareAttention(run.seqIds, { kernel: 'matrix', tuning: c.tuning, numSplits: c.numSplits });
          expect(prepared.kernel).toBe('matrix');
          expect(prepared.kernelDetail).toContain(`-${step}-${tileScalar}/`);
          // the stream kernel unless the case asks for the serial one (every test adapter has subgroups of one size)
          expect(prepared.kernelDetail).toContain(c.variant ?? '/s');
          prepared.destroy();
          expectDecodeMatchesReferences(run, c);
        } finally {
          run.cache.destroy();
        }
      }, c.slowMs);
    }
  });
}

gridSuite('software step, f32 tiles (SwiftShader)', () => testGpu({ adapter: 'swiftshader' }), 'software', 'f32', [...GRID, ...VARIANT_GRID]);

const lavapipeInstalled = LAVAPIPE_ICD_CANDIDATES.some((path) => existsSync(path));
if (lavapipeInstalled) {
  gridSuite('software step, f16 tiles (lavapipe)', () => testGpu({ adapter: 'lavapipe' }), 'software', 'f16', LAVAPIPE_GRID);
} else {
  describe('matrix decode kernel, software step with f16 tiles', () => {
    it.skip('not run: lavapipe (Mesa ≥ 25) is not installed; scripts/install-debian-deps.sh installs it', () => {});
  });
}

// The hardware step where this machine has tensor cores through WebGPU; named as not run otherwise.
const hardware = await testGpu();
const hasMatrices = hardware.features['chromium-experimental-subgroup-matrix'] && hardware.features['shader-f16'];
if (hasMatrices) {
  gridSuite(`hardware step (${hardware.adapterInfo.description})`, () => testGpu(), 'hardware', 'f16');
} else {
  describe('matrix decode kernel, hardware step (tensor cores)', () => {
    it.skip(`not run on this machine: ${hardware.adapterInfo.description || 'this adapter'} has no chromium-experimental-subgroup-matrix + shader-f16`, () => {});
  });
}

describe('matrix decode kernel: choices and refusals', () => {
  const layout = (method: 'int4' | 'fp16' | 'int8', headDim = 128) => cacheLayout({ method, headDim, numKvHeads: 8, pageSize: 16, numPages: 4 });
  const shape = (method: 'int4' | 'fp16' | 'int8', matrix?: { configs: MatrixConfig[]; shaderF16: boolean }) => ({
    layout: layout(method), numQueryHeads: 32, hadamardBlock: 1, rotateQ: false, rotateOut: false, randomSigns: false,
    useSubgroups: true, subgroupMaxSize: 32, matrix, kernel: 'matrix' as const,
  });

  it('takes f16→f32 configurations from the adapter list, fewest padded columns first, never assumed', () => {
    expect(usableMatrixConfigs(H200_CONFIGS, 4, 128).map((c) => `${c.M}x${c.N}x${c.K}`)).toEqual(['16x8x16', '16x8x8', '16x16x16']);
    expect(usableMatrixConfigs(H200_CONFIGS, 12, 128).map((c) => `${c.M}x${c.N}x${c.K}`)).toEqual(['16x16x16']);
    expect(usableMatrixConfigs(H200_CONFIGS.filter((c) => c.componentType !== 'f16'), 4, 128)).toEqual([]);
    expect(usableMatrixConfigs([{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 16 }], 4, 200)).toEqual([]); // 200 % 16 ≠ 0
  });

  it('runs on matrix hardware only with an f16→f32 configuration and shader-f16; otherwise in software', () => {
    expect(matrixStep(shape('int4', { configs: H200_CONFIGS, shaderF16: true }))).toBe('hardware');
    expect(matrixStep(shape('int4', { configs: H200_CONFIGS, shaderF16: false }))).toBe('software');
    expect(matrixStep(shape('int4', { configs: [], shaderF16: true }))).toBe('software');
    expect(matrixStep(shape('int4'))).toBe('software');
    const key = decodeKernel(shape('int4', { configs: H200_CONFIGS, shaderF16: true })).variant.key;
    expect(key).toMatch(/^paged-decode-matrix-int4-hardware-f16\/.*\/m16x8x16t16$/);
    expect(decodeKernel(shape('fp16')).variant.key).toMatch(/^paged-decode-matrix-fp16-software-f32\//);
  });

  it('runs one token stream per subgroup where subgroups have one size, as many as fit; else the serial kernel', () => {
    const hardware = { ...shape('int4', { configs: H200_CONFIGS, shaderF16: true }), subgroupMinSize: 32 };
    const key = (extra: Partial<DecodeShape>) => decodeKernel({ ...hardware, ...extra }).variant.key;
    expect(key({})).toMatch(/\/wg128g4\/s4\/l16\/m16x8x16t16$/); // DEFAULT_MATRIX_SUBGROUPS subgroups of 32
    expect(key({ tuning: { matrixSubgroups: 4, tileTokens: 32 } })).toMatch(/\/wg128g4\/s4\/l32\/m16x8x16t32$/);
    expect(key({ tuning: { matrixTokenLanes: 8 } })).toMatch(/\/s4\/l8\//);
    expect(key({ tuning: { matrixSubgroups: 0 } })).toMatch(/\/wg32g4\/serial\//);
    expect(key({ subgroupMinSize: 8 })).toMatch(/\/serial\//); // a varying subgroup size
    expect(key({ useSubgroups: false })).toMatch(/\/serial\//);
    const fitted = decodeKernel({ ...hardware, maxWorkgroupStorageBytes: 32768, tuning: { matrixSubgroups: 8 } });
    expect(fitted.variant.key).toMatch(/\/s2\//);
    expect(fitted.workgroupBytes).toBeLessThanOrEqual(32768);
  });

  it('counts its workgroup memory as WGSL does (each variable rounded up to 16 bytes)', () => {
    // the stream kernel at H200 shapes: 2 × (K, V tiles of 16 × 136 f16) + S + P' hi/lo + one Oᵀ region
    // + rot_buf + small arrays; Dawn reported 25904 bytes for this variant (null backend)
    const c = { HEAD_DIM: 128, HEADS_PER_WG: 4, MAT_N: 8, TILE_TOKENS: 16, TILE_STRIDE: 136, MATRIX_STREAMS: 2, O_REGIONS: 1 } as unknown as MatrixDecodeConstants;
    expect(matrixDecodeWorkgroupBytes(c, 2, 'hardware')).toBe(25904);
  });

  it('is chosen only when asked for (slower than the subgroup kernel on the H200; docs/tuning.md)', () => {
    const auto = { ...shape('int4', { configs: H200_CONFIGS, shaderF16: true }), kernel: undefined };
    expect(decodeKernelKind(auto)).toBe('subgroup');
    expect(decodeKernelKind({ ...auto, kernel: 'matrix' })).toBe('matrix');
  });

  it('shrinks its tile to fit workgroup memory, and refuses formats it does not read', async () => {
    const small = decodeKernel({ ...shape('int4'), layout: layout('int4', 256), numQueryHeads: 32, maxWorkgroupStorageBytes: 32768, tuning: { maxHeadsPerWorkgroup: 4 } });
    expect(small.variant.key).toMatch(/m8x8x8t8$/);
    expect(small.workgroupBytes).toBeLessThanOrEqual(32768);
    expect(() => decodeKernelKind(shape('int8'))).toThrow(/matrix decode kernel reads int4, int4-hadamard and fp16 caches, not int8/);
    const ctx = await testGpu({ adapter: 'swiftshader' });
    const cache = await PagedKvCache.create(ctx, { method: 'int8', headDim: 64, numQueryHeads: 4, numKvHeads: 1, numPages: 2 });
    const seq = cache.createSequence();
    await cache.append([seq], [1], new Float32Array(64).fill(0.5), new Float32Array(64).fill(0.25));
    await expect(cache.attention([seq], new Float32Array(4 * 64), { kernel: 'matrix' })).rejects.toBeInstanceOf(KvConfigError);
    await expect(cache.attention([seq], new Float32Array(4 * 64), { kernel: 'tensor' as never })).rejects.toThrow(/unknown decode kernel 'tensor'; known kernels: matrix, subgroup, workgroup/);
    cache.destroy();
  });

  it('a corrupted output fails the matrix kernel check (the tolerance bites)', async () => {
    const ctx = await testGpu({ adapter: 'swiftshader' });
    const run = await runKernelCase(ctx, { ...GRID[3], kernel: 'matrix' });
    const overCache = referenceOverGpuCache(run);
    const tol = attentionTolerance(run);
    expect(maxAbsError(run.out, overCache).value).toBeLessThanOrEqual(tol);
    run.out[21] += 0.01; // a hundredth of an INT4 step of one V element, in one output
    expect(maxAbsError(run.out, overCache).value).toBeGreaterThan(tol);
    run.cache.destroy();
  });
});

/** Dawn-node frees an instance when its JS object is collected, even with devices alive: keep it. */
let nullInstance: GPU | null = null;

describe('matrix decode kernel, hardware step WGSL on Dawn\'s null backend (front end only, no GPU)', () => {
  it('compiles without errors for every format, at head_dims, head counts and stream counts that change its shape', async () => {
    const dawn = (await import('webgpu')) as unknown as { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    Object.assign(globalThis, dawn.globals);
    nullInstance ??= dawn.create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']);
    const adapter = await nullInstance.requestAdapter();
    const features = ['subgroups', 'shader-f16', 'chromium-experimental-subgroup-matrix'] as GPUFeatureName[];
    if (!adapter || !features.every((f) => adapter.features.has(f))) throw new Error('Dawn\'s null backend no longer offers subgroup matrices: this check needs another way to run');
    const device = await adapter.requestDevice({ requiredFeatures: features });
    try {
      const failures: string[] = [];
      // [head_dim, query heads, kv heads, subgroups]: 16×8×16 with 1 and 2 streams, 16×16×16 (12 heads)
      // with 4, the serial kernel
      const shapes = [[64, 32, 8, 1], [128, 32, 8, 2], [256, 12, 1, 4], [128, 32, 8, 0]];
      for (const method of ['int4', 'int4-hadamard', 'fp16'] as const) {
        for (const [headDim, numQueryHeads, numKvHeads, matrixSubgroups] of shapes) {
          const rotates = method === 'int4-hadamard';
          const kernel = decodeKernel({
            layout: cacheLayout({ method, headDim, numKvHeads, pageSize: 16, numPages: 4 }), numQueryHeads, hadamardBlock: 64,
            rotateQ: rotates, rotateOut: rotates, randomSigns: rotates, useSubgroups: true, subgroupMinSize: 32, subgroupMaxSize: 32,
            matrix: { configs: H200_CONFIGS, shaderF16: true }, kernel: 'matrix', tuning: { matrixSubgroups },
          });
          expect(kernel.matrix?.step).toBe('hardware');
          const module = device.createShaderModule({ code: kernel.variant.code() });
          const messages = (await module.getCompilationInfo()).messages;
          // errors, and (this Dawn takes the template spelling) no deprecation warning per matrix call
          const faults = messages.filter((m) => m.type === 'error' || /deprecated/.test(m.message));
          if (faults.length) failures.push(`${kernel.variant.key}: ${faults.map((m) => `line ${m.lineNum}: ${m.message}`).join('; ')}`);
        }
      }
      expect(failures).toEqual([]);
      // the spelling probe, and the argument spelling for older implementations (still compiled here)
      expect(await detectMatrixBuiltins(device)).toBe('template');
      const older = decodeKernel({
        layout: cacheLayout({ method: 'int4-hadamard', headDim: 128, numKvHeads: 8, pageSize: 16, numPages: 4 }), numQueryHeads: 32, hadamardBlock: 128,
        rotateQ: true, rotateOut: false, randomSigns: false, useSubgroups: true, subgroupMinSize: 32, subgroupMaxSize: 32,
        matrix: { configs: H200_CONFIGS, shaderF16: true, builtins: 'argument' }, kernel: 'matrix',
      });
      expect(older.variant.key).toMatch(/\/argument-builtins$/);
      const olderCode = older.variant.code();
      expect(olderCode).not.toMatch(/_major/);
      const errors = (await device.createShaderModule({ code: olderCode }).getCompilationInfo()).messages.filter((m) => m.type === 'error');
      expect(errors.map((m) => m.message)).toEqual([]);
    } finally {
      device.destroy();
    }
  });
});

describe('matrixBuiltinsAsArguments', () => {
  it('rewrites the template spelling of loads and stores to the argument spelling, nothing else', () => {
    const code = [
      'let a = subgroupMatrixLoad<CacheLeft, col_major>(&kv_tiles, base + f(i, j) * 2u, TILE_STRIDE);',
      'subgroupMatrixStore<row_major>(&s_mem, s_base + mb * MAT_M, acc, MAT_N);',
      'acc = subgroupMatrixMultiplyAccumulate(a, b, acc);',
    ].join('\n');
    expect(matrixBuiltinsAsArguments(code)).toBe([
      'let a = subgroupMatrixLoad<CacheLeft>(&kv_tiles, base + f(i, j) * 2u, true, TILE_STRIDE);',
      'subgroupMatrixStore(&s_mem, s_base + mb * MAT_M, acc, false, MAT_N);',
      'acc = subgroupMatrixMultiplyAccumulate(a, b, acc);',
    ].join('\n'));
    expect(() => matrixBuiltinsAsArguments('subgroupMatrixLoad<T, row_major>(&x, 0u);')).toThrow(/2 arguments/);
  });
});
