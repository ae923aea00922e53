/**
 * The int8 query of the `-q8` methods (docs/numeric-contract.md, "Int8 query"), float64: each
 * query row x (one sequence and query head, after the rotation when K is rotated) becomes
 * x̂ = round_half_even(x / s)·s with s = max|x| / 127 (x̂ = 0 for a zero row), so its codes are in
 * [−127, 127]. Attention then runs with x̂ in place of x.
 */
import { roundHalfEven } from './int4';

export const QUERY_INT8_MAX = 127;

/** x̂ of every row of `rows` ([rows, headDim]). */
export function quantizeQueryRows(rows: ArrayLike<number>, headDim: number): Float64Array {
  const out = new Float64Array(rows.length);
  for (let base = 0; base < rows.length; base += headDim) {
    let maxAbs = 0;
    for (let j = 0; j < headDim; j++) maxAbs = Math.max(maxAbs, Math.abs(rows[base + j]));
    if (maxAbs === 0) continue;
    const step = maxAbs / QUERY_INT8_MAX;
    for (let j = 0; j < headDim; j++) out[base + j] = roundHalfEven(rows[base + j] / step) * step;
  }
  return out;
}
