// FP16 cache format for paged-decode-matrix-serial.wgsl (the serial variant) (layout in src/layout.ts): a row chunk is one
// vec4<u32> of 8 halves, pack2x16float pairs in order (even element low). Staged as TileScalar values,
// exactly (half_pair, lib/tile-scalar-*.wgsl: a bit cast with f16 tiles), in channel order.

const HAS_SCALE_MIN: bool = false;

fn tile_position(d: u32) -> u32 {
  return d;
}

fn tile_channel(p: u32) -> u32 {
  return p;
}

fn stage_pair(tile: ptr<workgroup, array<TileScalar, TILE_TOKENS * TILE_STRIDE>>, base: u32, w: u32) {
  let pair = half_pair(w);
  (*tile)[base] = pair.x;
  (*tile)[base + 1u] = pair.y;
}

fn stage_chunk(tile: ptr<workgroup, array<TileScalar, TILE_TOKENS * TILE_STRIDE>>, base: u32, chunk: vec4<u32>) {
  stage_pair(tile, base, chunk.x);
  stage_pair(tile, base + 2u, chunk.y);
  stage_pair(tile, base + 4u, chunk.z);
  stage_pair(tile, base + 6u, chunk.w);
}
