// FP16 cache format for paged-decode-subgroup.wgsl (layout in src/layout.ts): CacheChunk = vec4<u32>
// (declared by the host; GROUPS_PER_CHUNK = 1) is one group of 8 values, pack2x16float pairs in order; no scale/min.

const HAS_SCALE_MIN: bool = false;

fn group_values(chunk: CacheChunk, i: u32) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack2x16float(chunk.x), unpack2x16float(chunk.y)),
    vec4<f32>(unpack2x16float(chunk.z), unpack2x16float(chunk.w)));
}

fn query_lane_order(x: array<f32, 8>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(vec4<f32>(x[0], x[1], x[2], x[3]), vec4<f32>(x[4], x[5], x[6], x[7]));
}

fn value_channel_order(a: vec4<f32>, b: vec4<f32>) -> array<f32, 8> {
  return array<f32, 8>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w);
}
