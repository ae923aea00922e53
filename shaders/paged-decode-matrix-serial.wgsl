// Decode attention over a paged KV cache on matrix units (tensor cores): INT4 or FP16. THE SERIAL
// VARIANT, kept during the transition to shaders/paged-decode-matrix.wgsl (one token stream per
// subgroup) so that both can be timed in one run: tuning matrixSubgroups = 0 selects it
// (src/kernels/paged-decode-matrix.ts). Measured on the H200: 1582 µs at batch 64 × 4k int4, a chain of
// 4 workgroup barriers per 16-token tile (docs/tuning.md). Unchanged but for file names.
//
// Grid and outputs are those of the other decode kernels: workgroup (split, kv_head × HEAD_GROUPS +
// head_group, seq) owns HEADS_PER_WG query heads of one kv head and the tokens
// [split × tokens_per_split, …) of the sequence. One workgroup is WORKGROUP_SIZE invocations (a
// multiple of the adapter's largest subgroup, as the matrix feature requires); every subgroup runs
// the same matrix operations on the same workgroup tiles (on NVIDIA exactly one subgroup).
//
// Matrix shapes (MAT_M × MAT_N × MAT_K, one of the adapter's f16→f32 configs, chosen by the host):
//   scores  Sᵀ[token, head] = Σ_d C[token, d] · Q̃[head, d]   left  = cache tile  (MAT_M tokens × MAT_K channels)
//                                                            right = Q̃ᵀ          (MAT_K channels × MAT_N heads)
//   values  Oᵀ[d, head]    += Σ_t Vᵀ[d, t] · P'[t, head]     left  = Vᵀ tile      (MAT_M channels × MAT_K tokens)
//                                                            right = P'           (MAT_K tokens × MAT_N heads)
// Tokens sit on the 16-row side and the query heads (a GQA group, zero-padded to MAT_N) on the
// narrow side, which wastes the least with 4 heads per kv head.
//
// Exactness: INT4 codes 0..15 and FP16 values are exact in f16, so the cache tiles are exact. The
// query and P' are not: each is passed as hi + lo f16 parts (x = hi + lo to ~2⁻²² relative, two MMAs
// into one f32 accumulator). Each query head is first multiplied by a power of two (exact) so that its
// largest |value| lies in [2^13, 2^14): its hi and lo parts are then far from f16's overflow and
// underflow. The scale/min algebra is applied to the f32 result (score = scale·(q·codes) + min·Σq;
// P' = p·scale and Σp·min per token), as in the other kernels.
//
// Per tile of TILE_TOKENS tokens (workgroup-uniform loop, 4 barriers):
//   0. once: the queries, rotated when K is, scaled per head by a power of two; matrix_stage_queries()
//      turns them into the step's hi/lo operands;
//   1. stage: the previous step's loads (K and V rows of the tile, scale/min words) become TileScalar
//      values (f16, or f32 holding f16 values; bit operations, no conversions) in k_tile / v_tile, in
//      the format's tile order (tile_position / tile_channel); the next tile's loads issued;
//   2. matrix_scores(): Sᵀ into s_tile (f32);
//   3. lanes h < HEADS_PER_WG each finish one head's column: scores, the online-softmax reference
//      maximum (moved only when a score passes it by RESCALE_SLACK), the P' factor 2^f (P' = p·scale·2^f
//      kept well inside f16's normal range), p, Σp, Σp·min, P' hi/lo into p_hi / p_lo;
//   4. when a head's reference moved (a workgroup-uniform flag), Oᵀ is spilled to workgroup memory,
//      its columns rescaled and reloaded (rare: a few times per sequence);
//   5. matrix_values(): Oᵀ += Vᵀ·P'.
// Then lib/decode-epilogue.wgsl: with one split the output is normalised (and V rotated back) here;
// otherwise the partial and its (max, sum) go to shaders/paged-decode-merge.wgsl.
//
// The matrix step comes from lib/matrix-step-serial-subgroup.wgsl (subgroup matrices) or, where the adapter
// has none, lib/matrix-step-serial-software.wgsl (the same tiles and hi/lo split, multiplied by plain loops:
// what CI runs); the format from lib/kv-tile-int4.wgsl or lib/kv-tile-fp16.wgsl; TileScalar (f16 with
// shader-f16, else f32 holding f16 values), tile_round, half_pair and code_pair from
// lib/tile-scalar-f16.wgsl or lib/tile-scalar-f32.wgsl. The host declares the constants below.
//
// Constants from src/kernels/paged-decode-matrix.ts: HEAD_DIM, NUM_KV_HEADS, PAGE_SIZE, ROW_WORDS,
// PAGE_WORDS, SCALE_MIN_REGION_OFFSET, NUM_Q_HEADS, GROUP_SIZE, HEADS_PER_WG, HEAD_GROUPS,
// WORKGROUP_SIZE, HADAMARD_BLOCK, ROTATE_Q, ROTATE_OUT, RANDOM_SIGNS, ROT_VECTORS (= HEADS_PER_WG);
// MAT_M, MAT_N, MAT_K; TILE_TOKENS (a multiple of MAT_M and MAT_K), TILE_STRIDE (a tile row, in
// TileScalar, ≥ HEAD_DIM), CHUNK_CHANNELS (channels per vec4<u32> of a row), CHUNKS_PER_ROW,
// TILE_CHUNKS (= TILE_TOKENS·CHUNKS_PER_ROW), LANE_CHUNKS (= ⌈TILE_CHUNKS / WORKGROUP_SIZE⌉),
// SCORE_BLOCKS (= TILE_TOKENS / MAT_M), Q_BLOCKS (= HEAD_DIM / MAT_K), VALUE_STEPS (= TILE_TOKENS /
// MAT_K), O_BLOCKS (= HEAD_DIM / MAT_M).

