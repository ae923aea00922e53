/**
 * Compares the cache bytes written by the GPU with the reference's encoding of the same rows.
 *
 * FP16 words must match exactly (both sides round f32 → f16 to nearest even in integer arithmetic).
 * Quantized rows (INT4, INT8, grouped INT4: each scale group on its own): scale/min must match
 * exactly, except within F16_TIE_WINDOW of an f16 rounding midpoint, where they may round the other
 * way (1 f16 ulp): the scale (max − min)/maxCode is an f32 division on the GPU, which WGSL allows to
 * be 2.5 ulp off (measured on an NVIDIA H200 through Dawn: ~1.5e-4 of scale words flip; SwiftShader is
 * exact), and a rotated row's min and max come from an f32 rotation. Codes are recomputed from the
 * reference's float64 (rotated) row with the GPU's own scale/min; a code may differ by one only where
 * (x − min)/scale lies within CODE_TIE_WINDOW of a half-integer: f32 rotation vs float64, and a GPU
 * compiler that might still see through the kernels' exact TwoSum tie-break (the H200's did, for ~7e-6
 * of INT8 codes within 4e-6 steps of a tie, until lib/quant-code.wgsl hid one term behind an opaque 0).
 */
import { quantFormat, rowWordIndex, scaleMinWordIndex, type CacheLayout } from '../src/layout';
import { f16Bits, f16FromBits, roundToF16 } from '../src/reference/f16';
import { rotate } from '../src/reference/hadamard';
import { roundHalfEven, unpackCodes } from '../src/reference/int4';
import { unpackBytes } from '../src/reference/int8';
import { encodeRow, rowIsRotated, type MethodConfig } from '../src/reference/kv-methods';

/** In quantization steps: an f32 rotation (~1e-6 relative) stays far below this. */
export const CODE_TIE_WINDOW = 1e-3;
/**
 * In f16 ulps: an f32 rotation is off by ~1e-6 relative ≈ 2e-3 f16 ulps, so a value this close to a
 * midpoint between two f16 values may round either way.
 */
export const F16_TIE_WINDOW = 1e-2;

export interface RowLocation {
  page: number;
  slot: number;
  /** [Hkv, D] input row values of this token */
  values: ArrayLike<number>;
}

/** True when |x| lies within F16_TIE_WINDOW ulps of the midpoint between two f16 values. */
function nearF16Midpoint(x: number): boolean {
  const a = Math.abs(x);
  const r = roundToF16(a);
  const bits = f16Bits(r);
  const lo = r <= a ? r : f16FromBits(bits - 1);
  const hi = r <= a ? f16FromBits(bits + 1) : r;
  return Math.abs((a - lo) / (hi - lo) - 0.5) < F16_TIE_WINDOW;
}

/** Mismatches between GPU cache words and the reference, as readable strings (empty: all agree). */
export function compareCacheRows(
  layout: CacheLayout,
  cfg: MethodConfig,
  words: Uint32Array,
  rows: RowLocation[],
  isKey: boolean,
): string[] {
  const problems: string[] = [];
  const d = layout.headDim;
  for (const { page, slot, values } of rows) {
    for (let h = 0; h < layout.numKvHeads; h++) {
      const x = Array.prototype.slice.call(values, h * d, (h + 1) * d) as number[];
      const want = encodeRow(cfg, x, isKey);
      const start = rowWordIndex(layout, page, h, slot);
      const got = words.subarray(start, start + layout.rowWords);
      const where = `${isKey ? 'K' : 'V'} page ${page} slot ${slot} head ${h}`;
      if (cfg.method === 'fp16') {
        for (let w = 0; w < layout.rowWords; w++) {
          if (got[w] !== want.words[w]) problems.push(`${where} word ${w}: got 0x${got[w].toString(16)}, want 0x${want.words[w].toString(16)}`);
        }
        continue;
      }
      const format = quantFormat(cfg.method, d)!;
      const rotated = rowIsRotated(cfg, isKey);
      const source = rotated ? rotate(x, cfg.hadamardBlock, cfg.signs) : Float64Array.from(x);
      const codes = format.codeBits === 8 ? unpackBytes(got, d) : unpackCodes(got, d);
      for (let g = 0; g < d / format.groupSize; g++) {
        // One scale group: the whole row, or 32 channels for int4-g32.
        const from = g * format.groupSize;
        const group = source.subarray(from, from + format.groupSize);
        const gotScaleMin = words[scaleMinWordIndex(layout, page, h, slot) + g];
        const wantScaleMin = want.scaleMins[g];
        const groupName = format.groupSize === d ? '' : ` group ${g}`;
        if (gotScaleMin !== wantScaleMin) {
          const mn = Math.min(...group);
          const mx = Math.max(...group);
          const explained = nearF16Midpoint((mx - mn) / format.maxCode) || (rotated && nearF16Midpoint(mn));
          if (!explained) problems.push(`${where}${groupName} scale/min: got 0x${gotScaleMin.toString(16)}, want 0x${wantScaleMin.toString(16)}`);
        }
        const scale = f16FromBits(gotScaleMin & 0xffff);
        const min = f16FromBits(gotScaleMin >>> 16);
        for (let i = from; i < from + format.groupSize; i++) {
          const exact = scale === 0 ? 0 : (source[i] - min) / scale;
          const wantCode = scale === 0 ? 0 : Math.min(format.maxCode, Math.max(0, roundHalfEven(exact)));
          if (codes[i] === wantCode) continue;
          const tie = Math.abs(Math.abs(exact % 1) - 0.5) < CODE_TIE_WINDOW && Math.abs(codes[i] - wantCode) === 1;
          if (!tie) problems.push(`${where} element ${i}: code ${codes[i]}, want ${wantCode} ((x − min)/scale = ${exact})`);
        }
      }
    }
  }
  return problems;
}
