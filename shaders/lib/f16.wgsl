// f32 → binary16 bits, round to nearest, ties to even; overflow → ±inf; NaN → quiet NaN.
// Written in integer arithmetic so every GPU stores the same bits (pack2x16float's rounding mode is
// not pinned down by WGSL). Mirrors f16Bits() in src/reference/f16.ts.
fn f16_bits(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  let sign = (bits >> 16u) & 0x8000u;
  let exponent = (bits >> 23u) & 0xffu;
  let mantissa = bits & 0x7fffffu;
  if (exponent == 0xffu) {
    return sign | 0x7c00u | select(0u, 0x200u, mantissa != 0u);
  }
  let unbiased = i32(exponent) - 127;
  if (unbiased > 15) {
    return sign | 0x7c00u;
  }
  if (unbiased >= -14) {
    var half = (u32(unbiased + 15) << 10u) | (mantissa >> 13u);
    let dropped = mantissa & 0x1fffu;
    if (dropped > 0x1000u || (dropped == 0x1000u && (half & 1u) == 1u)) {
      half += 1u;
    }
    return sign | half;
  }
  if (unbiased < -25) {
    return sign;
  }
  let full = mantissa | 0x800000u;
  let shift = u32(-unbiased - 1);
  var half = full >> shift;
  let dropped = full & ((1u << shift) - 1u);
  let halfway = 1u << (shift - 1u);
  if (dropped > halfway || (dropped == halfway && (half & 1u) == 1u)) {
    half += 1u;
  }
  return sign | half;
}

// The f32 value of binary16 bits (exact).
fn f16_value(bits: u32) -> f32 {
  return unpack2x16float(bits & 0xffffu).x;
}

// Two values as one FP16 cache word (src/layout.ts: pack2x16float order, the first value in the low half).
fn half_pair_word(a: f32, b: f32) -> u32 {
  return f16_bits(a) | (f16_bits(b) << 16u);
}
