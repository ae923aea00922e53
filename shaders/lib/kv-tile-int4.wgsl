// INT4 cache format for paged-decode-matrix-serial.wgsl (the serial variant) (layout in src/layout.ts): a row chunk is one
// vec4<u32> of 32 codes in NIBBLE ORDER (word w: elements 8w..8w+3 in the low nibbles of its bytes,
// 8w+4..8w+7 in the high nibbles). Codes 0..15 are staged as TileScalar values, exactly, two at a time
// (code_pair, lib/tile-scalar-*.wgsl: a mask and an OR per pair, no conversions), in TILE ORDER: the
// 8 positions of a word's group hold elements 0, 2, 4, 6, 1, 3, 5, 7 — the pairs a mask of
// 0x000f000f picks from w, w >> 4, w >> 8 and w >> 12. The kernel stages the queries in the same
// order (K) and reads the output rows through it (V): tile_position / tile_channel.

const HAS_SCALE_MIN: bool = true;

// Tile position of channel d (within its group of 8: 0→0, 1→4, 2→1, 3→5, 4→2, 5→6, 6→3, 7→7).
fn tile_position(d: u32) -> u32 {
  return (d & ~7u) | ((d & 1u) << 2u) | ((d >> 1u) & 3u);
}

// Channel held at tile position p (the inverse).
fn tile_channel(p: u32) -> u32 {
  return (p & ~7u) | ((p & 3u) << 1u) | ((p >> 2u) & 1u);
}

fn stage_word(tile: ptr<workgroup, array<TileScalar, TILE_TOKENS * TILE_STRIDE>>, base: u32, w: u32) {
  let a = code_pair(w & 0x000f000fu);          // elements 0, 2
  let b = code_pair((w >> 4u) & 0x000f000fu);  // 4, 6
  let c = code_pair((w >> 8u) & 0x000f000fu);  // 1, 3
  let d = code_pair((w >> 12u) & 0x000f000fu); // 5, 7
  (*tile)[base] = a.x;
  (*tile)[base + 1u] = a.y;
  (*tile)[base + 2u] = b.x;
  (*tile)[base + 3u] = b.y;
  (*tile)[base + 4u] = c.x;
  (*tile)[base + 5u] = c.y;
  (*tile)[base + 6u] = d.x;
  (*tile)[base + 7u] = d.y;
}

fn stage_chunk(tile: ptr<workgroup, array<TileScalar, TILE_TOKENS * TILE_STRIDE>>, base: u32, chunk: vec4<u32>) {
  stage_word(tile, base, chunk.x);
  stage_word(tile, base + 8u, chunk.y);
  stage_word(tile, base + 16u, chunk.z);
  stage_word(tile, base + 24u, chunk.w);
}
