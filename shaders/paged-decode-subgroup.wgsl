// Decode attention over a paged KV cache, subgroup kernel (INT4 or FP16; needs `enable subgroups;`).
// The format file included before this one (lib/kv-lane-int4.wgsl or lib/kv-lane-fp16.wgsl) supplies
// group_values(), query_lane_order(), value_channel_order() and HAS_SCALE_MIN; the host declares
// `alias CacheChunk` (vec2<u32> or vec4<u32>, CHUNK_WORDS words).
//
// Grid and outputs are those of paged-decode-workgroup.wgsl (the workgroup-memory kernel, used where subgroups
// are missing): workgroup (split, kv_head × HEAD_GROUPS + head_group, seq) owns HEADS_PER_WG query
// heads of one kv head and the tokens [split × tokens_per_split, …) of the sequence.
//
// LANES_PER_TOKEN consecutive subgroup lanes share a token: lane l holds the query values of channels
// [l·C, l·C + C), C = HEAD_DIM / LANES_PER_TOKEN, in registers, reads those channels of the token's
// K and V rows (coalesced: one CacheChunk load per CHUNK_WORDS words) and adds its partial dot
// products to the other lanes' with subgroupShuffleXor (the host keeps LANES_PER_TOKEN ≤ the
// adapter's smallest subgroup, so a token's lanes are always in one subgroup).
//   0. issue the loads that depend on nothing (context length, queries, new rows); claim this subgroup's
//      index and token slots; issue the first step's loads; the queries (rotated when K is) into
//      registers, pre-scaled for the format's lane order;
//   1. each token slot (the lanes of one token) runs its own online softmax over steps of
//      TOKENS_PER_STEP consecutive tokens of one page (one block-table read per step), with no
//      barrier and no workgroup memory in the loop; a step's loads are issued one step ahead (two
//      steps ahead measured no faster: docs/tuning.md). The
//      running maximum only moves when a score passes it by RESCALE_SLACK (exact: sums and
//      accumulators always refer to the same maximum, only rounding differs), so the rescale
//      branch is rare;
//   2. the slots are merged (log-sum-exp) within each subgroup by shuffles and across subgroups
//      through workgroup memory, MERGE_ROWS subgroups at a time;
//   3. lib/decode-epilogue.wgsl: with one split, normalise, rotate V back when it was rotated, and
//      write `out`; otherwise write the partial and its (max, sum) for shaders/paged-decode-merge.wgsl
//      (or merge them in this dispatch: MERGE_IN_DISPATCH).
// No subgroup size or layout is assumed beyond LANES_PER_TOKEN ≤ subgroup size: subgroup indices and
// token slots are claimed with one atomic (both at once, so that the merge order is the same run to run). A non-finite K/V row only affects its own (sequence, kv head).
//
// QUERY_INT8 (the `-q8` methods, INT4 caches only): each query head is quantized to int8 (q8 = round(x/s),
// s = max|x|/127, after rotation and scaling) and scored with exact integer dot products
// (dot4I8Packed) of q8 and the codes; scores are then s·(q8·codes)·scale + min·Σ(q8·s). V is unchanged.
//
// FUSED_STEP (one decode step in one dispatch; src/kernels/paged-decode.ts plans it): the sequence's
// last token (position context_len − 1) is the step's new token, whose K/V rows arrive in new_k / new_v
// (f32, unquantized) instead of the cache. The workgroups whose split holds it encode them in their
// prologue, with the cache write kernel's code (lib/quantize-lane.wgsl, the Hadamard rotation in the same
// pass as the query's): the one of head group 0 stores them in the cache for later steps, and each of
// them scores the token from those words in registers, never from memory
// (another workgroup's store may still be in flight). So it computes what the cache write followed by
// the unfused kernel computes, operation for operation (bit for bit on SwiftShader; a GPU compiler may
// contract the two kernels' f32 arithmetic differently). Split-K partials are merged by the merge kernel, or
// with MERGE_IN_DISPATCH by the last workgroup of each sequence and head group (lib/decode-epilogue.wgsl:
// every partial word travels through an atomic, because WGSL cannot order memory between workgroups
// otherwise; docs/design.md).
//
// Loops over per-invocation arrays are marked `// unroll` and unrolled by the host
// (src/kernels/wgsl-unroll.ts) so that the arrays stay in registers.
//
// Constants from src/kernels/paged-decode.ts: HEAD_DIM, NUM_KV_HEADS, PAGE_SIZE, ROW_WORDS, PAGE_WORDS,
// SCALE_MIN_REGION_OFFSET, NUM_Q_HEADS, GROUP_SIZE, HEADS_PER_WG, HEAD_GROUPS, WORKGROUP_SIZE,
// HADAMARD_BLOCK, ROTATE_Q, ROTATE_OUT, RANDOM_SIGNS, ROT_VECTORS (= HEADS_PER_WG), Q_LOADS
// (= ⌈HEADS_PER_WG · HEAD_DIM / WORKGROUP_SIZE⌉: query values per invocation); LANES_PER_TOKEN,
// CHANNELS_PER_LANE (= HEAD_DIM / LANES_PER_TOKEN), GROUPS_PER_LANE (groups of 8 values),
// CHUNK_WORDS, GROUPS_PER_CHUNK, CHUNKS_PER_LANE, LANE_VECS (vec4 of one head's lane values
// = 2·GROUPS_PER_LANE), ACC_VECS (= HEADS_PER_WG·LANE_VECS), TOKENS_PER_STEP, STEP_SCORES
// (= TOKENS_PER_STEP·HEADS_PER_WG), STEP_CHUNKS (= TOKENS_PER_STEP·CHUNKS_PER_LANE), QUERY_INT8,
// SCALE_MIN_CHUNKS (= max(1, TOKENS_PER_STEP / CHUNK_WORDS)), MAX_SUBGROUPS, MERGE_ROWS, QUERY_SHARED
// (DecodeTuning.queryInWorkgroup; never with QUERY_INT8), Q_SHARED_STRIDE (= LANE_VECS + 1), Q_SHARED_HEAD
// (= LANES_PER_TOKEN·Q_SHARED_STRIDE).

