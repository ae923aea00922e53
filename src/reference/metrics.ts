/** Accuracy metrics of the numeric contract (docs/numeric-contract.md), float64. */

/** ‖got − want‖₂ / ‖want‖₂ */
export function relativeL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] ** 2;
    nb += b[i] ** 2;
  }
  return dot / Math.sqrt(na * nb);
}

export interface MaxAbsError {
  value: number;
  index: number;
}

/** Largest |got − want| and where it is (NaN anywhere counts as an infinite error). */
export function maxAbsError(got: ArrayLike<number>, want: ArrayLike<number>): MaxAbsError {
  let value = 0;
  let index = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    const err = Number.isNaN(e) ? Infinity : e;
    if (err > value || index < 0) {
      value = err;
      index = i;
    }
  }
  return { value, index };
}

/** KL(p ‖ q) = Σ p log(p/q), in nats; p is the reference distribution. */
export function klDivergence(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let kl = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > 0) kl += p[i] * Math.log(p[i] / Math.max(q[i], 1e-300));
  return kl;
}