// DecodeParams and the bindings: lib/decode-io.wgsl (CacheChunk = vec4<u32>).

var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;       // [HEADS_PER_WG, HEAD_DIM] queries, later outputs
var<workgroup> k_tile: array<TileScalar, TILE_TOKENS * TILE_STRIDE>; // [token, tile position] codes or halves
var<workgroup> v_tile: array<TileScalar, TILE_TOKENS * TILE_STRIDE>; // [token, tile position]
var<workgroup> s_tile: array<f32, TILE_TOKENS * MAT_N>;           // [token, head] Q̃·codes of the tile
var<workgroup> p_hi: array<TileScalar, TILE_TOKENS * MAT_N>;      // [token, head] hi part of P' = p·scale
var<workgroup> p_lo: array<TileScalar, TILE_TOKENS * MAT_N>;      // [token, head] lo part
var<workgroup> o_tile: array<f32, HEAD_DIM * MAT_N>;              // [tile position, head] Oᵀ
var<workgroup> k_scale_min: array<vec2<f32>, TILE_TOKENS>;        // (scale, min) of the tile's tokens, (0, 0) past the end
var<workgroup> v_scale_min: array<vec2<f32>, TILE_TOKENS>;
var<workgroup> q_factor: array<f32, MAT_N>;                       // scale × 2^e: Q̃ = rotated q · q_factor
var<workgroup> q_unscale: array<f32, MAT_N>;                      // 2^−e
var<workgroup> q_sum_shared: array<f32, MAT_N>;                   // Σ_d scaled query (for the INT4 min term)
var<workgroup> alpha_shared: array<f32, MAT_N>;                   // this tile's rescale factor per head
var<workgroup> head_state: array<vec4<f32>, MAT_N>;               // (reference max, Σp, Σp·min, P' factor) at the end
var<workgroup> head_ml: array<vec2<f32>, HEADS_PER_WG>;           // (reference max, Σp), for the epilogue
var<workgroup> rescale_flag: atomic<u32>;                         // a head's reference moved in this tile
var<workgroup> context_len_shared: u32;

