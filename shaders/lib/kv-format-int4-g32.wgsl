// Grouped INT4 cache format (int4-g32) for paged-decode-workgroup.wgsl (layout in src/layout.ts): a row is
// HEAD_DIM/8 words of 8 nibbles in NIBBLE ORDER (as int4), plus SCALE_MIN_WORDS = HEAD_DIM/32 words
// pack2x16float(scale, min), one per group of GROUP_WORDS = 32/8 consecutive code words.
//
// The decode kernel hands formats one scale/min index per row (token-wise formats); this format finds
// its row's scale/min words from the row's word index instead (row_scale_min_index: divisions by
// compile-time constants), and returns fully dequantized values with v_scale_min() = (1, 0).
//
// Needs, besides the decode constants: SCALE_MIN_WORDS, GROUP_WORDS (prepended by src/kernels/paged-decode.ts).

// Code helpers (codes_low, codes_high, codes_u8, cache_word): lib/kv-codes.wgsl.

// Word index of the first scale/min word of the row whose codes start at word `row`.
fn row_scale_min_index(row: u32) -> u32 {
  let page = row / PAGE_WORDS;
  let slot = (row - page * PAGE_WORDS) / ROW_WORDS;  // kv_head × PAGE_SIZE + token offset
  return page * PAGE_WORDS + SCALE_MIN_REGION_OFFSET + slot * SCALE_MIN_WORDS;
}

// score[g] = Σ_groups q_g · (scale_grp·codes + min_grp), dequantizing each word once for all heads.
fn k_scores(row: u32, scale_min_index: u32, score: ptr<function, array<f32, HEADS_PER_WG>>) {
  let first_scale_min = row_scale_min_index(row);
  var dots: array<f32, HEADS_PER_WG>;
  for (var c = 0u; c < ROW_WORDS / 4u; c++) {
    let words = k_cache[row / 4u + c];
    for (var j = 0u; j < 4u; j++) {
      let word_index = c * 4u + j;
      let scale_min = unpack2x16float(cache_word(false, first_scale_min + word_index / GROUP_WORDS));
      let low = codes_low(words[j]) * scale_min.x + vec4<f32>(scale_min.y);
      let high = codes_high(words[j]) * scale_min.x + vec4<f32>(scale_min.y);
      for (var g = 0u; g < HEADS_PER_WG; g++) {
        dots[g] += dot(low, q_vec[g * (HEAD_DIM / 4u) + 2u * word_index]) + dot(high, q_vec[g * (HEAD_DIM / 4u) + 2u * word_index + 1u]);
      }
    }
  }
  for (var g = 0u; g < HEADS_PER_WG; g++) {
    (*score)[g] = dots[g];
  }
}

// The code word of values 8·lane .. 8·lane+7 and the scale/min word of their group.
alias VWord = vec2<u32>;

fn load_v_word(row: u32, lane: u32) -> VWord {
  return vec2<u32>(cache_word(true, row + lane), cache_word(true, row_scale_min_index(row) + lane / GROUP_WORDS));
}

fn decode_v_word(w: VWord) -> array<vec4<f32>, 2> {
  let scale_min = unpack2x16float(w.y);
  return array<vec4<f32>, 2>(codes_low(w.x) * scale_min.x + vec4<f32>(scale_min.y), codes_high(w.x) * scale_min.x + vec4<f32>(scale_min.y));
}

// Values come back dequantized: scale 1, min 0.
fn v_scale_min(scale_min_index: u32) -> vec2<f32> {
  return vec2<f32>(1.0, 0.0);
}
