// Tile scalars of the matrix decode kernels (paged-decode-matrix.wgsl, paged-decode-matrix-serial.wgsl) as f16 (needs `enable f16;`): what the tensor-core step
// multiplies, and the software step where the adapter has shader-f16. No conversion instruction in
// the staging path (they are slow on many GPUs): halves are bit-cast, codes placed in the mantissa.

alias TileScalar = f16;

fn tile_round(x: f32) -> f16 {
  return f16(x);
}

// The two halves of a pack2x16float word (low half first), exactly.
fn half_pair(w: u32) -> vec2<f16> {
  return bitcast<vec2<f16>>(w);
}

// Two codes 0..15 held at bits 0..3 and 16..19 of `bits` (all other bits zero): ORed into the
// mantissa of 1024 (0x6400) each half is 1024 + c exactly, and subtracting 1024 is exact.
fn code_pair(bits: u32) -> vec2<f16> {
  return bitcast<vec2<f16>>(bits | 0x64006400u) - vec2<f16>(1024.0h);
}
