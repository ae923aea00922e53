// The quantization code of one value (docs/numeric-contract.md), decided exactly:
//   q = clamp(round_half_even((x − min16)/scale16), 0, max_code)
// (x − min16) · (1/scale16) only gives a first guess, within one code of the answer; the exact
// difference x − min16 (TwoSum: hi + lo) is then compared with the exact rounding thresholds
// (c ± ½)·scale16 (an 11-bit significand times a ≤ 9-bit half-integer for max_code ≤ 255: exact in
// f32), which moves the guess by at most one code. So the code equals the float64 reference's for any
// f32 x, including values a hair from a half-step. A compiler that reassociates f32 arithmetic would
// fold lo to (x − (hi − (hi − x))) + … = 0 (the NVIDIA H200's through Dawn/Vulkan did: ~7e-6 of INT8
// codes, each within 4e-6 steps of a tie, rounded to even instead); so b = hi − x passes through an
// XOR with `zero`, a 0 the compiler cannot see (the caller's opaque_zero(): a uniform word), which
// leaves it nothing to fold.
// No branches and no division: on the H200 a division and two branches per value made the whole
// cache write 1.3 µs slower at batch 1 (4.0 vs 2.7 µs with the code computation removed).
// The caller handles scale16 = 0 (code 0), passes inv_scale16 = 1/scale16 (computed once per group) and zero = 0u from memory.
fn quant_code(x: f32, min16: f32, scale16: f32, inv_scale16: f32, max_code: f32, zero: u32) -> u32 {
  let hi = x - min16;
  let b = bitcast<f32>(bitcast<u32>(hi - x) ^ zero);
  let lo = (x - (hi - b)) + (-min16 - b);
  let c = clamp(round(hi * inv_scale16), 0.0, max_code);
  let odd = (u32(c) & 1u) == 1u;
  let upper = (c + 0.5) * scale16;
  let lower = (c - 0.5) * scale16;
  // non-short-circuit & and | keep this straight-line code
  let up = (c < max_code) & ((hi > upper) | ((hi == upper) & ((lo > 0.0) | ((lo == 0.0) & odd))));
  let down = (c > 0.0) & ((hi < lower) | ((hi == lower) & ((lo < 0.0) | ((lo == 0.0) & odd))));
  return u32(c + select(0.0, 1.0, up) - select(0.0, 1.0, down & !up));
}
