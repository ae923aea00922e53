// INT4 cache format for paged-decode-subgroup.wgsl (layout in src/layout.ts). A lane reads
// CacheChunk = vec2<u32> or vec4<u32> (declared by the host): each u32 holds one group of 8 values in
// NIBBLE ORDER (element 8w+j, j < 4, in the low nibble of byte j; element 8w+4+j in its high nibble).
//
// Codes become floats without shifts: a nibble left where it is, ORed into the mantissa of 2^23, is
// the float 2^23 + c·16^k exactly, and subtracting 2^23 is exact. The 16^k factors are folded into
// the query (query_lane_order divides by them, exactly: powers of two) and taken out of the V
// accumulators at the end (value_channel_order), so every product equals q·c bit for bit.
//   lane vector a = elements (0, 4, 1, 5) × (1, 16, 256, 4096)
//   lane vector b = elements (2, 6, 3, 7) × (65536, 256, 4096, 65536)   (6, 3, 7 read from w >> 12)

const HAS_SCALE_MIN: bool = true;
const LANE_FLOAT_BIAS: f32 = 8388608.0;

fn group_values(chunk: CacheChunk, i: u32) -> array<vec4<f32>, 2> {
  let w = chunk[i];
  let u = w >> 12u;
  let a = (vec4<u32>(w) & vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u)) | vec4<u32>(0x4b000000u);
  let b = (vec4<u32>(w, u, u, u) & vec4<u32>(0xf0000u, 0xf00u, 0xf000u, 0xf0000u)) | vec4<u32>(0x4b000000u);
  return array<vec4<f32>, 2>(bitcast<vec4<f32>>(a) - vec4<f32>(LANE_FLOAT_BIAS), bitcast<vec4<f32>>(b) - vec4<f32>(LANE_FLOAT_BIAS));
}

// Query values 0..7 of a group, in group_values' order and divided by its factors.
fn query_lane_order(x: array<f32, 8>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(
    vec4<f32>(x[0], x[4], x[1], x[5]) * vec4<f32>(1.0, 1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0),
    vec4<f32>(x[2], x[6], x[3], x[7]) * vec4<f32>(1.0 / 65536.0, 1.0 / 256.0, 1.0 / 4096.0, 1.0 / 65536.0));
}

// Accumulators in group_values' order back to values 0..7 (factors removed).
fn value_channel_order(a: vec4<f32>, b: vec4<f32>) -> array<f32, 8> {
  let x = a * vec4<f32>(1.0, 1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0);
  let y = b * vec4<f32>(1.0 / 65536.0, 1.0 / 256.0, 1.0 / 4096.0, 1.0 / 65536.0);
  return array<f32, 8>(x.x, x.z, y.x, y.z, x.y, x.w, y.y, y.w);
}
