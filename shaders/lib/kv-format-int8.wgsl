// INT8 cache format for paged-decode-workgroup.wgsl (layout in src/layout.ts): a row is HEAD_DIM/4 words of
// 4 codes 0..255 in BYTE ORDER (word w: element 4w+j in byte j), plus one scale/min word =
// pack2x16float(scale, min) for the whole row (token-wise, as int4).

// Code helpers (codes_low, codes_high, codes_u8, cache_word): lib/kv-codes.wgsl.

// score[g] = q_g · (scale·codes + min) = scale·(q_g·codes) + min·Σq_g, for the workgroup's heads.
fn k_scores(row: u32, scale_min_index: u32, score: ptr<function, array<f32, HEADS_PER_WG>>) {
  var dots: array<f32, HEADS_PER_WG>;
  for (var c = 0u; c < ROW_WORDS / 4u; c++) {
    let words = k_cache[row / 4u + c];  // elements 16c .. 16c+15
    for (var j = 0u; j < 4u; j++) {
      let codes = codes_u8(words[j]);
      let q_index = c * 4u + j;          // q_vec holds elements 4·q_index .. 4·q_index+3
      for (var g = 0u; g < HEADS_PER_WG; g++) {
        dots[g] += dot(codes, q_vec[g * (HEAD_DIM / 4u) + q_index]);
      }
    }
  }
  let scale_min = unpack2x16float(cache_word(false, scale_min_index));
  for (var g = 0u; g < HEADS_PER_WG; g++) {
    (*score)[g] = scale_min.x * dots[g] + scale_min.y * q_sum[g];
  }
}

// Values 8·lane .. 8·lane+7 of a row: two words.
alias VWord = vec2<u32>;

fn load_v_word(row: u32, lane: u32) -> VWord {
  return vec2<u32>(cache_word(true, row + 2u * lane), cache_word(true, row + 2u * lane + 1u));
}

fn decode_v_word(w: VWord) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(codes_u8(w.x), codes_u8(w.y));
}

fn v_scale_min(scale_min_index: u32) -> vec2<f32> {
  return unpack2x16float(cache_word(true, scale_min_index));
}