// DecodeParams and the bindings: lib/decode-io.wgsl. POOL_SPLIT (a pool over several buffers): the pages are
// read through k_pool_chunk / v_pool_chunk, generated by src/kernels/cache-pool.ts; with one buffer the
// kernel indexes k_cache / v_cache directly, exactly as it was measured (docs/tuning.md).

var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;        // [HEADS_PER_WG, HEAD_DIM] queries, later outputs (+ NEW_ROT_ROWS)
var<workgroup> context_len_shared: u32;
var<workgroup> claim_counter: atomic<u32>;                         // (subgroups claimed << 16) | token slots claimed (zero-initialised)
var<workgroup> counts_shared: vec2<u32>;                           // (subgroups, token slots)
var<workgroup> subgroup_max: array<f32, MAX_SUBGROUPS * HEADS_PER_WG>; // [subgroup, head] running maxima
var<workgroup> merge_rows: array<f32, MERGE_ROWS * HEAD_DIM>;      // [MERGE_ROWS, HEAD_DIM] subgroup sums of one head
var<workgroup> merge_sums: array<vec2<f32>, MERGE_ROWS>;           // (Σp, Σp·min) per row
var<workgroup> head_sums: array<vec2<f32>, HEADS_PER_WG>;          // (Σp, Σp·min) per head
var<workgroup> head_ml: array<vec2<f32>, HEADS_PER_WG>;            // (max·log2e, Σp) per head, for the epilogue
// #if QUERY_SHARED
// the scaled queries in group_values' order, read in the token loop instead of held in registers (fewer
// registers per invocation, more workgroups per SM): [head, lane, Q_SHARED_STRIDE] vec4, one vec4 of
// padding per lane so that the LANES_PER_TOKEN lanes' 16-byte reads of one vector hit distinct banks
var<workgroup> q_shared: array<vec4<f32>, HEADS_PER_WG * Q_SHARED_HEAD>;
// #endif

// #if FUSED_STEP
@group(0) @binding(9) var<storage, read> new_k: array<f32>;       // [S, NUM_KV_HEADS, HEAD_DIM] the step's new token
@group(0) @binding(10) var<storage, read> new_v: array<f32>;      // [S, NUM_KV_HEADS, HEAD_DIM]
// rot_buf rows HEADS_PER_WG (K) and HEADS_PER_WG + 1 (V) hold the new rows that are rotated (NEW_ROT_ROWS)
var<workgroup> new_words: array<u32, 2 * ROW_WORDS>;              // [K row, V row] the new token as stored
var<workgroup> new_scale_min: array<u32, 2>;                      // (K, V) its scale/min words (INT4)
var<workgroup> new_lane_min: array<f32, 2 * NEW_ROW_LANES>;       // [K lanes, V lanes] per-lane minima
var<workgroup> new_lane_max: array<f32, 2 * NEW_ROW_LANES>;
var<private> new_token: u32;                                      // the new token's position, context_len − 1
var<private> new_k_lane: array<CacheChunk, CHUNKS_PER_LANE>;      // this lane's chunks of the new K row
var<private> new_v_lane: array<CacheChunk, CHUNKS_PER_LANE>;
var<private> new_scale_mins: array<vec2<f32>, 2>;                 // (scale, min) of the new K and V rows
// #endif

// Stands for −inf (a const −inf is not expressible in WGSL); exp2(NEG_HUGE − m) is 0.
const NEG_HUGE: f32 = -3.0e38;
// log2 units: p = exp2(score − reference) stays ≤ 2^RESCALE_SLACK.
const RESCALE_SLACK: f32 = 8.0;

