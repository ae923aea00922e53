/**
 * Decode attention in float64 over contiguous per-sequence K/V, with GQA:
 *   out[s, h] = softmax(q[s, h] · K_sᵀ · scale) · V_s, query head h reads kv head ⌊h / (Hq/Hkv)⌋.
 */

export interface AttentionShape {
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
  /** [S] tokens per sequence; K/V rows are sequence 0's tokens, then sequence 1's, … */
  contextLens: ArrayLike<number>;
}

export interface AttentionResult {
  /** [S, Hq, D] */
  out: Float64Array;
  /** [S][Hq] attention probabilities over that sequence's tokens */
  probs: Float64Array[][];
}

export function kvHeadOf(queryHead: number, numQueryHeads: number, numKvHeads: number): number {
  return Math.floor(queryHead / (numQueryHeads / numKvHeads));
}

/**
 * @param q [S, Hq, D]
 * @param k [T, Hkv, D]
 * @param v [T, Hkv, D]
 */
export function decodeAttention(
  shape: AttentionShape,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  scale = 1 / Math.sqrt(shape.headDim),
): AttentionResult {
  const { numQueryHeads: hq, numKvHeads: hkv, headDim: d, contextLens } = shape;
  if (hq % hkv !== 0) throw new Error(`query heads ${hq} not a multiple of kv heads ${hkv}`);
  const numSeqs = contextLens.length;
  const out = new Float64Array(numSeqs * hq * d);
  const probs: Float64Array[][] = [];
  let firstToken = 0;
  for (let s = 0; s < numSeqs; s++) {
    const len = contextLens[s];
    probs.push([]);
    for (let h = 0; h < hq; h++) {
      const kvh = kvHeadOf(h, hq, hkv);
      const qBase = (s * hq + h) * d;
      const p = new Float64Array(len);
      let maxScore = -Infinity;
      for (let t = 0; t < len; t++) {
        const kBase = ((firstToken + t) * hkv + kvh) * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qBase + i] * k[kBase + i];
        p[t] = dot * scale;
        maxScore = Math.max(maxScore, p[t]);
      }
      let sum = 0;
      for (let t = 0; t < len; t++) {
        p[t] = Math.exp(p[t] - maxScore);
        sum += p[t];
      }
      for (let t = 0; t < len; t++) {
        p[t] /= sum;
        const vBase = ((firstToken + t) * hkv + kvh) * d;
        for (let i = 0; i < d; i++) out[qBase + i] += p[t] * v[vBase + i];
      }
      probs[s].push(p);
    }
    firstToken += len;
  }
  return { out, probs };
}
