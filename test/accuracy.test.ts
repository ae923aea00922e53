/**
 * The accuracy lab (src/accuracy): the paper's result reproduced through the real kernels, the
 * metrics' own sanity, the method zoo, chart series, the KV file loader and the `accuracy` command.
 *
 * The SAW-INT4 claims, on the outlier-keys workload (4 key channels per head at 10–20× the median
 * RMS), 3 seeds, thresholds chosen from 12 measured runs (6 seeds × 2 sizes, SwiftShader and float64
 * agree to ~1e-6):
 *  - naive INT4 vs INT4 + Hadamard B=128. The rotation acts on keys, so the key-path measures show it
 *    best: KL of the attention probabilities, naive/B128 measured 4.8–9.0× (asserted ≥ KL_RATIO = 4
 *    per seed), and the key-path output error (stored K̂, exact V) measured 2.05–3.0× (asserted
 *    ≥ 2× on the 3-seed mean, ≥ 1.8× per seed). The end-to-end output error carries the token-wise
 *    INT4 V error that every INT4 method shares (V SNR ≈ 19.8 dB, identical bytes for K-only methods),
 *    so its ratio is smaller: measured 1.57–2.3× (asserted ≥ 1.4× per seed).
 *  - error falls as the block grows: 3-seed mean KL B16 > 1.1 × B64 (measured 1.44×) and
 *    B128 ≤ 1.15 × B64 (measured 0.91×: B64 and B128 are within noise, as in the paper, 72.3 vs 73.1);
 *    K SNR B16 < B64 by ≥ 0.5 dB (measured 1.7 dB) and B128 ≥ B64 − 0.25 dB (measured +0.7 dB).
 *  - FP16's error is ≪ every INT4 method's: ≤ FP16_FRACTION = 5 % of the smallest (measured 0.7 %).
 *  - beyond the paper (6 runs: outlier-keys and rope-outliers × 3 seeds): INT8's output error is
 *    4–6 % of naive INT4's (asserted ≤ 10 %), its KL 0.3 % (asserted ≤ 2 %); int4-g32 (5 bits) raises
 *    K SNR by 5.5–6.1 dB over naive INT4 (asserted ≥ 3 dB) but stays 2.4–3.5 dB below the 4.25-bit
 *    B=128 rotation (asserted ≥ 1.5 dB): with 4 outlier channels in 128, most 32-channel groups still
 *    hold one.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { outputError, runAccuracy, snrDb, topKOverlap, type AccuracyReport, type MethodAccuracy } from '../src/accuracy/accuracy-lab';
import { errorByMethod, errorVsBlockSize } from '../src/accuracy/chart-data';
import { loadKvNpy, loadKvSafetensors } from '../src/accuracy/kv-file';
import { bitsPerElement, bytesPerToken, cacheConfigFor, METHOD_GROUPS, METHOD_IDS, methodSpec, resolveMethods, UnknownMethodError } from '../src/accuracy/methods';
import { resolveKvCacheConfig } from '../src/cache/paged-kv-cache';
import { accuracyCommand } from '../src/cli/accuracy-command';
import { writeNpy } from '../src/io/npy';
import { TensorFileError, writeSafetensors } from '../src/io/safetensors';
import { f16Bits } from '../src/reference/f16';
import { klDivergence } from '../src/reference/metrics';
import { SeededRandom } from '../src/reference/random';
import { generateWorkload, type WorkloadSpec } from '../src/workloads/synthetic';
import { testGpu } from './gpu-harness';

const SEEDS = [1, 2, 3];
/** Small enough for SwiftShader (~2 s per seed after the pipelines compile). */
const SHAPE: Omit<WorkloadSpec, 'seed'> = { kind: 'outlier-keys', numQueryHeads: 8, numKvHeads: 2, headDim: 128, contextLens: [300, 137] };
const KL_RATIO = 4;
const K_PATH_RATIO_MEAN = 2;
const K_PATH_RATIO_EACH = 1.8;
const OUTPUT_RATIO_EACH = 1.4;
const B16_OVER_B64 = 1.1;
const B128_OVER_B64_MAX = 1.15;
const SNR_B16_BELOW_B64_DB = 0.5;
const SNR_B128_MARGIN_DB = 0.25;
const FP16_FRACTION = 0.05;
/** Beyond the paper (phase 2 kernels), run alongside on the same workloads. */
const EXTRA_METHODS = ['int8', 'int4-g32'];
const INT8_FRACTION = 0.1;
const INT8_KL_FRACTION = 0.02;
const G32_SNR_GAIN_DB = 3;
const ROTATION_OVER_G32_SNR_DB = 1.5;
/** GPU (f32) vs float64 attention over the same stored bytes: see ATTENTION_F32_TOL in paged-decode.test.ts. */
const KERNEL_REL_TOL = 1e-4;

