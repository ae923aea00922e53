// FP16 cache format for paged-decode-matrix.wgsl (layout in src/layout.ts): a row chunk is one
// vec4<u32> of 8 halves, pack2x16float pairs in order (even element low). Staged as TileScalar values,
// exactly (an f16 value is an f16, or an f32 that holds it).

const HAS_SCALE_MIN: bool = false;

fn stage_chunk(tile: ptr<workgroup, array<TileScalar, TILE_TOKENS * TILE_STRIDE>>, base: u32, chunk: vec4<u32>) {
  let a = unpack2x16float(chunk.x);
  let b = unpack2x16float(chunk.y);
  let c = unpack2x16float(chunk.z);
  let d = unpack2x16float(chunk.w);
  (*tile)[base] = TileScalar(a.x);
  (*tile)[base + 1u] = TileScalar(a.y);
  (*tile)[base + 2u] = TileScalar(b.x);
  (*tile)[base + 3u] = TileScalar(b.y);
  (*tile)[base + 4u] = TileScalar(c.x);
  (*tile)[base + 5u] = TileScalar(c.y);
  (*tile)[base + 6u] = TileScalar(d.x);
  (*tile)[base + 7u] = TileScalar(d.y);
}
