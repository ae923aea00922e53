/**
 * End-to-end float64 reference of one decode-attention case under a KV method: quantize K/V as the
 * cache-write kernels must, rotate the query as the decode kernel must, attend, rotate back.
 */
import { decodeAttention, type AttentionShape } from './attention';
import { quantizeQueryRows } from './query-int8';
import { rotate, unrotate } from './hadamard';
import { encodeRow, rowIsRotated, type MethodConfig } from './kv-methods';

export interface ReferenceCase extends AttentionShape {
  /** [S, Hq, D] */
  q: ArrayLike<number>;
  /** [T, Hkv, D] */
  k: ArrayLike<number>;
  /** [T, Hkv, D] */
  v: ArrayLike<number>;
  scale?: number;
}

export interface ReferenceResult {
  /** [S, Hq, D] attention output in the original space */
  out: Float64Array;
  /** [S][Hq] attention probabilities */
  probs: Float64Array[][];
  /** [T, Hkv, D] decoded K and V (rotated space where the method rotates them) */
  kDecoded: Float64Array;
  vDecoded: Float64Array;
}

/** Decoded rows of a [T, Hkv, D] tensor under a method. */
export function decodeAll(cfg: MethodConfig, rows: ArrayLike<number>, headDim: number, isKey: boolean): Float64Array {
  const out = new Float64Array(rows.length);
  for (let base = 0; base < rows.length; base += headDim) {
    const row = Array.prototype.slice.call(rows, base, base + headDim) as number[];
    out.set(encodeRow(cfg, row, isKey).decoded, base);
  }
  return out;
}

function mapRows(rows: ArrayLike<number>, headDim: number, f: (row: number[]) => Float64Array): Float64Array {
  const out = new Float64Array(rows.length);
  for (let base = 0; base < rows.length; base += headDim) {
    out.set(f(Array.prototype.slice.call(rows, base, base + headDim) as number[]), base);
  }
  return out;
}

export function referenceDecode(cfg: MethodConfig, c: ReferenceCase): ReferenceResult {
  const d = c.headDim;
  const kDecoded = decodeAll(cfg, c.k, d, true);
  const vDecoded = decodeAll(cfg, c.v, d, false);
  const qRotated = rowIsRotated(cfg, true) ? mapRows(c.q, d, (r) => rotate(r, cfg.hadamardBlock, cfg.signs)) : c.q;
  const qUsed = cfg.queryInt8 ? quantizeQueryRows(qRotated, d) : qRotated;
  const { out, probs } = decodeAttention(c, qUsed, kDecoded, vDecoded, c.scale);
  const finalOut = rowIsRotated(cfg, false) ? mapRows(out, d, (r) => unrotate(r, cfg.hadamardBlock, cfg.signs)) : out;
  return { out: finalOut, probs, kDecoded, vDecoded };
}

/** Exact attention on the unquantized K/V (the accuracy baseline). */
export function exactDecode(c: ReferenceCase): Float64Array {
  return decodeAttention(c, c.q, c.k, c.v, c.scale).out;
}
