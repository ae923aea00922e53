// FP16 cache write (the baseline): new K/V rows rounded to binary16 (f16_bits: round to nearest even,
// identical on every GPU) and stored as pairs of halves per u32, so no `shader-f16` is needed.
// One invocation per output word; workgroup_id.y selects K (0) or V (1).
//
// Constants from src/kernels/cache-write.ts: HEAD_DIM, NUM_KV_HEADS, PAGE_SIZE, ROW_WORDS (= HEAD_DIM/2),
// PAGE_WORDS, WORKGROUP_SIZE.

struct WriteParams {
  num_tokens: u32,                 // N
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
  sign_bits: array<vec4<u32>, 2>,  // unused here; same struct as the INT4 write
}

@group(0) @binding(0) var<storage, read> new_k: array<f32>;          // [N, NUM_KV_HEADS, HEAD_DIM]
@group(0) @binding(1) var<storage, read> new_v: array<f32>;          // [N, NUM_KV_HEADS, HEAD_DIM]
@group(0) @binding(2) var<storage, read> slots: array<u32>;          // [N] page * PAGE_SIZE + offset
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>;  // [numPages * PAGE_WORDS]
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>;  // [numPages * PAGE_WORDS]
@group(0) @binding(5) var<uniform> params: WriteParams;

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
  let word_index = (slot / PAGE_SIZE) * PAGE_WORDS + (kv_head * PAGE_SIZE + slot % PAGE_SIZE) * ROW_WORDS + lane;
  let element = row * HEAD_DIM + 2u * lane;
  if (wid.y == 1u) {
    v_cache[word_index] = f16_bits(new_v[element]) | (f16_bits(new_v[element + 1u]) << 16u);
  } else {
    k_cache[word_index] = f16_bits(new_k[element]) | (f16_bits(new_k[element + 1u]) << 16u);
  }
}
