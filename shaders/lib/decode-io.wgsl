// DecodeParams, the bindings and the query prologue of both decode kernels (paged-decode-workgroup.wgsl, paged-decode-subgroup.wgsl);
// the host declares `alias CacheChunk` (vec4<u32> for paged-decode-workgroup.wgsl; vec2<u32> or vec4<u32>,
// CHUNK_WORDS words, for the subgroup kernel).

struct DecodeParams {
  max_pages_per_seq: u32,          // row stride of block_tables
  num_splits: u32,                 // workgroups along x
  tokens_per_split: u32,           // a multiple of WORKGROUP_SIZE
  scale_log2: f32,                 // softmax scale × log2(e)
  sign_bits: array<vec4<u32>, 2>,  // random Hadamard signs, bit d set = −1
}

@group(0) @binding(0) var<storage, read> q: array<f32>;                  // [S, NUM_Q_HEADS, HEAD_DIM]
// #if FUSED_STEP
@group(0) @binding(1) var<storage, read_write> k_cache: array<CacheChunk>;  // [numPages * PAGE_WORDS / CHUNK_WORDS]
@group(0) @binding(2) var<storage, read_write> v_cache: array<CacheChunk>;  // the fused step writes its new token
// #else
@group(0) @binding(1) var<storage, read> k_cache: array<CacheChunk>;     // [numPages * PAGE_WORDS / CHUNK_WORDS]
@group(0) @binding(2) var<storage, read> v_cache: array<CacheChunk>;     // [numPages * PAGE_WORDS / CHUNK_WORDS]
// #endif
@group(0) @binding(3) var<storage, read> block_tables: array<u32>;       // [S, max_pages_per_seq] page ids
@group(0) @binding(4) var<storage, read> context_lens: array<u32>;       // [S] tokens per sequence, ≥ 1
@group(0) @binding(5) var<storage, read_write> out: array<f32>;          // [S, NUM_Q_HEADS, HEAD_DIM]
// #if MERGE_IN_DISPATCH
// split-K partials merged in this dispatch (lib/decode-epilogue.wgsl): every word is MERGE_EMPTY and
// every counter 0 between calls
@group(0) @binding(6) var<storage, read_write> merge_words: array<atomic<u32>>;    // [S, NUM_Q_HEADS, num_splits, HEAD_DIM + 2] (acc, max·log2e, sum) as f32 bits
@group(0) @binding(7) var<storage, read_write> merge_counters: array<atomic<u32>>; // [S, NUM_Q_HEADS / HEADS_PER_WG] splits finished
// #else
@group(0) @binding(6) var<storage, read_write> partial_acc: array<f32>;  // [S, NUM_Q_HEADS, num_splits, HEAD_DIM]
@group(0) @binding(7) var<storage, read_write> partial_ml: array<vec2<f32>>; // [S, NUM_Q_HEADS, num_splits] (max·log2e, sum)
// #endif
@group(0) @binding(8) var<uniform> params: DecodeParams;

// #if FUSED_STEP
// A 0 the compiler cannot see, for the fused step's quantization (lib/quant-code.wgsl): the top bit of
// max_pages_per_seq, which no cache reaches (its pages are counted in u32 words of block tables).
fn opaque_zero() -> u32 {
  return params.max_pages_per_seq >> 31u;
}
// #endif

// The workgroup's HEADS_PER_WG queries into rot_buf, rotated like K when ROTATE_Q (signs, then the
// block Hadamard, unnormalised); returns the factor every query value still needs: the softmax scale
// × log2(e) (so that exp2 serves as exp), × 1/√B when rotated. Contains barriers: call from uniform
// control flow; rot_buf is complete when it returns.
fn load_queries(lid: u32, seq: u32, first_q_head: u32) -> f32 {
  for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
    stage_query_value(i, q[(seq * NUM_Q_HEADS + first_q_head) * HEAD_DIM + i]);
  }
  return rotate_queries(lid);
}

// Value i of the workgroup's queries (loaded from q) into rot_buf, × its random sign when ROTATE_Q.
fn stage_query_value(i: u32, loaded: f32) {
  rot_buf[i] = select(loaded, loaded * random_sign(i % HEAD_DIM), ROTATE_Q == 1u);
}

// load_queries after every value is staged: the rotation (or a barrier) and the factor.
fn rotate_queries(lid: u32) -> f32 {
  if (ROTATE_Q == 1u) {
    hadamard_rows_in_workgroup(lid, 1u);
  } else {
    workgroupBarrier();
  }
  return params.scale_log2 * select(1.0, inverseSqrt(f32(HADAMARD_BLOCK)), ROTATE_Q == 1u);
}