// Stands for −inf (a const −inf is not expressible in WGSL); exp2(NEG_HUGE − m) is 0.
const NEG_HUGE: f32 = -3.0e38;
// log2 units: p = exp2(score − reference) stays ≤ 2^RESCALE_SLACK.
const RESCALE_SLACK: f32 = 1.0;
// P' = p·scale·2^f with f chosen so that the tile's bound 2^RESCALE_SLACK·max(scale) lies in
// [2^(P_EXPONENT−1), 2^P_EXPONENT), and moved (Oᵀ rescaled by a power of two) when a tile's bound
// passes P_LIMIT: P' then stays inside f16 (≤ 65504) and far from its subnormals, which matrix units
// and f16 emulation may flush (measured: INT4 outputs 1e-3 off on SwiftShader's quantizeToF16 without it).
const P_EXPONENT: i32 = 14;
const P_LIMIT: f32 = 32768.0;
// A query head's largest |value| is brought to [2^(Q_EXPONENT−1), 2^Q_EXPONENT).
const Q_EXPONENT: i32 = 14;

// What one invocation reads for one tile: its chunks of the K and V rows, and (invocations below
// TILE_TOKENS) the scale/min words of one token.
struct TileLoads {
  k: array<vec4<u32>, LANE_CHUNKS>,
  v: array<vec4<u32>, LANE_CHUNKS>,
  k_scale_min: u32,
  v_scale_min: u32,
}

// Word index of (token t of the sequence, kv head) in a page's rows: the page from the block table.
fn row_word(seq: u32, t: u32, kv_head: u32) -> u32 {
  let page = block_tables[seq * params.max_pages_per_seq + t / PAGE_SIZE];
  return page * PAGE_WORDS + (kv_head * PAGE_SIZE + t % PAGE_SIZE) * ROW_WORDS;
}

fn scale_min_word(seq: u32, t: u32, kv_head: u32) -> u32 {
  let page = block_tables[seq * params.max_pages_per_seq + t / PAGE_SIZE];
  return page * PAGE_WORDS + SCALE_MIN_REGION_OFFSET + kv_head * PAGE_SIZE + t % PAGE_SIZE;
}

// Issues the loads of the tile starting at token `first`; tokens past chunk_end read its last token
// (staged as zeros).
fn load_tile(seq: u32, first: u32, chunk_end: u32, kv_head: u32, lid: u32) -> TileLoads {
  var loads: TileLoads;
  for (var i = 0u; i < LANE_CHUNKS; i++) {  // unroll
    let c = min(lid + i * WORKGROUP_SIZE, TILE_CHUNKS - 1u);
    let t = min(first + c / CHUNKS_PER_ROW, chunk_end - 1u);
    let chunk = row_word(seq, t, kv_head) / 4u + c % CHUNKS_PER_ROW;
    loads.k[i] = k_cache[chunk];
    loads.v[i] = v_cache[chunk];
  }
  if (HAS_SCALE_MIN) {
    let t = min(first + min(lid, TILE_TOKENS - 1u), chunk_end - 1u);
    let w = scale_min_word(seq, t, kv_head);
    loads.k_scale_min = k_cache[w / 4u][w % 4u];
    loads.v_scale_min = v_cache[w / 4u][w % 4u];
  }
  return loads;
}

// Writes a tile's loads into k_tile / v_tile / the scale-min arrays (zeros past chunk_end).
fn stage_tile(loads: TileLoads, first: u32, chunk_end: u32, lid: u32) {
  for (var i = 0u; i < LANE_CHUNKS; i++) {  // unroll
    let c = lid + i * WORKGROUP_SIZE;
    if (c < TILE_CHUNKS) {
      let t = c / CHUNKS_PER_ROW;
      let live = first + t < chunk_end;
      let base = t * TILE_STRIDE + (c % CHUNKS_PER_ROW) * CHUNK_CHANNELS;
      stage_chunk(&k_tile, base, select(vec4<u32>(0u), loads.k[i], live));
      stage_chunk(&v_tile, base, select(vec4<u32>(0u), loads.v[i], live));
    }
  }
  if (lid < TILE_TOKENS) {
    let live = first + lid < chunk_end;
    if (HAS_SCALE_MIN) {
      k_scale_min[lid] = select(vec2<f32>(0.0), unpack2x16float(loads.k_scale_min), live);
      v_scale_min[lid] = select(vec2<f32>(0.0), unpack2x16float(loads.v_scale_min), live);
    } else {
      k_scale_min[lid] = select(vec2<f32>(0.0), vec2<f32>(1.0, 0.0), live);
      v_scale_min[lid] = k_scale_min[lid];
    }
  }
}

