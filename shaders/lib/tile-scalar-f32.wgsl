// Tile scalars of the matrix decode kernels (paged-decode-matrix.wgsl, paged-decode-matrix-serial.wgsl) as f32 holding f16 values: the software step on adapters
// without shader-f16 (SwiftShader). Same staging as lib/tile-scalar-f16.wgsl, same values.

alias TileScalar = f32;

fn tile_round(x: f32) -> f32 {
  return quantizeToF16(x);
}

fn half_pair(w: u32) -> vec2<f32> {
  return unpack2x16float(w);
}

// Two codes 0..15 at bits 0..3 and 16..19: each in the mantissa of 2^23 is 2^23 + c exactly.
fn code_pair(bits: u32) -> vec2<f32> {
  return bitcast<vec2<f32>>(vec2<u32>(bits & 0xffffu, bits >> 16u) | vec2<u32>(0x4b000000u)) - vec2<f32>(8388608.0);
}