function row(report: AccuracyReport, id: string): MethodAccuracy {
  const found = report.methods.find((m) => m.id === id);
  if (!found) throw new Error(`no row ${id} in ${report.methods.map((m) => m.id).join(', ')}`);
  return found;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('accuracy lab on outlier keys: the SAW-INT4 result through the real kernels', () => {
  const reports: AccuracyReport[] = [];
  beforeAll(async () => {
    const ctx = await testGpu();
    for (const seed of SEEDS) reports.push(await runAccuracy(ctx, generateWorkload({ ...SHAPE, seed }), ['paper', ...EXTRA_METHODS]));
  });
  const per = (id: string, f: (m: MethodAccuracy) => number) => reports.map((r) => f(row(r, id)));

  it('naive INT4 loses several times more than INT4 + Hadamard B=128', () => {
    reports.forEach((r, i) => {
      const naive = row(r, 'int4');
      const rotated = row(r, 'int4-hadamard-b128');
      const seed = `seed ${SEEDS[i]}`;
      expect(naive.klMean / rotated.klMean, `${seed}: KL ratio`).toBeGreaterThanOrEqual(KL_RATIO);
      expect(naive.kOnly.relL2 / rotated.kOnly.relL2, `${seed}: key-path output error ratio`).toBeGreaterThanOrEqual(K_PATH_RATIO_EACH);
      expect(naive.vsExact.relL2 / rotated.vsExact.relL2, `${seed}: output error ratio`).toBeGreaterThanOrEqual(OUTPUT_RATIO_EACH);
      expect(naive.topKOverlap, `${seed}: top-k overlap`).toBeLessThanOrEqual(rotated.topKOverlap);
    });
    const ratio = mean(per('int4', (m) => m.kOnly.relL2)) / mean(per('int4-hadamard-b128', (m) => m.kOnly.relL2));
    expect(ratio, 'key-path output error ratio, mean of 3 seeds').toBeGreaterThanOrEqual(K_PATH_RATIO_MEAN);
  });

  it('error falls as the Hadamard block grows (B16 > B64 ≥ B128 within noise)', () => {
    const kl = (b: number) => mean(per(`int4-hadamard-b${b}`, (m) => m.klMean));
    expect(kl(16)).toBeGreaterThan(B16_OVER_B64 * kl(64));
    expect(kl(128)).toBeLessThanOrEqual(B128_OVER_B64_MAX * kl(64));
    const snr = (b: number) => mean(per(`int4-hadamard-b${b}`, (m) => m.kSnrDb!));
    expect(snr(16)).toBeLessThan(snr(64) - SNR_B16_BELOW_B64_DB);
    expect(snr(128)).toBeGreaterThanOrEqual(snr(64) - SNR_B128_MARGIN_DB);
    expect(mean(per('int4', (m) => m.kSnrDb!))).toBeLessThan(snr(16));
  });

  it('FP16 error is ≪ every INT4 error; K-only methods share INT4 V bytes', () => {
    for (const r of reports) {
      const fp16 = row(r, 'fp16');
      const int4Rows = r.methods.filter((m) => m.kvMethod === 'int4' || m.kvMethod === 'int4-hadamard');
      expect(fp16.vsExact.relL2).toBeLessThanOrEqual(FP16_FRACTION * Math.min(...int4Rows.map((m) => m.vsExact.relL2)));
      expect(fp16.klMean).toBeLessThanOrEqual(FP16_FRACTION * Math.min(...int4Rows.map((m) => m.klMean)));
      expect(fp16.vsFp16).toEqual({ relL2: 0, relL2Max: 0, cosine: 1, cosineMin: 1, maxAbs: 0, maxAbsAt: [0, 0, 0] });
      // K-only rotation leaves V alone: the same V bytes, so the same V SNR to the last bit.
      expect(new Set(int4Rows.map((m) => m.vSnrDb)).size).toBe(1);
      for (const m of r.methods) {
        expect(m.kernelRelL2, `${m.id}: GPU vs float64 over the stored bytes`).toBeLessThanOrEqual(KERNEL_REL_TOL);
        expect(m.vsExact.cosine).toBeGreaterThan(0.9);
      }
    }
  });

  it('beyond the paper: INT8 ≪ INT4; per-32-channel scales help, the 4.25-bit rotation helps keys more', () => {
    for (const r of reports) {
      const naive = row(r, 'int4');
      const int8 = row(r, 'int8');
      const g32 = row(r, 'int4-g32');
      const rotated = row(r, 'int4-hadamard-b128');
      expect(int8.vsExact.relL2).toBeLessThanOrEqual(INT8_FRACTION * naive.vsExact.relL2);
      expect(int8.klMean).toBeLessThanOrEqual(INT8_KL_FRACTION * naive.klMean);
      expect(g32.kSnrDb!).toBeGreaterThanOrEqual(naive.kSnrDb! + G32_SNR_GAIN_DB);
      expect(g32.vSnrDb!).toBeGreaterThan(naive.vSnrDb!);
      expect(rotated.kSnrDb!).toBeGreaterThanOrEqual(g32.kSnrDb! + ROTATION_OVER_G32_SNR_DB);
    }
  });

  it('reports footprint and is plain JSON', () => {
    const r = reports[0];
    expect(row(r, 'fp16').bytesPerToken).toBe(2 * 2 * 128 * 2);
    expect(row(r, 'int4').bytesPerToken).toBe(2 * 2 * (128 / 2 + 4));
    expect(row(r, 'int4-hadamard-b128').bitsPerElement).toBe(4.25);
    expect(row(r, 'int4').compressionVsFp16).toBeCloseTo(512 / 136, 12);
    expect(r.methods.map((m) => m.id)).toEqual([...METHOD_GROUPS.paper, ...EXTRA_METHODS]);
    expect(row(r, 'int8').bytesPerToken).toBe(2 * 2 * (128 + 4));
    expect(row(r, 'int4-g32').bitsPerElement).toBe(5);
    expect(r.workload).toMatchObject({ numSeqs: 2, totalTokens: 437, numQueryHeads: 8, numKvHeads: 2, headDim: 128 });
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it('chart series follow the report', () => {
    const r = reports[0];
    const bars = errorByMethod(r, 'klMean');
    expect(bars.ids).toEqual(r.methods.map((m) => m.id));
    expect(bars.data[1]).toEqual(r.methods.map((m) => m.klMean));
    const blocks = errorVsBlockSize(r, 'relL2');
    expect(blocks.blocks).toEqual([16, 64, 128]);
    expect(blocks.series.map((s) => s.variant)).toEqual(['k']);
    expect(blocks.data).toEqual([[16, 64, 128], [16, 64, 128].map((b) => row(r, `int4-hadamard-b${b}`).vsExact.relL2)]);
    expect(blocks.references.map((x) => x.id)).toEqual(['fp16', 'int4', ...EXTRA_METHODS]);
  });
});

describe('metrics sanity', () => {
  const rng = new SeededRandom(4);
  const x = Float64Array.from(rng.normalArray(3 * 4 * 16));

  it('identical outputs: zero error, cosine 1; a scaled output: relL2 = |s − 1|, cosine 1', () => {
    expect(outputError(x, x, 4, 16)).toEqual({ relL2: 0, relL2Max: 0, cosine: 1, cosineMin: 1, maxAbs: 0, maxAbsAt: [0, 0, 0] });
    const scaled = x.map((a) => 1.1 * a);
    const e = outputError(scaled, x, 4, 16);
    expect(e.relL2).toBeCloseTo(0.1, 12);
    expect(e.relL2Max).toBeCloseTo(0.1, 12);
    expect(e.cosine).toBeCloseTo(1, 12);
    const worst = x.reduce((best, a, i) => (Math.abs(a) > Math.abs(x[best]) ? i : best), 0);
    expect(e.maxAbs).toBeCloseTo(0.1 * Math.abs(x[worst]), 12);
    expect(e.maxAbsAt).toEqual([Math.floor(worst / 64), Math.floor(worst / 16) % 4, worst % 16]);
    const flipped = Float64Array.from(x);
    for (let i = 16; i < 32; i++) flipped[i] = -x[i]; // sequence 0, head 1 reversed
    const f = outputError(flipped, x, 4, 16);
    expect(f.cosineMin).toBeCloseTo(-1, 12);
    expect(f.relL2Max).toBeCloseTo(2, 12);
  });

  it('KL, top-k overlap and SNR on known cases', () => {
    const p = Float64Array.from([0.5, 0.5]);
    expect(klDivergence(p, p)).toBe(0);
    expect(klDivergence(p, [0.25, 0.75])).toBeCloseTo(0.5 * Math.log(2) + 0.5 * Math.log(2 / 3), 14);
    const a = Float64Array.from([0.4, 0.3, 0.2, 0.1]);
    expect(topKOverlap(a, a, 2)).toBe(1);
    expect(topKOverlap(a, Float64Array.from([0.1, 0.2, 0.3, 0.4]), 2)).toBe(0);
    expect(topKOverlap(a, Float64Array.from([0.4, 0.1, 0.3, 0.2]), 2)).toBe(0.5);
    expect(topKOverlap(a, a, 8)).toBe(1); // k capped at the length
    expect(snrDb(x, x)).toBeNull();
    expect(snrDb([3, 4], [3.5, 4])).toBeCloseTo(10 * Math.log10(25 / 0.25), 12);
  });
});

describe('method zoo', () => {
  it('names, groups and cache configs', () => {
    expect(methodSpec('int4-hadamard-b128-kv-signs')).toMatchObject({ kvMethod: 'int4-hadamard', hadamardBlock: 128, rotateV: true, displayName: 'INT4 + Hadamard B=128 (K+V, signs)' });
    expect(methodSpec('int4-hadamard').id).toBe('int4-hadamard-b128');
    expect(resolveMethods(['paper', 'int4', 'int4-hadamard-b32-kv']).map((s) => s.id)).toEqual([...METHOD_GROUPS.paper, 'int4-hadamard-b32-kv']);
    expect(METHOD_IDS).toHaveLength(2 + 4 * 4 + 2 + 2); // + int4-q8, int4-hadamard-b128-q8
    expect(() => methodSpec('int4-hadamard-b48')).toThrow(/block 48 is not offered; use one of 16, 32, 64, 128/);
    expect(() => resolveMethods(['int3'])).toThrow(UnknownMethodError);
    expect(() => resolveMethods([])).toThrow(/no methods given/);
    for (const id of METHOD_IDS) {
      const spec = methodSpec(id);
      expect(spec.id).toBe(id);
      const config = resolveKvCacheConfig(cacheConfigFor(spec, { headDim: 128, numQueryHeads: 8, numKvHeads: 2, numPages: 4 }));
      expect(config.method).toBe(spec.kvMethod);
      if (spec.hadamardBlock !== null) expect([config.hadamardBlock, config.rotateV, config.hadamardSignSeed]).toEqual([spec.hadamardBlock, spec.rotateV, spec.signSeed]);
    }
    expect(bytesPerToken(methodSpec('fp16'), { headDim: 128, numKvHeads: 8 })).toBe(4096);
    expect(bitsPerElement(methodSpec('int4'), 64)).toBe(4.5);
  });
});

// ------------------------------------------------------------------------------------------------
// KV files

const T = 24;
const HKV = 2;
const D = 32;

function kvArrays(seed = 9) {
  const rng = new SeededRandom(seed);
  return { k: rng.normalArray(T * HKV * D), v: rng.normalArray(T * HKV * D), q: rng.normalArray(2 * 4 * D) };
}

/** [T, Hkv, D] → [Hkv, T, D] */
function headMajor(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let t = 0; t < T; t++) for (let h = 0; h < HKV; h++) out.set(x.subarray((t * HKV + h) * D, (t * HKV + h + 1) * D), (h * T + t) * D);
  return out;
}

function expectFileError(fn: () => unknown, ...fragments: (string | RegExp)[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a TensorFileError').toBeInstanceOf(TensorFileError);
  for (const f of fragments) {
    if (typeof f === 'string') expect((caught as Error).message).toContain(f);
    else expect((caught as Error).message).toMatch(f);
  }
}

describe('KV file loader', () => {
  const { k, v, q } = kvArrays();
  const lens = Int32Array.from([10, 14]);

  it('safetensors round trip: [T, Hkv, D] with q and context_lens, and [Hkv, T, D] by metadata', () => {
    const bytes = writeSafetensors({ k: { shape: [T, HKV, D], data: k }, v: { shape: [T, HKV, D], data: v }, q: { shape: [2, 4, D], data: q }, context_lens: { shape: [2], data: lens } });
    const data = loadKvSafetensors(bytes, { source: 'layer.safetensors' });
    expect(data).toMatchObject({ contextLens: [10, 14], numQueryHeads: 4, numKvHeads: HKV, headDim: D, querySource: 'file', kvDtype: 'F32', layout: 't_hkv_d' });
    expect(data.k).toEqual(k);
    expect(data.v).toEqual(v);
    expect(data.q).toEqual(q);
    expect(data.description).toContain('layer.safetensors');

    const hf = writeSafetensors({ k: { shape: [HKV, T, D], data: headMajor(k) }, v: { shape: [HKV, T, D], data: headMajor(v) } }, { layout: 'hkv_t_d' });
    const fromHf = loadKvSafetensors(hf);
    expect(fromHf.k).toEqual(k);
    expect(fromHf.v).toEqual(v);
    expect(fromHf).toMatchObject({ contextLens: [T], numQueryHeads: HKV * 4, querySource: 'sampled', layout: 'hkv_t_d' });
    // The option wins over the metadata: read as [T, Hkv, D] = [2, 24, 32], k and v swap roles of axes.
    expect(loadKvSafetensors(hf, { layout: 't_hkv_d' }).numKvHeads).toBe(T);
  });

  it('F16 tensors load exactly', () => {
    const halves = (x: Float32Array) => Uint16Array.from(x, f16Bits);
    const bytes = writeSafetensors({ k: { dtype: 'F16', shape: [T, HKV, D], data: halves(k) }, v: { dtype: 'F16', shape: [T, HKV, D], data: halves(v) } });
    const data = loadKvSafetensors(bytes);
    expect(data.kvDtype).toBe('F16');
    for (let i = 0; i < k.length; i += 97) expect(Math.abs(data.k[i] - k[i])).toBeLessThanOrEqual(Math.abs(k[i]) * 2 ** -11);
  });

  it('.npy round trip, sampled queries are seeded and calibrated', () => {
    const data = loadKvNpy({ k: writeNpy(k, [T, HKV, D]), v: writeNpy(v, [T, HKV, D]), contextLens: writeNpy(lens, [2]) }, { queryGroup: 2, querySeed: 5 });
    expect(data.k).toEqual(k);
    expect(data).toMatchObject({ contextLens: [10, 14], numQueryHeads: 4, querySource: 'sampled' });
    expect(data.q).toHaveLength(2 * 4 * D);
    expect(data.q.every(Number.isFinite)).toBe(true);
    const again = loadKvNpy({ k: writeNpy(k, [T, HKV, D]), v: writeNpy(v, [T, HKV, D]), contextLens: writeNpy(lens, [2]) }, { queryGroup: 2, querySeed: 5 });
    expect(again.q).toEqual(data.q);
    const hkvFirst = loadKvNpy({ k: writeNpy(headMajor(k), [HKV, T, D]), v: writeNpy(headMajor(v), [HKV, T, D]) }, { layout: 'hkv_t_d' });
    expect(hkvFirst.v).toEqual(v);
  });

  it('malformed files give clear messages', () => {
    const good = { k: { shape: [T, HKV, D], data: k }, v: { shape: [T, HKV, D], data: v } };
    const st = (tensors: Record<string, { shape: number[]; data: Float32Array | Int32Array }>, meta?: Record<string, string>) => () =>
      loadKvSafetensors(writeSafetensors(tensors, meta), { source: 'bad.safetensors' });
    expectFileError(st({ ...good, k: { shape: [T, HKV, D], data: Int32Array.from(k, Math.round) } }), "bad.safetensors: tensor 'k' dtype: is I32; expected a float dtype");
    expectFileError(st({ ...good, v: { shape: [T, HKV, D / 2], data: v.subarray(0, T * HKV * D / 2) } }), "tensor 'v' shape: is [24, 2, 16]; expected [24, 2, 32], the shape of k");
    expectFileError(st({ k: { shape: [1, T, HKV, D], data: k }, v: { shape: [1, T, HKV, D], data: v } }), "tensor 'k' shape: is [1, 24, 2, 32] (rank 4)", 'take one batch element');
    expectFileError(st({ ...good, context_lens: { shape: [2], data: Int32Array.from([10, 10]) } }), "tensor 'context_lens' data: sums to 20 but k holds T = 24 tokens");
    expectFileError(st({ ...good, q: { shape: [1, 4, D], data: q.subarray(0, 4 * D) }, context_lens: { shape: [2], data: lens } }), "tensor 'q' shape: is [1, 4, 32]; expected [2, Hq, 32]");
    expectFileError(st({ ...good, q: { shape: [1, 3, D], data: q.subarray(0, 3 * D) } }), 'Hq a multiple of Hkv = 2');
    expectFileError(st(good, { layout: 'bhtd' }), `__metadata__['layout']: is "bhtd"; expected t_hkv_d or hkv_t_d`);
    expectFileError(st({ v: good.v }), "tensor 'k': missing; file has: v");
    const nan = Float32Array.from(k);
    nan[(3 * HKV + 1) * D + 7] = NaN;
    expectFileError(st({ ...good, k: { shape: [T, HKV, D], data: nan } }), "tensor 'k' data: element [3, 1, 7] is NaN: not finite");
    const huge = Float32Array.from(v);
    huge[5] = 1e5;
    expectFileError(st({ ...good, v: { shape: [T, HKV, D], data: huge } }), 'element [0, 0, 5] is 100000: beyond the float16 range');
    const whole = writeSafetensors(good);
    expectFileError(() => loadKvSafetensors(whole.subarray(0, whole.length - 10), { source: 'cut.safetensors' }), "cut.safetensors: tensor 'v' data_offsets", 'runs past the data region');

    const npyK = writeNpy(k, [T, HKV, D]);
    expectFileError(() => loadKvNpy({ k: npyK.subarray(0, npyK.length - 4), v: writeNpy(v, [T, HKV, D]) }, { source: 'dump' }), 'dump/k.npy: npy data', 'truncated');
    expectFileError(() => loadKvNpy({ k: writeNpy(Int32Array.from(k, Math.round), [T, HKV, D]), v: writeNpy(v, [T, HKV, D]) }), "k.npy: tensor 'k' dtype: is <i4; expected a float dtype");
    expectFileError(() => loadKvNpy({ k: npyK, v: writeNpy(v, [T, D, HKV]) }), "tensor 'v' shape: is [24, 32, 2]; expected [24, 2, 32]");
  });

  it('loaded data runs through the lab', async () => {
    const w = generateWorkload({ ...SHAPE, contextLens: [40, 9], seed: 11 });
    const bytes = writeSafetensors({ k: { shape: [49, 2, 128], data: w.k }, v: { shape: [49, 2, 128], data: w.v }, context_lens: { shape: [2], data: Int32Array.from([40, 9]) } });
    const data = loadKvSafetensors(bytes, { source: 'w.safetensors' });
    const report = await runAccuracy(await testGpu(), data, ['int4']);
    expect(report.methods.map((m) => m.id)).toEqual(['fp16', 'int4']);
    expect(report.workload.description).toContain('w.safetensors');
    expect(row(report, 'int4').klMean).toBeGreaterThan(row(report, 'fp16').klMean);
  });
});

describe('accuracy command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'accuracy-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const env = { gpu: () => testGpu() };

  it('runs a synthetic workload and writes the JSON report', async () => {
    const out = join(dir, 'report.json');
    const code = await accuracyCommand.run(['--methods', 'int4,int4-hadamard-b64', '--seqs', '1', '--context', '70', '--json', out], env);
    expect(code).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as AccuracyReport;
    expect(report.methods.map((m) => m.id)).toEqual(['fp16', 'int4', 'int4-hadamard-b64']);
    expect(report.workload).toMatchObject({ contextLens: [70], numQueryHeads: 8, numKvHeads: 2, headDim: 128 });
  });

  it('bad flags exit 2 before any GPU work', async () => {
    const noGpu = { gpu: () => Promise.reject(new Error('must not open the GPU')) };
    expect(await accuracyCommand.run(['--methods', 'int3'], noGpu)).toBe(2);
    expect(await accuracyCommand.run(['--file', join(dir, 'x.safetensors'), '--workload', 'gaussian'], noGpu)).toBe(2);
    expect(await accuracyCommand.run(['--file', join(dir, 'missing.safetensors')], noGpu)).toBe(2);
    expect(await accuracyCommand.run(['--workload', 'pink-noise'], noGpu)).toBe(2);
    expect(await accuracyCommand.run(['--seqs', '0'], noGpu)).toBe(2);
    expect(await accuracyCommand.run(['--preset', 'gpt5'], noGpu)).toBe(2);
  });
});
