// One lane's 8 consecutive values of a K/V row (elements 8i..8i+7) as the cache stores them, for the
// token-wise and grouped quantized formats: shared by the cache-write kernel (cache-write-quant.wgsl)
// and the fused decode step (paged-decode-subgroup.wgsl, FUSED_STEP), so that a token written either
// way has the same bits. Needs lib/f16.wgsl, lib/quant-code.wgsl, `const MAX_CODE: f32` and
// `fn opaque_zero() -> u32` (0 read from a uniform: see quant_code).
// Numeric contract (docs/numeric-contract.md), per scale group with values in [mn, mx]:
// scale = (mx − mn)/MAX_CODE and min rounded to f16, q = quant_code(x, min16, scale16, …), q = 0 when
// scale16 = 0.

// The scale/min word of a group: f16 bits of the scale in the low half, of the minimum in the high half.
fn group_scale_min_word(mn: f32, mx: f32) -> u32 {
  return f16_bits((mx - mn) / MAX_CODE) | (f16_bits(mn) << 16u);
}

// The codes of a lane's 8 values under its group's scale/min word.
fn lane_codes(x: array<f32, 8>, scale_min: u32) -> array<u32, 8> {
  let scale16 = f16_value(scale_min);
  let min16 = f16_value(scale_min >> 16u);
  let inv_scale16 = select(0.0, 1.0 / scale16, scale16 != 0.0);
  let zero = opaque_zero();
  var codes: array<u32, 8>;
  for (var e = 0u; e < 8u; e++) {  // unroll
    codes[e] = select(0u, quant_code(x[e], min16, scale16, inv_scale16, MAX_CODE, zero), scale16 != 0.0);
  }
  return codes;
}

// 8 INT4 codes as one word in NIBBLE ORDER (src/layout.ts).
fn pack_nibbles(codes: array<u32, 8>) -> u32 {
  var word = 0u;
  for (var e = 0u; e < 8u; e++) {  // unroll
    word |= (codes[e] & 0xfu) << (8u * (e % 4u) + select(0u, 4u, e >= 4u));
  }
  return word;
}

// INT8 codes 4w..4w+3 of the lane's 8 as one word in BYTE ORDER.
fn pack_bytes(codes: array<u32, 8>, w: u32) -> u32 {
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {  // unroll
    word |= (codes[4u * w + j] & 0xffu) << (8u * j);
  }
  return word;
}