// What one lane reads for one step: its K and V chunks of TOKENS_PER_STEP consecutive tokens of one
// page, and the chunks holding those tokens' scale/min words (INT4).
struct StepLoads {
  k: array<CacheChunk, STEP_CHUNKS>,               // [token, chunk]
  v: array<CacheChunk, STEP_CHUNKS>,
  k_scale_min: array<CacheChunk, SCALE_MIN_CHUNKS>,
  v_scale_min: array<CacheChunk, SCALE_MIN_CHUNKS>,
}

// Page of the step starting at token first_t (tokens past the chunk map to its last token's page).
fn step_page(seq: u32, first_t: u32, chunk_end: u32) -> u32 {
  return block_tables[seq * params.max_pages_per_seq + min(first_t, chunk_end - 1u) / PAGE_SIZE];
}

// Issues the loads of a step; tokens past the chunk re-read its last token (their p is 0).
fn load_step(page: u32, first_t: u32, chunk_end: u32, kv_head: u32, lane: u32) -> StepLoads {
  var loads: StepLoads;
  for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
    let token_slot = kv_head * PAGE_SIZE + min(first_t + u, chunk_end - 1u) % PAGE_SIZE;
// #if POOL_SPLIT
    let first_chunk = (token_slot * ROW_WORDS) / CHUNK_WORDS + lane * CHUNKS_PER_LANE;  // in the page
    for (var c = 0u; c < CHUNKS_PER_LANE; c++) {  // unroll
      loads.k[u * CHUNKS_PER_LANE + c] = k_pool_chunk(page, first_chunk + c);
      loads.v[u * CHUNKS_PER_LANE + c] = v_pool_chunk(page, first_chunk + c);
    }
// #else
    let first_chunk = (page * PAGE_WORDS + token_slot * ROW_WORDS) / CHUNK_WORDS + lane * CHUNKS_PER_LANE;
    for (var c = 0u; c < CHUNKS_PER_LANE; c++) {  // unroll
      loads.k[u * CHUNKS_PER_LANE + c] = k_cache[first_chunk + c];
      loads.v[u * CHUNKS_PER_LANE + c] = v_cache[first_chunk + c];
    }
// #endif
  }
  if (HAS_SCALE_MIN) {
    // consecutive words from a multiple of TOKENS_PER_STEP: SCALE_MIN_CHUNKS whole chunks
// #if POOL_SPLIT
    let first_scale_min = (SCALE_MIN_REGION_OFFSET + kv_head * PAGE_SIZE + first_t % PAGE_SIZE) / CHUNK_WORDS;  // in the page
    for (var c = 0u; c < SCALE_MIN_CHUNKS; c++) {  // unroll
      loads.k_scale_min[c] = k_pool_chunk(page, first_scale_min + c);
      loads.v_scale_min[c] = v_pool_chunk(page, first_scale_min + c);
    }
// #else
    let first_scale_min = (page * PAGE_WORDS + SCALE_MIN_REGION_OFFSET + kv_head * PAGE_SIZE + first_t % PAGE_SIZE) / CHUNK_WORDS;
    for (var c = 0u; c < SCALE_MIN_CHUNKS; c++) {  // unroll
      loads.k_scale_min[c] = k_cache[first_scale_min + c];
      loads.v_scale_min[c] = v_cache[first_scale_min + c];
    }
// #endif
  }
  return loads;
}

// (scale, min) of the step's tokens from the loaded chunks; (0, 0) for tokens that are not live, whose
// words may belong to a page's unused slots. (1, 0) without scale/min (FP16).
fn step_scale_mins(chunks: array<CacheChunk, SCALE_MIN_CHUNKS>, first_word: u32, live: array<bool, TOKENS_PER_STEP>) -> array<vec2<f32>, TOKENS_PER_STEP> {
  var scale_mins: array<vec2<f32>, TOKENS_PER_STEP>;
  for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
    if (HAS_SCALE_MIN) {
      let w = select(first_word % CHUNK_WORDS, 0u, TOKENS_PER_STEP >= CHUNK_WORDS) + u;
      scale_mins[u] = select(vec2<f32>(0.0), unpack2x16float(chunks[w / CHUNK_WORDS][w % CHUNK_WORDS]), live[u]);
    } else {
      scale_mins[u] = vec2<f32>(1.0, 0.0);
    }
  }
  return scale_mins;
}

// #if FUSED_STEP
// Invocation lid < 2·NEW_ROW_LANES holds values 8·lane..8·lane+7 of the new K (lid < NEW_ROW_LANES) or
// V row; lid ≥ 2·NEW_ROW_LANES has no values.
fn new_row_of(lid: u32) -> vec3<u32> {  // (active, is V, lane in the row)
  return vec3<u32>(select(0u, 1u, lid < 2u * NEW_ROW_LANES), select(0u, 1u, lid >= NEW_ROW_LANES), lid % NEW_ROW_LANES);
}

// The row rotates like the cache write rotates it (K with the query; V when it was rotated).
fn new_row_rotated(is_v: bool) -> bool {
  return select(ROTATE_Q, ROTATE_OUT, is_v) == 1u;
}

