/**
 * The two checks every decode-kernel test applies to a run (shared by test/paged-decode.test.ts and
 * test/paged-decode-matrix.test.ts):
 *  1. against attention over exactly the bytes the GPU cached (isolates the attention kernel):
 *     |error| ≤ ATTENTION_F32_TOL · max|V̂|;
 *  2. against the fully independent reference (its own quantization): the GPU agrees to within
 *     QUANT_AGREEMENT of the scheme's own quantization error (rare rounding ties may flip a code), or
 *     FP16_AGREEMENT_ABS for fp16.
 */
import { expect } from 'vitest';
import { INT4_MAX_CODE, quantFormat, type KvMethod } from '../src/layout';
import { exactDecode, referenceDecode } from '../src/reference/saw-int4';
import { maxAbsError, relativeL2 } from '../src/reference/metrics';
import { gpuDecodedRows, referenceOverGpuCache, type KernelCase, type KernelRun } from './kernel-case';

/**
 * f32 has 2^-24 ≈ 6e-8 relative precision; a D ≤ 256 dot product, an exp2 (≤ 3 ulp in WGSL) and a
 * softmax-weighted sum over ≤ 32k tokens stay orders of magnitude below 1e-4 of the output's scale.
 * The matrix kernel's f16 operands are split hi + lo (2^-21 relative) and stay inside it.
 */
export const ATTENTION_F32_TOL = 1e-4;
/**
 * The GPU's distance to the independent reference must be ≤ 1 % of the reference's own quantization
 * error, for INT4 (15 levels). A rare rounding tie (a code, or an f16 scale ulp that moves a value by
 * up to maxCode·2^-11 steps) is maxCode/15 times larger relative to the error of a finer grid, so the
 * bound scales with maxCode (INT8: 17 %; measured 5.6 % on an H200 for the int8 D=64 case, ~1e-6 on
 * SwiftShader).
 */
export const QUANT_AGREEMENT = 0.01;
export const quantAgreement = (method: KvMethod, headDim: number) => QUANT_AGREEMENT * (quantFormat(method, headDim)?.maxCode ?? INT4_MAX_CODE) / INT4_MAX_CODE;
/** FP16's own error is ~1e-3 relative; f32 noise on top must stay ≤ 1e-5 absolute. */
export const FP16_AGREEMENT_ABS = 1e-5;

export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

/** The attention tolerance of check 1 for a run: ATTENTION_F32_TOL · max|V̂|. */
export function attentionTolerance(run: KernelRun): number {
  return ATTENTION_F32_TOL * maxAbs(gpuDecodedRows(run, false));
}

/** Both checks (expect() failures name the worst index). */
export function expectDecodeMatchesReferences(run: KernelRun, c: KernelCase): void {
  const overCache = referenceOverGpuCache(run);
  const err = maxAbsError(run.out, overCache);
  expect(err.value, `worst at index ${err.index}: got ${run.out[err.index]}, want ${overCache[err.index]}`).toBeLessThanOrEqual(attentionTolerance(run));

  const shape = { numQueryHeads: c.config.numQueryHeads, numKvHeads: c.config.numKvHeads, headDim: c.config.headDim, contextLens: c.contextLens, q: run.q, k: run.k, v: run.v };
  const independent = referenceDecode(run.methodConfig, shape).out;
  if (c.config.method === 'fp16') {
    expect(maxAbsError(run.out, independent).value).toBeLessThanOrEqual(FP16_AGREEMENT_ABS);
  } else {
    const schemeError = relativeL2(independent, exactDecode(shape));
    expect(relativeL2(run.out, independent)).toBeLessThanOrEqual(quantAgreement(c.config.method, c.config.headDim) * schemeError);
  }
}
