// FP16 cache format for paged-decode-matrix.wgsl (layout in src/layout.ts): a row is ROW_WORDS u32
// words, each a pack2x16float pair (even element low). A lane stages one word at a time as two
// TileScalar values, exactly (half_pair, lib/tile-scalar-*.wgsl: a bit cast with f16 tiles), in
// channel order: the lanes that stage consecutive words store to consecutive 4-byte words.

const HAS_SCALE_MIN: bool = false;

fn tile_position(d: u32) -> u32 {
  return d;
}

fn tile_channel(p: u32) -> u32 {
  return p;
}

// Stages word `word_index` of a row (channels 2w, 2w + 1) into kv_tiles, the row starting at `row`.
fn stage_word(row: u32, word_index: u32, word: u32) {
  let pair = half_pair(word);
  kv_tiles[row + 2u * word_index] = pair.x;
  kv_tiles[row + 2u * word_index + 1u] = pair.y;
}