// 1st part (loads only, first in the prologue): this invocation's 8 values of the new row.
fn fetch_new_row(lid: u32, seq: u32, kv_head: u32) -> array<f32, 8> {
  let who = new_row_of(lid);
  var x: array<f32, 8>;
  if (who.x == 1u) {
    let base = (seq * NUM_KV_HEADS + kv_head) * HEAD_DIM + who.z * 8u;
    for (var e = 0u; e < 8u; e++) {  // unroll
      x[e] = select(new_k[base + e], new_v[base + e], who.y == 1u);
    }
  }
  return x;
}

// 2nd part (before the queries' rotation): the values × signs when the row rotates, also into its
// rot_buf row then, which rotate_queries rotates with the queries.
fn stage_new_row(lid: u32, loaded: array<f32, 8>) -> array<f32, 8> {
  let who = new_row_of(lid);
  var x: array<f32, 8>;
  if (who.x == 1u) {
    let is_v = who.y == 1u;
    let lane = who.z;
    let lane_signs = sign_word(lane * 8u);
    let rotated = new_row_rotated(is_v);
    for (var e = 0u; e < 8u; e++) {  // unroll
      var value = loaded[e];
      if (rotated && RANDOM_SIGNS == 1u) {
        value *= hadamard_sign(lane_signs, lane * 8u + e);
      }
      x[e] = value;
      if (rotated) {
        rot_buf[(HEADS_PER_WG + who.y) * HEAD_DIM + lane * 8u + e] = value;
      }
    }
  }
  return x;
}

// 3rd part (after rotate_queries, from uniform control flow: barriers): the rows as the cache stores them,
// into new_words / new_scale_min, then this lane's chunks of them into registers.
fn encode_new_row(lid: u32, raw: array<f32, 8>, lane: u32) {
  let who = new_row_of(lid);
  let has_values = who.x == 1u;
  let is_v = who.y == 1u;
  var x = raw;
  if (has_values && new_row_rotated(is_v)) {
    let norm = inverseSqrt(f32(HADAMARD_BLOCK));
    for (var e = 0u; e < 8u; e++) {  // unroll
      x[e] = rot_buf[(HEADS_PER_WG + who.y) * HEAD_DIM + who.z * 8u + e] * norm;
    }
  }
  let row_words = select(0u, ROW_WORDS, is_v);
// #if QUANTIZED
  // token-wise: one scale group per row (min/max per lane, then over the row's lanes)
  var mn = x[0];
  var mx = x[0];
  for (var e = 1u; e < 8u; e++) {  // unroll
    mn = min(mn, x[e]);
    mx = max(mx, x[e]);
  }
  if (has_values) {
    new_lane_min[lid] = mn;
    new_lane_max[lid] = mx;
  }
  workgroupBarrier();
  if (has_values) {
    for (var j = 0u; j < NEW_ROW_LANES; j++) {
      mn = min(mn, new_lane_min[who.y * NEW_ROW_LANES + j]);
      mx = max(mx, new_lane_max[who.y * NEW_ROW_LANES + j]);
    }
    let scale_min = group_scale_min_word(mn, mx);
    new_words[row_words + who.z] = pack_nibbles(lane_codes(x, scale_min));
    if (who.z == 0u) {
      new_scale_min[who.y] = scale_min;
    }
  }
// #else
  if (has_values) {
    for (var w = 0u; w < 4u; w++) {  // unroll
      new_words[row_words + 4u * who.z + w] = half_pair_word(x[2u * w], x[2u * w + 1u]);
    }
  }
// #endif
  workgroupBarrier();
  for (var c = 0u; c < CHUNKS_PER_LANE; c++) {  // unroll
    for (var w = 0u; w < CHUNK_WORDS; w++) {  // unroll
      let i = (lane * CHUNKS_PER_LANE + c) * CHUNK_WORDS + w;
      new_k_lane[c][w] = new_words[i];
      new_v_lane[c][w] = new_words[ROW_WORDS + i];
    }
  }
  if (HAS_SCALE_MIN) {
    new_scale_mins[0] = unpack2x16float(new_scale_min[0]);
    new_scale_mins[1] = unpack2x16float(new_scale_min[1]);
  }
}

