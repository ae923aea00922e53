// FP16 cache format for paged-decode-workgroup.wgsl (layout in src/layout.ts): a row is HEAD_DIM/2 words, each
// pack2x16float(x[2i], x[2i+1]); no scale/min (scale 1, min 0).

fn halves8(words: vec4<u32>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y)),
    vec4<f32>(unpack2x16float(words.z), unpack2x16float(words.w)));
}

fn k_scores(row: u32, scale_min_index: u32, score: ptr<function, array<f32, HEADS_PER_WG>>) {
  var dots: array<f32, HEADS_PER_WG>;
  for (var c = 0u; c < ROW_WORDS / 4u; c++) {
    let x = halves8(k_cache[row / 4u + c]);
    for (var g = 0u; g < HEADS_PER_WG; g++) {
      dots[g] += dot(x[0], q_vec[g * (HEAD_DIM / 4u) + 2u * c]) + dot(x[1], q_vec[g * (HEAD_DIM / 4u) + 2u * c + 1u]);
    }
  }
  for (var g = 0u; g < HEADS_PER_WG; g++) {
    (*score)[g] = dots[g];
  }
}

// V values 8·lane .. 8·lane+7 of a row: 4 words, one vec4.
alias VWord = vec4<u32>;

fn load_v_word(row: u32, lane: u32) -> VWord {
  return v_cache[row / 4u + lane];
}

fn decode_v_word(w: VWord) -> array<vec4<f32>, 2> {
  return halves8(w);
}

fn v_scale_min(scale_min_index: u32) -> vec2<f32> {
  return vec2<f32>(1.0, 0.0);
}
