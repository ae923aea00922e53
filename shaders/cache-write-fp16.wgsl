// FP16 cache write (the baseline): new K/V rows rounded to binary16 (f16_bits: round to nearest even,
// identical on every GPU) and stored as pairs of halves per u32, so no `shader-f16` is needed.
// One invocation per output word; workgroup_id.y selects K (0) or V (1).
//
// Constants from src/kernels/cache-write.ts: HEAD_DIM, NUM_KV_HEADS, PAGE_SIZE, ROW_WORDS (= HEAD_DIM/2),
// PAGE_WORDS, WORKGROUP_SIZE.

// WriteParams and the bindings: lib/cache-write-io.wgsl.

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let index = (wid.x + wid.z * nwg.x) * WORKGROUP_SIZE + lid;  // over [N, NUM_KV_HEADS, ROW_WORDS]
  if (index >= params.num_tokens * NUM_KV_HEADS * ROW_WORDS) {
    return;
  }
  let row = index / ROW_WORDS;
  let lane = index % ROW_WORDS;
  let token = row / NUM_KV_HEADS;
  let kv_head = row % NUM_KV_HEADS;
  let slot = slots[token];
  let word_in_page = (kv_head * PAGE_SIZE + slot % PAGE_SIZE) * ROW_WORDS + lane;
  let element = row * HEAD_DIM + 2u * lane;
  let is_v = wid.y == 1u;
  let x = select(vec2<f32>(new_k[element], new_k[element + 1u]), vec2<f32>(new_v[element], new_v[element + 1u]), is_v);
  store_cache_word(is_v, slot / PAGE_SIZE, word_in_page, half_pair_word(x.x, x.y));
}