// x as hi + lo parts for f16 operands: hi keeps the top 11 significant bits (the f32 mantissa cut to
// 10 bits, exact in f16 in its normal range), lo = x − hi exactly (≤ 2^-10·|x|, rounded to f16 when
// stored: x ≈ hi + lo to 2^-21). Bit masking, not x − f32(f16(x)): compilers may fold that round
// trip away (measured on lavapipe: lo came out 0, outputs 1e-4 off).
fn split_hi_lo(x: f32) -> vec2<f32> {
  let hi = bitcast<f32>(bitcast<u32>(x) & 0xffffe000u);
  return vec2<f32>(hi, x - hi);
}

// Q̃ = rotated query × q_factor, channel d of query head h (the matrix step splits it into hi/lo).
fn scaled_query(h: u32, d: u32) -> f32 {
  return rot_buf[h * HEAD_DIM + d] * q_factor[h];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let split = wid.x;
  let kv_head = wid.y / HEAD_GROUPS;
  let first_q_head = kv_head * GROUP_SIZE + (wid.y % HEAD_GROUPS) * HEADS_PER_WG;
  let seq = wid.z;

  // 0. the first tile's loads, issued before the query work
  let chunk_start = split * params.tokens_per_split;
  let first_chunk_end = min(context_lens[seq], chunk_start + params.tokens_per_split);
  var next = load_tile(seq, chunk_start, first_chunk_end, kv_head, lid);
  if (lid == 0u) {
    context_len_shared = context_lens[seq];
  }
  // queries (rotated when K is) → Q̃ = q·scale·2^e as hi/lo parts; Σq for the min term
  let q_scale = load_queries(lid, seq, first_q_head);
  if (lid < HEADS_PER_WG) {
    var sum = 0.0;
    var max_abs = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
      let x = rot_buf[lid * HEAD_DIM + d] * q_scale;
      sum += x;
      max_abs = max(max_abs, abs(x));
    }
    q_sum_shared[lid] = sum;
    let e = select(Q_EXPONENT - frexp(max_abs).exp, 0, max_abs == 0.0);
    q_unscale[lid] = ldexp(1.0, -e);
    q_factor[lid] = ldexp(q_scale, e);
  }
  workgroupBarrier();
  matrix_stage_queries(lid);
  let context_len = workgroupUniformLoad(&context_len_shared);
  var state: MatrixState;
  matrix_init(&state, lid);

  // per-head online-softmax state, held by invocation h < HEADS_PER_WG
  var running_max = NEG_HUGE;
  var sum_p = 0.0;
  var sum_p_min = 0.0;
  var p_factor = 0.0;  // 2^f: P' = p·scale·2^f (0 until a tile had a nonzero V scale)
  let q_sum = q_sum_shared[min(lid, MAT_N - 1u)];
  let unscale = q_unscale[min(lid, MAT_N - 1u)];

  let chunk_end = min(context_len, chunk_start + params.tokens_per_split);  // = first_chunk_end, uniform
  for (var first = chunk_start; first < chunk_end; first += TILE_TOKENS) {
    // 1. stage this tile, issue the next one's loads
    stage_tile(next, first, chunk_end, lid);
    if (lid == 0u) {
      atomicStore(&rescale_flag, 0u);
    }
    if (first + TILE_TOKENS < chunk_end) {
      next = load_tile(seq, first + TILE_TOKENS, chunk_end, kv_head, lid);
    }
    workgroupBarrier();

    // 2. Sᵀ = C·Q̃ᵀ
    matrix_scores(&state, lid);
    workgroupBarrier();

    // 3. one head per invocation: scores, reference maximum and P' factor, P' = p·scale·2^f as hi/lo,
    // Σp, Σp·min
    if (lid < HEADS_PER_WG) {
      var tile_max = NEG_HUGE;
      var v_scale_max = 0.0;
      for (var t = 0u; t < TILE_TOKENS; t++) {
        let sm = k_scale_min[t];
        let s = select(NEG_HUGE, sm.x * s_tile[t * MAT_N + lid] * unscale + sm.y * q_sum, first + t < chunk_end);
        s_tile[t * MAT_N + lid] = s;
        tile_max = max(tile_max, s);
        v_scale_max = max(v_scale_max, v_scale_min[t].x);
      }
      var alpha = 1.0;
      if (tile_max > running_max + RESCALE_SLACK) {
        alpha = exp2(running_max - tile_max);  // 0 the first time (exp2(−inf))
        running_max = tile_max;
        sum_p *= alpha;
        sum_p_min *= alpha;
      }
      var alpha_out = alpha;
      let bound = exp2(RESCALE_SLACK) * v_scale_max;  // ≥ every p·scale of the tile
      if (bound > 0.0 && (p_factor == 0.0 || bound * p_factor >= P_LIMIT)) {
        let factor = ldexp(1.0, P_EXPONENT - frexp(bound).exp);
        alpha_out = select(alpha * factor / p_factor, 0.0, p_factor == 0.0);  // Oᵀ is still 0 the first time
        p_factor = factor;
      }
      if (alpha_out != 1.0) {
        atomicOr(&rescale_flag, 1u);
      }
      alpha_shared[lid] = alpha_out;
      for (var t = 0u; t < TILE_TOKENS; t++) {
        let sm = v_scale_min[t];
        let p = select(0.0, exp2(s_tile[t * MAT_N + lid] - running_max), first + t < chunk_end);
        sum_p += p;
        sum_p_min += p * sm.y;
        let parts = split_hi_lo(p * sm.x * p_factor);
        p_hi[t * MAT_N + lid] = tile_round(parts.x);
        p_lo[t * MAT_N + lid] = tile_round(parts.y);
      }
    }
    // 4. rescale Oᵀ's columns when a reference moved
    if (workgroupUniformLoad(&rescale_flag) != 0u) {
      matrix_spill_out(&state, lid);
      workgroupBarrier();
      for (var i = lid; i < HEAD_DIM * MAT_N; i += WORKGROUP_SIZE) {
        o_tile[i] *= select(1.0, alpha_shared[i % MAT_N], i % MAT_N < HEADS_PER_WG);
      }
      workgroupBarrier();
      matrix_fill_out(&state, lid);
    }

    // 5. Oᵀ += Vᵀ·P'
    matrix_values(&state, lid);
    workgroupBarrier();
  }

  // Oᵀ → o_tile; the heads' sums → head_state
  matrix_spill_out(&state, lid);
  if (lid < HEADS_PER_WG) {
    head_state[lid] = vec4<f32>(running_max, sum_p, sum_p_min, p_factor);
    head_ml[lid] = vec2<f32>(running_max, sum_p);
  }
  workgroupBarrier();

  // Σ p·(scale·code + min) = Oᵀ / 2^f + Σ p·min; lib/decode-epilogue.wgsl normalises and writes it
  // (one split) or writes the partial for shaders/paged-decode-merge.wgsl.
  for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
    let h = i / HEAD_DIM;
    let sums = head_state[h];
    rot_buf[i] = select(o_tile[tile_position(i % HEAD_DIM) * MAT_N + h] / sums.w, 0.0, sums.w == 0.0) + sums.z;
  }
  workgroupBarrier();
  write_decode_result(lid, seq, first_q_head, split);
}