// The new token's words into the cache (one workgroup per sequence and kv head does this).
fn store_new_token(lid: u32, seq: u32, kv_head: u32) {
  let page = block_tables[seq * params.max_pages_per_seq + new_token / PAGE_SIZE];
  let row_slot = kv_head * PAGE_SIZE + new_token % PAGE_SIZE;
  for (var i = lid; i < 2u * ROW_WORDS; i += WORKGROUP_SIZE) {
    let word = page * PAGE_WORDS + row_slot * ROW_WORDS + i % ROW_WORDS;
    if (i < ROW_WORDS) {
      k_cache[word / CHUNK_WORDS][word % CHUNK_WORDS] = new_words[i];
    } else {
      v_cache[word / CHUNK_WORDS][word % CHUNK_WORDS] = new_words[i];
    }
  }
  if (HAS_SCALE_MIN && lid < 2u) {
    let word = page * PAGE_WORDS + SCALE_MIN_REGION_OFFSET + row_slot;
    if (lid == 0u) {
      k_cache[word / CHUNK_WORDS][word % CHUNK_WORDS] = new_scale_min[0];
    } else {
      v_cache[word / CHUNK_WORDS][word % CHUNK_WORDS] = new_scale_min[1];
    }
  }
}
// #endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(subgroup_invocation_id) sg_lane: u32,
        @builtin(subgroup_size) sg_size: u32) {
  let split = wid.x;
  let kv_head = wid.y / HEAD_GROUPS;
  let first_q_head = kv_head * GROUP_SIZE + (wid.y % HEAD_GROUPS) * HEADS_PER_WG;
  let seq = wid.z;

  // 0. every load of the prologue that depends on nothing is issued first (an invocation waits at the
  // first instruction that uses a value still in flight, so a load behind such a use would wait too):
  // the context length, the queries, the fused step's new rows; then the subgroup index and token
  // slots of this subgroup (workgroup memory starts zeroed) and the loads of this slot's first step
  let seq_context_len = context_lens[seq];
  var q_loaded: array<f32, Q_LOADS>;  // values lid + j·WORKGROUP_SIZE of the workgroup's queries
  for (var j = 0u; j < Q_LOADS; j++) {  // unroll
    q_loaded[j] = q[(seq * NUM_Q_HEADS + first_q_head) * HEAD_DIM + min(lid + j * WORKGROUP_SIZE, HEADS_PER_WG * HEAD_DIM - 1u)];
  }
// #if FUSED_STEP
  let new_loaded = fetch_new_row(lid, seq, kv_head);
// #endif
  var claim = vec2<u32>(0u);
  if (subgroupElect()) {
    // one atomic for both, so that subgroup index order and slot order agree: the subgroups' partial sums
    // are added in subgroup-index order, which then always means the same tokens in the same order
    // (two atomics could interleave between subgroups and change the rounding from run to run)
    let before = atomicAdd(&claim_counter, (1u << 16u) | (sg_size / LANES_PER_TOKEN));
    claim = vec2<u32>(before >> 16u, before & 0xffffu);
  }
  claim = subgroupBroadcastFirst(claim);
  let slot = claim.y + sg_lane / LANES_PER_TOKEN;
  let lane = sg_lane % LANES_PER_TOKEN;
  let chunk_start = split * params.tokens_per_split;
  let slot_offset = slot * TOKENS_PER_STEP;
  let first_chunk_end = min(seq_context_len, chunk_start + params.tokens_per_split);
  var next = load_step(step_page(seq, chunk_start + slot_offset, first_chunk_end), chunk_start + slot_offset, first_chunk_end, kv_head, lane);

  // queries, rotated when K is
  if (lid == 0u) {
    context_len_shared = seq_context_len;
  }
// #if FUSED_STEP
  let new_raw = stage_new_row(lid, new_loaded);
// #endif
  for (var j = 0u; j < Q_LOADS; j++) {  // unroll
    if (lid + j * WORKGROUP_SIZE < HEADS_PER_WG * HEAD_DIM) {
      stage_query_value(lid + j * WORKGROUP_SIZE, q_loaded[j]);
    }
  }
  let q_scale = rotate_queries(lid);  // ends with a barrier: every subgroup has claimed
  let context_len = workgroupUniformLoad(&context_len_shared);
// #if FUSED_STEP
  // only the workgroups whose split holds the new token encode it (a uniform branch: its barriers are
  // the whole workgroup's); the others never meet it in their token loop
  let last_token = context_len - 1u;  // uniform, unlike a read of the private new_token
  new_token = last_token;
  if (chunk_start <= last_token && last_token < chunk_start + params.tokens_per_split) {
    encode_new_row(lid, new_raw, lane);
    if (wid.y % HEAD_GROUPS == 0u) {
      store_new_token(lid, seq, kv_head);
    }
  }
// #endif
  if (lid == 0u) {
    let claimed = atomicLoad(&claim_counter);
    counts_shared = vec2<u32>(claimed >> 16u, claimed & 0xffffu);
  }
  let counts = workgroupUniformLoad(&counts_shared);

// #if QUERY_INT8
  var q8_lane: array<u32, ACC_VECS>;       // [head, lane word] int8 codes of values 4w..4w+3
  var q8_step: array<f32, HEADS_PER_WG>;
// #else
// #if QUERY_SHARED
  let q_row = lane * Q_SHARED_STRIDE;      // this lane's vectors in q_shared (+ head · Q_SHARED_HEAD)
// #else
  var q_lane: array<vec4<f32>, ACC_VECS>;  // [head, lane vec] scaled, in group_values' order
// #endif
// #endif
  var q_sum: array<f32, HEADS_PER_WG>;  // Σ_d of each head's scaled query (the INT4 min term)
  for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
// #if QUERY_INT8
    // the scaled query x becomes q8 = round(x / s), s = max|x| / 127 over the head (this lane's channels,
    // then the token's lanes), used as q8·s everywhere (the scores and Σq of the min term); a zero query keeps s = 0
    var max_abs = 0.0;
    for (var i = 0u; i < CHANNELS_PER_LANE; i++) {  // unroll
      max_abs = max(max_abs, abs(rot_buf[g * HEAD_DIM + lane * CHANNELS_PER_LANE + i] * q_scale));
    }
    for (var r = 1u; r < LANES_PER_TOKEN; r <<= 1u) {  // unroll
      max_abs = max(max_abs, subgroupShuffleXor(max_abs, r));
    }
    let inv_step = select(0.0, 127.0 / max_abs, max_abs > 0.0);
    var code_sum = 0;
// #else
    var sum = 0.0;
// #endif
    for (var i = 0u; i < GROUPS_PER_LANE; i++) {  // unroll
      let base = g * HEAD_DIM + lane * CHANNELS_PER_LANE + 8u * i;
      var x: array<f32, 8>;
      for (var j = 0u; j < 8u; j++) {  // unroll
        x[j] = rot_buf[base + j] * q_scale;
      }
// #if QUERY_INT8
      let low = pack4xI8(vec4<i32>(round(vec4<f32>(x[0], x[1], x[2], x[3]) * inv_step)));
      let high = pack4xI8(vec4<i32>(round(vec4<f32>(x[4], x[5], x[6], x[7]) * inv_step)));
      q8_lane[g * LANE_VECS + 2u * i] = low;
      q8_lane[g * LANE_VECS + 2u * i + 1u] = high;
      code_sum += dot4I8Packed(low, 0x01010101u) + dot4I8Packed(high, 0x01010101u);
// #else
      sum += ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
      let ordered = query_lane_order(x);
// #if QUERY_SHARED
      if (slot == 0u) {  // the first slot's lanes hold every lane position
        q_shared[q_row + g * Q_SHARED_HEAD + 2u * i] = ordered[0];
        q_shared[q_row + g * Q_SHARED_HEAD + 2u * i + 1u] = ordered[1];
      }
// #else
      q_lane[g * LANE_VECS + 2u * i] = ordered[0];
      q_lane[g * LANE_VECS + 2u * i + 1u] = ordered[1];
// #endif
// #endif
    }
// #if QUERY_INT8
    for (var r = 1u; r < LANES_PER_TOKEN; r <<= 1u) {  // unroll
      code_sum += subgroupShuffleXor(code_sum, r);
    }
    q8_step[g] = max_abs / 127.0;
    q_sum[g] = f32(code_sum) * q8_step[g];  // Σ q8 exact in integers
// #else
    for (var r = 1u; r < LANES_PER_TOKEN; r <<= 1u) {  // unroll
      sum += subgroupShuffleXor(sum, r);
    }
    q_sum[g] = sum;
// #endif
  }
