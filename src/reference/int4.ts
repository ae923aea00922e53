/**
 * The INT4 scheme of the numeric contract (docs/numeric-contract.md), float64, one (token, kv head) row at a time:
 *   mn = min(x), mx = max(x), scale = (mx − mn)/15, both stored as f16 (scale16, mn16);
 *   q = clamp(roundHalfEven((x − mn16)/scale16), 0, 15), q = 0 when scale16 = 0;
 *   x̂ = q·scale16 + mn16.
 * Packing follows NIBBLE ORDER in src/layout.ts.
 */
import { INT4_MAX_CODE, NIBBLES_PER_WORD, nibbleShift } from '../layout';
import { packHalves, roundToF16, unpackHalves } from './f16';

export interface QuantizedRow {
  /** [D] codes 0..maxCode */
  codes: Uint8Array;
  /** f16-rounded scale */
  scale: number;
  /** f16-rounded minimum */
  min: number;
}

/** Round half to even, as WGSL's round(). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Quantizes one scale group (a row, or a channel group) with codes 0..maxCode (15 for INT4; 255 for
 * INT8, whose codes do not fit the 4-bit packers below: see int8.ts).
 */
export function quantizeRow(x: ArrayLike<number>, maxCode = INT4_MAX_CODE): QuantizedRow {
  let mn = Infinity;
  let mx = -Infinity;
  for (let i = 0; i < x.length; i++) {
    mn = Math.min(mn, x[i]);
    mx = Math.max(mx, x[i]);
  }
  const scale = roundToF16((mx - mn) / maxCode);
  const min = roundToF16(mn);
  const codes = new Uint8Array(x.length);
  if (scale !== 0) {
    for (let i = 0; i < x.length; i++) {
      codes[i] = Math.min(maxCode, Math.max(0, roundHalfEven((x[i] - min) / scale)));
    }
  }
  return { codes, scale, min };
}

export function dequantizeRow(row: QuantizedRow): Float64Array {
  const out = new Float64Array(row.codes.length);
  for (let i = 0; i < out.length; i++) out[i] = row.codes[i] * row.scale + row.min;
  return out;
}

/** [D] codes → [D/8] u32 words in NIBBLE ORDER. */
export function packCodes(codes: Uint8Array): Uint32Array {
  const words = new Uint32Array(codes.length / NIBBLES_PER_WORD);
  for (let i = 0; i < codes.length; i++) {
    const w = Math.floor(i / NIBBLES_PER_WORD);
    words[w] = (words[w] | (codes[i] << nibbleShift(i % NIBBLES_PER_WORD))) >>> 0;
  }
  return words;
}

/** [D/8] u32 words → [D] codes. */
export function unpackCodes(words: ArrayLike<number>, length = words.length * NIBBLES_PER_WORD): Uint8Array {
  const codes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    codes[i] = (words[Math.floor(i / NIBBLES_PER_WORD)] >>> nibbleShift(i % NIBBLES_PER_WORD)) & 0xf;
  }
  return codes;
}

export function packScaleMin(scale: number, min: number): number {
  return packHalves(scale, min);
}

export function unpackScaleMin(word: number): { scale: number; min: number } {
  const [scale, min] = unpackHalves(word);
  return { scale, min };
}
