/**
 * The KV methods of the numeric contract, float64: how one (token, kv head) row of K or V is stored
 * (cache words) and what attention reads back (the dequantized row, in rotated space when rotated).
 */
import { isQuantized, type KvMethod } from '../layout';
import { packHalves, roundToF16 } from './f16';
import { rotate } from './hadamard';
import { dequantizeRow, packCodes, packScaleMin, quantizeRow } from './int4';

export interface MethodConfig {
  method: KvMethod;
  /** Hadamard block B (int4-hadamard only). */
  hadamardBlock: number;
  /** Rotate V as well as K (int4-hadamard only). */
  rotateV: boolean;
  /** ±1 per element for the randomized rotation, or null. */
  signs: Int8Array | null;
}

export interface EncodedRow {
  /** [rowWords] u32 cache words: codes (int4) or halves (fp16) */
  words: Uint32Array;
  /** pack2x16float(scale, min) (int4), 0 for fp16 */
  scaleMin: number;
  /** [D] what attention reads back: dequantized, in the rotated space when this row is rotated */
  decoded: Float64Array;
}

export function rowIsRotated(cfg: MethodConfig, isKey: boolean): boolean {
  return cfg.method === 'int4-hadamard' && (isKey || cfg.rotateV);
}

export function encodeRow(cfg: MethodConfig, x: ArrayLike<number>, isKey: boolean): EncodedRow {
  if (!isQuantized(cfg.method)) {
    const words = new Uint32Array(x.length / 2);
    for (let i = 0; i < words.length; i++) words[i] = packHalves(x[2 * i], x[2 * i + 1]);
    return { words, scaleMin: 0, decoded: Float64Array.from(x, roundToF16) };
  }
  const source = rowIsRotated(cfg, isKey) ? rotate(x, cfg.hadamardBlock, cfg.signs) : x;
  const row = quantizeRow(source);
  return { words: packCodes(row.codes), scaleMin: packScaleMin(row.scale, row.min), decoded: dequantizeRow(row) };
}