// #if QUERY_SHARED
  workgroupBarrier();  // q_shared is complete
// #endif

  var running_max: array<f32, HEADS_PER_WG>;          // the maximum the sums below refer to
  var sum_p: array<f32, HEADS_PER_WG>;                // Σ p over this slot's tokens
  var sum_p_min: array<f32, HEADS_PER_WG>;            // Σ p·min
  var acc: array<vec4<f32>, ACC_VECS>; // Σ p·scale·values (group_values' order)
  for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
    running_max[g] = NEG_HUGE;
    sum_p[g] = 0.0;
    sum_p_min[g] = 0.0;
  }
  for (var i = 0u; i < ACC_VECS; i++) {  // unroll
    acc[i] = vec4<f32>(0.0);
  }

  // 1. slot s takes TOKENS_PER_STEP consecutive tokens (one page: TOKENS_PER_STEP divides PAGE_SIZE)
  // per step, slots side by side; tokens past the chunk re-read its last token and get p = 0.
  let chunk_end = min(context_len, chunk_start + params.tokens_per_split);  // = first_chunk_end, uniform
  let slots = counts.y;
  // Software pipeline: the loads of step n + 1 and the page of step n + 2 are issued before step n
  // is computed.
  let stride = slots * TOKENS_PER_STEP;
  var page_after = step_page(seq, chunk_start + stride + slot_offset, chunk_end);
  for (var step_start = chunk_start; step_start < chunk_end; step_start += stride) {
    let first_t = step_start + slot_offset;
    let cur = next;
    if (step_start + stride < chunk_end) {
      next = load_step(page_after, first_t + stride, chunk_end, kv_head, lane);
      page_after = step_page(seq, first_t + 2u * stride, chunk_end);
    }
    var live: array<bool, TOKENS_PER_STEP>;
    for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
      live[u] = first_t + u < chunk_end;
    }
    let first_scale_min_word = kv_head * PAGE_SIZE + first_t % PAGE_SIZE;  // ≡ its word index mod CHUNK_WORDS
