// Code words of the quantized cache formats, for the decode format files (kv-format-int4.wgsl,
// kv-format-int4-g32.wgsl, kv-format-int8.wgsl). Layout facts: src/layout.ts.

// Codes to floats without an integer→float conversion (a slow instruction on many GPUs): a code c
// placed in the low mantissa bits of 2^23 is the float 2^23 + c exactly; subtracting 2^23 is exact.
const CODE_FLOAT_BIAS: f32 = 8388608.0;

fn codes_to_floats(codes: vec4<u32>) -> vec4<f32> {
  return bitcast<vec4<f32>>(codes | vec4<u32>(0x4b000000u)) - vec4<f32>(CODE_FLOAT_BIAS);
}

// NIBBLE ORDER: elements 8w..8w+3 are the low nibbles of bytes 0..3, 8w+4..8w+7 the high nibbles.
fn codes_low(w: u32) -> vec4<f32> {
  return codes_to_floats((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xfu));
}

fn codes_high(w: u32) -> vec4<f32> {
  return codes_to_floats((vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(0xfu));
}

// BYTE ORDER: elements 4w..4w+3 are bytes 0..3.
fn codes_u8(w: u32) -> vec4<f32> {
  return codes_to_floats((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu));
}

// One u32 of the K or V cache, which the decode kernel binds as array<vec4<u32>>.
fn cache_word(buffer_is_v: bool, index: u32) -> u32 {
  if (buffer_is_v) {
    return v_cache[index / 4u][index % 4u];
  }
  return k_cache[index / 4u][index % 4u];
}
