// INT4 cache format for paged-decode-matrix.wgsl (layout in src/layout.ts): a row is ROW_WORDS u32
// words of 8 codes each in NIBBLE ORDER (word w: elements 8w..8w+3 in the low nibbles of its bytes,
// 8w+4..8w+7 in the high nibbles). A lane stages one word at a time: its codes become TileScalar
// values, exactly, two at a time (code_pair, lib/tile-scalar-*.wgsl: a mask and an OR per pair, no
// conversion), the pairs a mask of 0x000f000f picks from w, w >> 4, w >> 8 and w >> 12 — elements
// (0, 2), (4, 6), (1, 3), (5, 7), pair j = 0..3.
//
// TILE ORDER: pair j of word w lands at tile positions 2·(j·ROW_WORDS + w) and +1, i.e. the tile row
// holds pair 0 of every word, then pair 1 of every word, … So the lanes of a subgroup that stage
// consecutive words of a row store to consecutive 4-byte words of workgroup memory (distinct banks)
// with every store instruction, where word-contiguous positions (8 per word) would put 8 lanes on
// one bank group. The kernel stages the queries in the same order (K) and reads the output rows
// through it (V): tile_position / tile_channel.

const HAS_SCALE_MIN: bool = true;

// Tile position of channel d: element e = d mod 8 of word w = d / 8 is half (e >> 1) & 1 of pair
// ((e & 1) << 1) | (e >> 2).
fn tile_position(d: u32) -> u32 {
  let e = d % 8u;
  let pair = ((e & 1u) << 1u) | ((e >> 2u) & 1u);
  return 2u * (pair * ROW_WORDS + d / 8u) + ((e >> 1u) & 1u);
}

// Channel held at tile position p (the inverse).
fn tile_channel(p: u32) -> u32 {
  let q = p / 2u;
  let pair = q / ROW_WORDS;
  return 8u * (q % ROW_WORDS) + (((pair >> 1u) & 1u) | ((p & 1u) << 1u) | ((pair & 1u) << 2u));
}

// Stages word `word_index` of a row (its 8 codes) into kv_tiles, the row starting at element `row`.
fn stage_word(row: u32, word_index: u32, word: u32) {
  let a = code_pair(word & 0x000f000fu);          // elements 0, 2
  let b = code_pair((word >> 4u) & 0x000f000fu);  // 4, 6
  let c = code_pair((word >> 8u) & 0x000f000fu);  // 1, 3
  let d = code_pair((word >> 12u) & 0x000f000fu); // 5, 7
  let base = row + 2u * word_index;
  kv_tiles[base] = a.x;
  kv_tiles[base + 1u] = a.y;
  kv_tiles[base + 2u * ROW_WORDS] = b.x;
  kv_tiles[base + 2u * ROW_WORDS + 1u] = b.y;
  kv_tiles[base + 4u * ROW_WORDS] = c.x;
  kv_tiles[base + 4u * ROW_WORDS + 1u] = c.y;
  kv_tiles[base + 6u * ROW_WORDS] = d.x;
  kv_tiles[base + 6u * ROW_WORDS + 1u] = d.y;
}