// #if FUSED_STEP
    var k_scale_min = step_scale_mins(cur.k_scale_min, first_scale_min_word, live);
    var v_scale_min = step_scale_mins(cur.v_scale_min, first_scale_min_word, live);
    var k_chunks = cur.k;
    var v_chunks = cur.v;
    // the step's new token from this workgroup's registers (its row in memory may still be in flight)
    for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
      let is_new = min(first_t + u, chunk_end - 1u) == new_token;
      for (var c = 0u; c < CHUNKS_PER_LANE; c++) {  // unroll
        k_chunks[u * CHUNKS_PER_LANE + c] = select(k_chunks[u * CHUNKS_PER_LANE + c], new_k_lane[c], is_new);
        v_chunks[u * CHUNKS_PER_LANE + c] = select(v_chunks[u * CHUNKS_PER_LANE + c], new_v_lane[c], is_new);
      }
      if (HAS_SCALE_MIN) {
        k_scale_min[u] = select(k_scale_min[u], new_scale_mins[0], is_new && live[u]);
        v_scale_min[u] = select(v_scale_min[u], new_scale_mins[1], is_new && live[u]);
      }
    }
// #else
    let k_scale_min = step_scale_mins(cur.k_scale_min, first_scale_min_word, live);
    let v_scale_min = step_scale_mins(cur.v_scale_min, first_scale_min_word, live);
    let k_chunks = cur.k;
    let v_chunks = cur.v;
// #endif

    // scores: this lane's partial q·codes, summed over the token's lanes
    var score: array<f32, STEP_SCORES>;  // [token, head]
// #if QUERY_INT8
    {
      // exact integer dot products of the int8 query with the codes (≤ 256·15·127 < 2^22 in size),
      // summed over the token's lanes, then to f32 without a conversion instruction (2^23 + 2^22 bias)
      var dots: array<i32, STEP_SCORES>;
      for (var i = 0u; i < STEP_SCORES; i++) {  // unroll
        dots[i] = 0;
      }
      for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
        for (var c = 0u; c < CHUNKS_PER_LANE; c++) {  // unroll
          for (var i = 0u; i < GROUPS_PER_CHUNK; i++) {  // unroll
            let w = k_chunks[u * CHUNKS_PER_LANE + c][i];
            let low = w & 0x0f0f0f0fu;          // codes of values 8w..8w+3, one per byte (NIBBLE ORDER)
            let high = (w >> 4u) & 0x0f0f0f0fu; // values 8w+4..8w+7
            let lane_word = 2u * (c * GROUPS_PER_CHUNK + i);
            for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
              dots[u * HEADS_PER_WG + g] += dot4I8Packed(low, q8_lane[g * LANE_VECS + lane_word]) + dot4I8Packed(high, q8_lane[g * LANE_VECS + lane_word + 1u]);
            }
          }
        }
      }
      for (var r = 1u; r < LANES_PER_TOKEN; r <<= 1u) {  // unroll
        for (var i = 0u; i < STEP_SCORES; i++) {  // unroll
          dots[i] += subgroupShuffleXor(dots[i], r);
        }
      }
      for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
        for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
          score[u * HEADS_PER_WG + g] = (bitcast<f32>(dots[u * HEADS_PER_WG + g] + 0x4b400000) - 12582912.0) * q8_step[g];
        }
      }
    }
// #else
    for (var i = 0u; i < STEP_SCORES; i++) {  // unroll
      score[i] = 0.0;
    }
    for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
      for (var c = 0u; c < CHUNKS_PER_LANE; c++) {  // unroll
        for (var i = 0u; i < GROUPS_PER_CHUNK; i++) {  // unroll
          let values = group_values(k_chunks[u * CHUNKS_PER_LANE + c], i);
          let lane_vec = 2u * (c * GROUPS_PER_CHUNK + i);
          for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
// #if QUERY_SHARED
            score[u * HEADS_PER_WG + g] += dot(values[0], q_shared[q_row + g * Q_SHARED_HEAD + lane_vec]) + dot(values[1], q_shared[q_row + g * Q_SHARED_HEAD + lane_vec + 1u]);
// #else
            score[u * HEADS_PER_WG + g] += dot(values[0], q_lane[g * LANE_VECS + lane_vec]) + dot(values[1], q_lane[g * LANE_VECS + lane_vec + 1u]);
// #endif
          }
        }
      }
    }
    for (var r = 1u; r < LANES_PER_TOKEN; r <<= 1u) {  // unroll
      for (var i = 0u; i < STEP_SCORES; i++) {  // unroll
        score[i] += subgroupShuffleXor(score[i], r);
      }
    }
