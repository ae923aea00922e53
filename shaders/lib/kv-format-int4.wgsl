// INT4 cache format for paged-decode-workgroup.wgsl (layout in src/layout.ts): a row is HEAD_DIM/8 words of
// 8 nibbles in NIBBLE ORDER (word w: elements 8w..8w+3 in the low nibbles of bytes 0..3, 8w+4..8w+7
// in the high nibbles), plus one scale/min word = pack2x16float(scale, min).

// Code helpers (codes_low, codes_high, codes_u8, cache_word): lib/kv-codes.wgsl.

// score[g] = q_g · (scale·codes + min) = scale·(q_g·codes) + min·Σq_g, for the workgroup's heads.
fn k_scores(row: u32, scale_min_index: u32, score: ptr<function, array<f32, HEADS_PER_WG>>) {
  var dots: array<f32, HEADS_PER_WG>;
  for (var c = 0u; c < ROW_WORDS / 4u; c++) {
    let words = k_cache[row / 4u + c];
    for (var j = 0u; j < 4u; j++) {
      let low = codes_low(words[j]);
      let high = codes_high(words[j]);
      let q_index = (c * 4u + j) * 2u;
      for (var g = 0u; g < HEADS_PER_WG; g++) {
        dots[g] += dot(low, q_vec[g * (HEAD_DIM / 4u) + q_index]) + dot(high, q_vec[g * (HEAD_DIM / 4u) + q_index + 1u]);
      }
    }
  }
  let scale_min = unpack2x16float(cache_word(false, scale_min_index));
  for (var g = 0u; g < HEADS_PER_WG; g++) {
    (*score)[g] = scale_min.x * dots[g] + scale_min.y * q_sum[g];
  }
}

// One V word holds the 8 codes of values 8·lane .. 8·lane+7 of a row.
alias VWord = u32;

fn load_v_word(row: u32, lane: u32) -> VWord {
  return cache_word(true, row + lane);
}

fn decode_v_word(w: VWord) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(codes_low(w), codes_high(w));
}

fn v_scale_min(scale_min_index: u32) -> vec2<f32> {
  return unpack2x16float(cache_word(true, scale_min_index));
}
