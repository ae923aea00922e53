/**
 * The KV methods of the numeric contract, float64: how one (token, kv head) row of K or V is stored
 * (cache words) and what attention reads back (the dequantized row, in rotated space when rotated).
 * Quantized methods apply docs/numeric-contract.md per scale group (src/layout.ts quantFormat): the whole row for
 * int4, int4-hadamard and int8; 32 channels for int4-g32.
 */
import { quantFormat, type KvMethod } from '../layout';
import { packHalves, roundToF16, unpackHalves } from './f16';
import { rotate } from './hadamard';
import { dequantizeRow, packCodes, packScaleMin, quantizeRow, unpackCodes, unpackScaleMin } from './int4';
import { packBytes, unpackBytes } from './int8';

export interface MethodConfig {
  method: KvMethod;
  /** Hadamard block B (int4-hadamard only). */
  hadamardBlock: number;
  /** Rotate V as well as K (int4-hadamard only). */
  rotateV: boolean;
  /** ±1 per element for the randomized rotation, or null. */
  signs: Int8Array | null;
  /** The query is quantized to int8 per head before scoring (the `-q8` methods; default false). */
  queryInt8?: boolean;
}

export interface EncodedRow {
  /** [rowWords] u32 cache words: codes (int4, int8) or halves (fp16) */
  words: Uint32Array;
  /** pack2x16float(scale, min) of the row (of its first group for int4-g32), 0 for fp16 */
  scaleMin: number;
  /** [scaleMinWords] every scale/min word of the row, group by group (empty for fp16) */
  scaleMins: Uint32Array;
  /** [D] what attention reads back: dequantized, in the rotated space when this row is rotated */
  decoded: Float64Array;
}

export function rowIsRotated(cfg: MethodConfig, isKey: boolean): boolean {
  return cfg.method === 'int4-hadamard' && (isKey || cfg.rotateV);
}

export function encodeRow(cfg: MethodConfig, x: ArrayLike<number>, isKey: boolean): EncodedRow {
  const format = quantFormat(cfg.method, x.length);
  if (format === null) {
    const words = new Uint32Array(x.length / 2);
    for (let i = 0; i < words.length; i++) words[i] = packHalves(x[2 * i], x[2 * i + 1]);
    return { words, scaleMin: 0, scaleMins: new Uint32Array(0), decoded: Float64Array.from(x, roundToF16) };
  }
  const source = rowIsRotated(cfg, isKey) ? rotate(x, cfg.hadamardBlock, cfg.signs) : x;
  const groups = x.length / format.groupSize;
  const codes = new Uint8Array(x.length);
  const scaleMins = new Uint32Array(groups);
  const decoded = new Float64Array(x.length);
  for (let g = 0; g < groups; g++) {
    const from = g * format.groupSize;
    const group = quantizeRow(Array.prototype.slice.call(source, from, from + format.groupSize) as number[], format.maxCode);
    codes.set(group.codes, from);
    scaleMins[g] = packScaleMin(group.scale, group.min);
    decoded.set(dequantizeRow(group), from);
  }
  return { words: format.codeBits === 8 ? packBytes(codes) : packCodes(codes), scaleMin: scaleMins[0], scaleMins, decoded };
}

/**
 * The inverse of the storage: what attention reads from one stored row, decoded from the cache words
 * alone (rotated space when the row was rotated). Used to measure what the GPU actually stored.
 * @param words [rowWords] u32 codes (int4, int8) or halves (fp16)
 * @param scaleMins [scaleMinWords] the row's pack2x16float(scale, min) words (ignored for fp16)
 */
export function decodeRowWords(method: KvMethod, words: ArrayLike<number>, scaleMins: ArrayLike<number>, headDim: number): Float64Array {
  const format = quantFormat(method, headDim);
  const out = new Float64Array(headDim);
  if (format === null) {
    for (let i = 0; i < headDim / 2; i++) [out[2 * i], out[2 * i + 1]] = unpackHalves(words[i]);
    return out;
  }
  const codes = format.codeBits === 8 ? unpackBytes(words, headDim) : unpackCodes(words, headDim);
  for (let g = 0; g < headDim / format.groupSize; g++) {
    const from = g * format.groupSize;
    out.set(dequantizeRow({ codes: codes.subarray(from, from + format.groupSize), ...unpackScaleMin(scaleMins[g]) }), from);
  }
  return out;
}