// #endif

    // online softmax: move the reference maximum only when a score passes it by RESCALE_SLACK
    for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
      var step_max = NEG_HUGE;
      for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
        let s = select(NEG_HUGE, k_scale_min[u].x * score[u * HEADS_PER_WG + g] + k_scale_min[u].y * q_sum[g], live[u]);
        score[u * HEADS_PER_WG + g] = s;
        step_max = max(step_max, s);
      }
      if (step_max > running_max[g] + RESCALE_SLACK) {
        let alpha = exp2(running_max[g] - step_max);  // 0 the first time (exp2(−inf))
        running_max[g] = step_max;
        sum_p[g] *= alpha;
        sum_p_min[g] *= alpha;
        for (var i = 0u; i < LANE_VECS; i++) {  // unroll
          acc[g * LANE_VECS + i] *= alpha;
        }
      }
    }

    // values: Σ p·scale·codes per lane value, Σ p and Σ p·min per slot
    for (var u = 0u; u < TOKENS_PER_STEP; u++) {  // unroll
      var p_scaled: array<f32, HEADS_PER_WG>;
      for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
        let p = select(0.0, exp2(score[u * HEADS_PER_WG + g] - running_max[g]), live[u]);
        sum_p[g] += p;
        sum_p_min[g] += p * v_scale_min[u].y;
        p_scaled[g] = p * v_scale_min[u].x;
      }
      for (var c = 0u; c < CHUNKS_PER_LANE; c++) {  // unroll
        for (var i = 0u; i < GROUPS_PER_CHUNK; i++) {  // unroll
          let values = group_values(v_chunks[u * CHUNKS_PER_LANE + c], i);
          let lane_vec = 2u * (c * GROUPS_PER_CHUNK + i);
          for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
            acc[g * LANE_VECS + lane_vec] += p_scaled[g] * values[0];
            acc[g * LANE_VECS + lane_vec + 1u] += p_scaled[g] * values[1];
          }
        }
      }
    }
  }

  // 2. merge: every slot's sums refer to the workgroup maximum of its head…
  for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
    let m = subgroupMax(running_max[g]);
    if (subgroupElect()) {
      subgroup_max[claim.x * HEADS_PER_WG + g] = m;
    }
  }
  workgroupBarrier();
  let num_subgroups = counts.x;
  var head_max: array<f32, HEADS_PER_WG>;
  for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
    var m = NEG_HUGE;
    for (var s = 0u; s < num_subgroups; s++) {
      m = max(m, subgroup_max[s * HEADS_PER_WG + g]);
    }
    head_max[g] = m;
    let alpha = exp2(running_max[g] - m);
    sum_p[g] *= alpha;
    sum_p_min[g] *= alpha;
    for (var i = 0u; i < LANE_VECS; i++) {  // unroll
      acc[g * LANE_VECS + i] *= alpha;
    }
  }
  // …then the slots of a subgroup are summed (lanes with the same channels)…
  for (var r = LANES_PER_TOKEN; r < sg_size; r <<= 1u) {
    for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
      sum_p[g] += subgroupShuffleXor(sum_p[g], r);
      sum_p_min[g] += subgroupShuffleXor(sum_p_min[g], r);
    }
    for (var i = 0u; i < ACC_VECS; i++) {  // unroll
      acc[i] += subgroupShuffleXor(acc[i], r);
    }
  }
  // …and the subgroups through workgroup memory, head by head, into rot_buf (unnormalised).
  for (var g = 0u; g < HEADS_PER_WG; g++) {  // unroll
    for (var first = 0u; first < num_subgroups; first += MERGE_ROWS) {
      let row = claim.x - first;  // wraps (large) for subgroups before `first`
      if (row < MERGE_ROWS && sg_lane < LANES_PER_TOKEN) {
        for (var i = 0u; i < GROUPS_PER_LANE; i++) {  // unroll
          let values = value_channel_order(acc[g * LANE_VECS + 2u * i], acc[g * LANE_VECS + 2u * i + 1u]);
          for (var j = 0u; j < 8u; j++) {  // unroll
            merge_rows[row * HEAD_DIM + lane * CHANNELS_PER_LANE + 8u * i + j] = values[j];
          }
        }
        if (lane == 0u) {
          merge_sums[row] = vec2<f32>(sum_p[g], sum_p_min[g]);
        }
      }
      workgroupBarrier();
      let rows = min(MERGE_ROWS, num_subgroups - first);
      for (var d = lid; d < HEAD_DIM; d += WORKGROUP_SIZE) {
        var total = select(0.0, rot_buf[g * HEAD_DIM + d], first > 0u);
        for (var r = 0u; r < rows; r++) {
          total += merge_rows[r * HEAD_DIM + d];
        }
        rot_buf[g * HEAD_DIM + d] = total;
      }
      if (lid == 0u) {
        var sums = select(vec2<f32>(0.0), head_sums[g], first > 0u);
        for (var r = 0u; r < rows; r++) {
          sums += merge_sums[r];
        }
        head_sums[g] = sums;
      }
      workgroupBarrier();
    }
  }

  // 3. Σ p·(scale·code + min) = acc + Σ p·min; lib/decode-epilogue.wgsl normalises and writes it
  // (one split) or writes the partial for shaders/paged-decode-merge.wgsl.
  for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
    rot_buf[i] += head_sums[i / HEAD_DIM].y;
  }
  if (lid < HEADS_PER_WG) {
    head_ml[lid] = vec2<f32>(head_max[lid], head_sums[lid].x);
  }
  workgroupBarrier();
  write_decode_result(lid, seq, first_q_head, split);
}
