// INT4 cache format for paged-decode-matrix.wgsl (layout in src/layout.ts): a row chunk is one
// vec4<u32> of 32 codes in NIBBLE ORDER (word w: elements 8w..8w+3 in the low nibbles of its bytes,
// 8w+4..8w+7 in the high nibbles). Codes 0..15 are staged as TileScalar values, exactly.

const HAS_SCALE_MIN: bool = true;

fn stage_word(tile: ptr<workgroup, array<TileScalar, TILE_TOKENS * TILE_STRIDE>>, base: u32, w: u32) {
  let lo = vec4<f32>(unpack4xU8(w & 0x0f0f0f0fu));
  let hi = vec4<f32>(unpack4xU8((w >> 4u) & 0x0f0f0f0fu));
  (*tile)[base] = TileScalar(lo.x);
  (*tile)[base + 1u] = TileScalar(lo.y);
  (*tile)[base + 2u] = TileScalar(lo.z);
  (*tile)[base + 3u] = TileScalar(lo.w);
  (*tile)[base + 4u] = TileScalar(hi.x);
  (*tile)[base + 5u] = TileScalar(hi.y);
  (*tile)[base + 6u] = TileScalar(hi.z);
  (*tile)[base + 7u] = TileScalar(hi.w);
}

fn stage_chunk(tile: ptr<workgroup, array<TileScalar, TILE_TOKENS * TILE_STRIDE>>, base: u32, chunk: vec4<u32>) {
  stage_word(tile, base, chunk.x);
  stage_word(tile, base + 8u, chunk.y);
  stage_word(tile, base + 16u, chunk.z);
  stage_word(tile, base + 24u, chunk.w);
}
