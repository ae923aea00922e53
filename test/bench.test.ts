/**
 * The benchmark harness: its arithmetic checked against numbers worked out by hand from the layout
 * facts, and the quick sweep, the timer and the CLI command run end to end on the test device.
 * No test asserts a speed: only that every figure is finite and positive and every byte count exact.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildBenchReport, formatBenchTable, reportToJson, type BenchReport } from '../src/bench/bench-report';
import {
  addComparisons, appendBytes, checkPointFits, findPreset, gbPerSecond, MODEL_PRESETS, nsToUs, overheadPercent, percentOf,
  pointCacheConfig, QUICK_PROBE_BYTES, QUICK_SWEEP, QUICK_TIMING, resolvePoint, runDecodeBench, speedup, sweepPoints,
  tokensInBudget, tokensPerSecond, variantLabel, type DecodeBenchRun, type MeasuredPoint, type PointResult,
} from '../src/bench/decode-step-bench';
import { isSteady, MAX_UNSTEADY_REPEATS, measureGpu, median, STEADY_TOLERANCE, WALL_CLOCK_STEADY_TOLERANCE } from '../src/bench/gpu-timer';
import { describeGpu } from '../src/gpu/gpu-context';
import { benchCommand, parseBenchArgs } from '../src/cli/bench-command';
import { cacheLayout } from '../src/layout';
import { getPipeline } from '../src/kernels/pipeline-cache';
import { FUSE_STEP_MAX_ROWS } from '../src/kernels/decode-tuning';
import { testGpu } from './gpu-harness';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

function layoutFor(preset: keyof typeof MODEL_PRESETS, method: 'fp16' | 'int4', numPages = 1) {
  const p = MODEL_PRESETS[preset];
  return cacheLayout({ method, headDim: p.headDim, numKvHeads: p.numKvHeads, pageSize: 16, numPages });
}

describe('bench arithmetic (by hand from the layout facts)', () => {
  it('unit conversions: µs, GB/s, percent, tokens/s', () => {
    expect(nsToUs(1500)).toBe(1.5);
    expect(gbPerSecond(3e9, 1e6)).toBe(3000); // 3 GB in 1 ms
    expect(percentOf(45, 180)).toBe(25);
    expect(tokensPerSecond(64, 2e6)).toBe(32_000); // 64 tokens every 2 ms
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('a sample set is steady when its halves agree: the H200 ramp (85 → 19.1 µs) is not, noise within the tolerance is', () => {
    const ramp = [...Array(6).fill(85), ...Array(10).fill(47), ...Array(16).fill(25.5), ...Array(4).fill(19.1)];
    expect(isSteady(ramp)).toBe(false);
    const settled = Array.from({ length: 40 }, (_, i) => 19.1 * (1 + 0.01 * Math.sin(i)));  // ±1 % noise
    expect(isSteady(settled)).toBe(true);
    // a 4 % step between the halves fails at 3 %, passes at 5 %
    const step = [...Array(10).fill(100), ...Array(10).fill(104)];
    expect(STEADY_TOLERANCE).toBe(0.03);
    expect(isSteady(step)).toBe(false);
    expect(isSteady(step, 0.05)).toBe(true);
    expect(isSteady([85, 47, 25, 19, 19, 19, 19])).toBe(true);  // under 8 samples: not judged
  });

  it('speedup and overhead formulas', () => {
    expect(speedup(300, 100)).toBe(3); // baseline 300 µs, this 100 µs: 3× faster
    expect(overheadPercent(101, 100)).toBeCloseTo(1, 12);
    expect(overheadPercent(99, 100)).toBeCloseTo(-1, 12);
  });

  it('bytes per token and append bytes (tiny-d64: Hkv 4, D 64)', () => {
    // int4 row: 64/8 = 8 code words + 1 scale/min word = 36 B; K and V, 4 heads: 2·4·36 = 288 B.
    const int4 = layoutFor('tiny-d64', 'int4');
    expect(int4.bytesPerToken).toBe(288);
    // fp16 row: 64/2 = 32 words = 128 B; 2·4·128 = 1024 B.
    expect(layoutFor('tiny-d64', 'fp16').bytesPerToken).toBe(1024);
    // Append of 2 tokens reads K and V f32 rows (2·2·4·64·4 = 4096 B) and 2 u32 slots (8 B); writes 2·288.
    expect(appendBytes(int4, 2)).toEqual({ read: 4104, written: 576 });
  });

  it('tokens that fit in a memory budget (Llama-3.1-8B, 32 layers, 16 GiB)', () => {
    // Per layer 16 GiB / 32 = 512 MiB. int4 page: 8 heads·16 tokens·(16+1) words = 2176 words = 8704 B,
    // K+V 17408 B → floor(536870912 / 17408) = 30840 pages = 493440 tokens.
    expect(tokensInBudget(layoutFor('llama-3.1-8b', 'int4'), 32, 16 * GiB)).toBe(493_440);
    // fp16 page: 8·16·64 words = 32 KiB, K+V 64 KiB → 8192 pages = 131072 tokens.
    expect(tokensInBudget(layoutFor('llama-3.1-8b', 'fp16'), 32, 16 * GiB)).toBe(131_072);
  });

  it('a point that exceeds the binding limit is skipped with what would fit', () => {
    const limits = { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 128 * MiB, maxComputeWorkgroupsPerDimension: 65535 };
    const point = resolvePoint({ preset: 'llama-3.1-8b', method: 'fp16', batch: 4, context: 32768 });
    // 32769 tokens → 2049 pages of 32 KiB per sequence; 128 MiB holds 4096 pages.
    expect(pointCacheConfig(point).numPages).toBe(4 * 2049);
    const skip = checkPointFits(limits, point, 64 * GiB);
    expect(skip?.reason).toMatch(/maxStorageBufferBindingSize/);
    expect(skip?.wouldFit).toEqual({ maxContextAtBatch: 1024 * 16 - 1, maxBatchAtContext: 1 });
    expect(checkPointFits(limits, { ...point, batch: 1 }, 64 * GiB)).toBeNull();
    // a device that binds 12 storage buffers per stage spreads each pool over up to 3 buffers
    expect(checkPointFits({ ...limits, maxStorageBuffersPerShaderStage: 12 }, point, 64 * GiB)).toBeNull(); // 8196 pages ≤ 3 × 4096
    expect(checkPointFits({ ...limits, maxStorageBuffersPerShaderStage: 12 }, { ...point, batch: 8 }, 64 * GiB)?.reason).toMatch(/over 3 × this device's maxStorageBufferBindingSize/);
    // The bench's own cache budget: 256 MiB of K+V is 4096 pages of each pool, the same numbers.
    const big = { ...limits, maxStorageBufferBindingSize: 4 * GiB };
    const byBudget = checkPointFits(big, point, 256 * MiB);
    expect(byBudget?.reason).toMatch(/budget/);
    expect(byBudget?.wouldFit).toEqual({ maxContextAtBatch: 16383, maxBatchAtContext: 1 });
  });

  it('comparisons: speedup vs fp16 and rotation overhead vs int4 at the same shape only', () => {
    const fake = (method: 'fp16' | 'int4' | 'int4-hadamard', batch: number, appendUs: number, attentionUs: number) =>
      ({
        status: 'ok',
        point: resolvePoint({ preset: 'tiny-d64', method, batch, context: 100 }),
        appendUs,
        attentionUs,
        stepUs: appendUs + attentionUs,
      }) as unknown as MeasuredPoint;
    const results: PointResult[] = [fake('fp16', 1, 10, 290), fake('int4', 1, 10, 90), fake('int4-hadamard', 1, 11, 90), fake('int4-hadamard', 2, 11, 90)];
    addComparisons(results);
    const [fp16, int4, had, lonely] = results as MeasuredPoint[];
    expect(fp16.speedupVsFp16).toBeNull();
    expect(int4.speedupVsFp16).toEqual({ step: 3, attention: 290 / 90 });
    expect(int4.rotationOverheadPct).toBeNull();
    expect(had.rotationOverheadPct?.step).toBeCloseTo(1, 12); // 101 vs 100 µs
    expect(had.rotationOverheadPct?.append).toBeCloseTo(10, 12);
    expect(had.rotationOverheadPct?.attention).toBeCloseTo(0, 12);
    expect(lonely.speedupVsFp16).toBeNull(); // no fp16 at batch 2
    expect(lonely.rotationOverheadPct).toBeNull();
  });

  it('sweeps, presets, labels and the command line', () => {
    expect(sweepPoints({ presets: ['llama-3.1-8b'], methods: ['fp16', 'int4'], batches: [1, 256], contexts: [512, 2048, 32768] })).toHaveLength(12);
    expect(findPreset('Qwen3-8B')).toBe('qwen3-8b');
    expect(findPreset('gpt-5')).toBeNull();
    // the accuracy lab's ids name the same methods here (one vocabulary)
    const [point] = sweepPoints({ presets: ['llama-3.1-8b'], methods: parseBenchArgs(['--methods', 'int4-hadamard-b64-kv-q8']).sweep.methods, batches: [1], contexts: [8] });
    expect(point).toMatchObject({ method: 'int4-hadamard', hadamardBlock: 64, rotateV: true, queryInt8: true });
    expect(variantLabel(resolvePoint(point))).toBe('int4-hadamard-kv-q8/B64');
    expect(() => parseBenchArgs(['--methods', 'int4-hadamard-b48'])).toThrow(/unknown method 'int4-hadamard-b48'/);
    expect(variantLabel(resolvePoint({ preset: 'tiny-d64', method: 'int4-hadamard', rotateV: true, batch: 1, context: 1 }))).toBe('int4-hadamard-kv');
    expect(resolvePoint({ preset: 'tiny-d64', method: 'int4-hadamard', batch: 1, context: 1 }).hadamardBlock).toBe(64); // the largest power of two ≤ 128 dividing D
    expect(variantLabel(resolvePoint({ preset: 'llama-2-7b', method: 'int4-hadamard', hadamardBlock: 16, batch: 1, context: 1 }))).toBe('int4-hadamard/B16');
    const args = parseBenchArgs(['--preset', 'Llama-2-7B', '--methods', 'fp16,int4-hadamard-kv', '--batch', '1,8', '--context', '512', '--page-size', '32', '--json', 'x.json']);
    expect(args.sweep).toMatchObject({ presets: ['llama-2-7b'], methods: ['fp16', 'int4-hadamard-kv'], batches: [1, 8], contexts: [512], pageSizes: [32] });
    expect(args.jsonPath).toBe('x.json');
    expect(() => parseBenchArgs(['--batch', '0'])).toThrow(/--batch takes integers in \[1, 65535\]/);
    expect(() => parseBenchArgs(['--methods', 'int3'])).toThrow(/unknown method/);
    expect(parseBenchArgs(['--decode-tuning', 'lanesPerToken=4, tokensPerStep=2']).decodeTuning).toEqual({ lanesPerToken: 4, tokensPerStep: 2 });
    expect(() => parseBenchArgs(['--decode-tuning', 'lanes=4'])).toThrow(/keys workgroupSize, .*lanesPerToken/);
    expect(() => parseBenchArgs(['--decode-tuning', 'tokensPerStep=3'])).toThrow(/tokensPerStep must be 0 \(automatic\), 1, 2, 4 or 8/);
    expect(() => parseBenchArgs(['--decode-tuning', 'workgroupSize=1.5'])).toThrow(/non-negative integer/);
    expect(parseBenchArgs(['--kernel', 'matrix']).decodeKernel).toBe('matrix');
    expect(() => parseBenchArgs(['--kernel', 'tensor'])).toThrow(/--kernel takes one of matrix, subgroup, workgroup, got 'tensor'/);
    expect(parseBenchArgs(['--merge', 'dispatch']).mergeInDispatch).toBe(true);
    expect(parseBenchArgs(['--merge', 'kernel']).mergeInDispatch).toBe(false);
    expect(parseBenchArgs([]).mergeInDispatch).toBeUndefined();
    expect(() => parseBenchArgs(['--merge', 'atomic'])).toThrow(/--merge takes dispatch or kernel, got 'atomic'/);
  });

  it('merges split-K in the dispatch or by the merge kernel when asked, and says so in the report and each point\'s plan', async () => {
    const ctx = await testGpu();
    const points = sweepPoints({ ...QUICK_SWEEP, methods: ['int4'], contexts: [1000] });
    const run = await runDecodeBench(ctx, points, { timing: QUICK_TIMING, probeBytes: QUICK_PROBE_BYTES, mergeInDispatch: true });
    const report = buildBenchReport(ctx, run);
    expect(report.merge).toBe('dispatch');
    const point = report.points[0];
    expect(point.status === 'ok' && point.numSplits).toBe(3);
    expect(point.status === 'ok' && point.plan).toMatch(/merged in the dispatch/);
    const byKernel = buildBenchReport(ctx, await runDecodeBench(ctx, points, { timing: QUICK_TIMING, probeBytes: QUICK_PROBE_BYTES, mergeInDispatch: false }));
    expect(byKernel.merge).toBe('kernel');
    const kernelPoint = byKernel.points[0];
    expect(kernelPoint.status === 'ok' && kernelPoint.plan).toMatch(/3 splits of ≤ \d+ tokens \+ merge$/);
    expect(buildBenchReport(ctx, await runDecodeBench(ctx, points.slice(0, 0), { timing: QUICK_TIMING, probeBytes: QUICK_PROBE_BYTES })).merge).toBe('default');
  });

  it('runs with the decode tuning it is given and records it', async () => {
    const ctx = await testGpu();
    const points = sweepPoints({ ...QUICK_SWEEP, methods: ['int4-hadamard'], contexts: [1000] });
    const decodeTuning = { targetWorkgroups: 1, tokensPerStep: 1 };
    const run = await runDecodeBench(ctx, points, { timing: QUICK_TIMING, probeBytes: QUICK_PROBE_BYTES, decodeTuning });
    expect(run.decodeTuning).toEqual(decodeTuning);
    expect(run.points.map((p) => (p.status === 'ok' ? p.numSplits : p.status))).toEqual([1]); // without it: 3 splits (the quick sweep's split-K point)
    expect(buildBenchReport(ctx, run).decodeTuning).toEqual(decodeTuning);
  });
});

describe('gpu-timer (real GPU work)', () => {
  it('times an empty dispatch with timestamps and with the wall clock: finite, positive', async () => {
    const ctx = await testGpu();
    const pipeline = await getPipeline(ctx.device, { key: 'test/bench-empty', code: () => '@compute @workgroup_size(1) fn main() {}' });
    const encode = (pass: GPUComputePassEncoder) => {
      pass.setPipeline(pipeline);
      pass.dispatchWorkgroups(1);
    };
    const options = { warmupMs: 1, measureMs: 5, minSamples: 3, maxDispatchesPerSample: 8 };
    for (const method of ['timestamp', 'wall-clock'] as const) {
      const t = await measureGpu(ctx, encode, { ...options, method });
      expect(t.method).toBe(method === 'timestamp' && !ctx.features['timestamp-query'] ? 'wall-clock' : method);
      if (t.method !== method) expect(t.fallbackReason).toMatch(/timestamp-query/);
      expect(t.samplesNs.length).toBeGreaterThanOrEqual(3);
      expect(t.dispatchesPerSample).toBeGreaterThanOrEqual(1);
      expect(t.dispatchesPerSample).toBeLessThanOrEqual(8);
      for (const v of [...t.samplesNs, t.medianNs, t.minNs]) expect(Number.isFinite(v) && v > 0).toBe(true);
      expect(t.minNs).toBeLessThanOrEqual(t.medianNs);
      // the set kept is steady unless every repeat was used up
      expect(t.unsteadyMediansNs.length).toBeLessThanOrEqual(MAX_UNSTEADY_REPEATS);
      if (!isSteady(t.samplesNs, t.method === 'timestamp' ? STEADY_TOLERANCE : WALL_CLOCK_STEADY_TOLERANCE)) expect(t.unsteadyMediansNs.length).toBe(MAX_UNSTEADY_REPEATS);
    }
    // A fixed repetition count is used as given.
    const fixed = await measureGpu(ctx, encode, { ...options, dispatchesPerSample: 3 });
    expect(fixed.dispatchesPerSample).toBe(3);
  });
});

describe('quick sweep end to end (real kernels)', () => {
  let run: DecodeBenchRun;
  let report: BenchReport;
  const progress: [number, number][] = [];

  beforeAll(async () => {
    const ctx = await testGpu();
    const points = sweepPoints(QUICK_SWEEP);
    run = await runDecodeBench(ctx, points, { timing: QUICK_TIMING, probeBytes: QUICK_PROBE_BYTES, onProgress: (done, total) => progress.push([done, total]) });
    report = buildBenchReport(ctx, run, { quick: true });
  });

  it('measures every point, reporting progress after each', () => {
    const n = sweepPoints(QUICK_SWEEP).length;
    expect(run.points).toHaveLength(n);
    expect(progress).toEqual(Array.from({ length: n }, (_, i) => [i + 1, n]));
    const failures = run.points.filter((p) => p.status !== 'ok').map((p) => (p.status === 'failed' ? p.error : p.status === 'skipped' ? p.reason : ''));
    expect(failures).toEqual([]);
  });

  it('every figure is finite and positive; probe and floor come from the same run', () => {
    const positive = (v: number) => Number.isFinite(v) && v > 0;
    expect(positive(run.probe.gbps) && positive(run.probe.bytes)).toBe(true);
    expect(run.probe.note).toMatch(/MiB/);
    expect(positive(run.floor.medianNs) && positive(run.dependentFloor.medianNs)).toBe(true);
    for (const p of run.points as MeasuredPoint[]) {
      const figures = [p.appendUs, p.attentionUs, p.stepUs, p.appendMinUs, p.attentionMinUs, p.tokensPerSecond, p.attentionBytes, p.appendBytesRead,
        p.appendBytesWritten, p.attentionGBps, p.attentionPctOfProbe, p.bytesPerToken, p.tokensInBudget, p.numSplits];
      expect(figures.every(positive), `${p.variant} batch ${p.point.batch} context ${p.point.context}: ${figures}`).toBe(true);
      expect(p.separateStepUs).toBeCloseTo(p.appendUs + p.attentionUs, 9);
      // the step is what the default plan runs: the fused step where it fuses (the subgroup kernel here)
      expect(p.fused).toBe(p.kernel === 'subgroup' && p.point.batch * MODEL_PRESETS[p.point.preset].numKvHeads <= FUSE_STEP_MAX_ROWS);
      if (p.kernel === 'subgroup') expect(positive(p.fusedStepUs!) && p.fusedStepError === null).toBe(true);
      if (p.fused) expect(positive(p.fusedStepUs!) && p.stepUs === p.fusedStepUs && p.fusedStep!.samplesNs.length > 0).toBe(true);
      else expect(p.stepUs).toBe(p.separateStepUs);
      if (p.point.method !== 'fp16') expect(positive(p.speedupVsFp16!.step) && positive(p.speedupVsFp16!.attention)).toBe(true);
      if (p.point.method === 'int4-hadamard') expect(Number.isFinite(p.rotationOverheadPct!.step)).toBe(true);
    }
    expect(run.points.some((p) => p.status === 'ok' && p.numSplits > 1)).toBe(true); // split-K + merge timed too
  });

  it('attention bytes equal the hand count (tiny-d64, batch 2, context 40 → 41 tokens each)', () => {
    const at = (variant: string) => run.points.find((p) => p.variant === variant && p.point.context === 40) as MeasuredPoint;
    // 82 tokens · 4 kv heads · (K + V) rows, one pass per kv head (the 4 query heads share it),
    // + block tables [2 seqs, 3 pages] u32 (24 B) + context lengths (8 B) + q [2, 16, 64] f32 (8192 B).
    const tables = 24 + 8 + 8192;
    expect(at('int4').attentionBytes).toBe(2 * 82 * 4 * 36 + tables); // 36 B per int4 row
    expect(at('int4-hadamard-kv').attentionBytes).toBe(2 * 82 * 4 * 36 + tables);
    expect(at('fp16').attentionBytes).toBe(2 * 82 * 4 * 128 + tables); // 128 B per fp16 row
    expect(at('int4').appendBytesRead).toBe(4104);
    expect(at('int4').appendBytesWritten).toBe(576);
  });

  it('the report is JSON-serializable and the table has a row per point', () => {
    const parsed = JSON.parse(reportToJson(report)) as BenchReport;
    expect(parsed.points).toHaveLength(run.points.length);
    expect(parsed.adapter.description).toBe(report.adapter.description);
    expect(typeof parsed.features['timestamp-query']).toBe('boolean');
    expect(Number.isNaN(Date.parse(parsed.date))).toBe(false);
    expect(parsed.probe.gbps).toBe(run.probe.gbps);
    const table = formatBenchTable(report);
    expect(table).toContain('bandwidth probe');
    expect(table).toContain('empty dispatch');
    expect(table).toContain('dependent empty dispatch');
    expect(table.split('\n').filter((line) => line.startsWith('tiny-d64 '))).toHaveLength(run.points.length);
  });
});

describe('bench command', () => {
  it('runs a tiny sweep, skips what exceeds the cache budget, writes the JSON', async () => {
    const ctx = await testGpu();
    const json = join(mkdtempSync(join(tmpdir(), 'bench-')), 'out.json');
    const out: string[] = [];
    const err: string[] = [];
    const code = await benchCommand.run(
      ['--preset', 'tiny-d64', '--methods', 'int4', '--batch', '1', '--context', '16,100000', '--probe-mib', '1', '--warmup-ms', '1', '--measure-ms', '5',
        '--max-cache-gib', '0.001', '--json', json],
      { gpu: async () => ctx },
      { out: (t) => out.push(t), err: (t) => err.push(t) },
    );
    expect(code, err.join('\n')).toBe(0);
    const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
    expect(report.points.map((p) => p.status)).toEqual(['ok', 'skipped']);
    expect(report.dawnToggles).toEqual([]);
    expect(report.gpu).not.toContain('Dawn toggles');
    expect(describeGpu({ ...ctx, dawnToggles: ['enable_integer_range_analysis_in_robustness'] })).toMatch(/; Dawn toggles: enable_integer_range_analysis_in_robustness$/);
    const skipped = report.points[1];
    // 100001 tokens of int4 tiny-d64 = 6251 pages of 2304 B per pool, 28.8 MB of K+V > 1 MiB budget;
    // the budget holds floor(1073741.8 / 4608) = 233 pages: 233·16 − 1 = 3727 tokens at batch 1.
    expect(skipped.status === 'skipped' && skipped.wouldFit).toEqual({ maxContextAtBatch: 3727, maxBatchAtContext: 0 });
    expect(out.join('\n')).toMatch(/skipped: the K and V pools need/);
    expect(err.some((line) => line.startsWith('[2/2]'))).toBe(true);
  });

  it('a bad flag exits 2 with the usage and touches no GPU', async () => {
    const err: string[] = [];
    const code = await benchCommand.run(['--context', 'lots'], { gpu: () => Promise.reject(new Error('no GPU wanted')) }, { out: () => {}, err: (t) => err.push(t) });
    expect(code).toBe(2);
    expect(err.join('\n')).toMatch(/--context takes integers in \[1, \d+\]/);
  });
});
