// Decode attention over a paged KV cache on matrix units (tensor cores): INT4 or FP16, one stream of
// token tiles per subgroup (needs `enable subgroups;`).
//
// Grid and outputs are those of the other decode kernels: workgroup (split, kv_head × HEAD_GROUPS +
// head_group, seq) owns HEADS_PER_WG query heads of one kv head and the tokens
// [split × tokens_per_split, …) of the sequence. The workgroup is MATRIX_STREAMS subgroups of
// SUBGROUP_SIZE lanes (the host compiles this kernel only where the adapter's subgroup size is fixed:
// subgroupMinSize = subgroupMaxSize = SUBGROUP_SIZE). Each subgroup claims a stream index (an atomic
// ticket) and owns the tiles n·MATRIX_STREAMS + stream (n = 0, 1, …) of TILE_TOKENS tokens each, its
// own region of every workgroup array, its own online softmax and its own Oᵀ; the streams' partial
// results are merged once, at the end.
//
// Matrix shapes (MAT_M × MAT_N × MAT_K, one of the adapter's f16→f32 configs, chosen by the host):
//   scores  Sᵀ[token, head] = Σ_p C[token, p] · Q̃[head, p]    left  = K tile     (MAT_M tokens × MAT_K positions)
//                                                            right = Q̃ᵀ         (MAT_K positions × MAT_N heads)
//   values  Oᵀ[p, head]    += Σ_t Vᵀ[p, t] · P'[t, head]      left  = Vᵀ tile    (MAT_M positions × MAT_K tokens)
//                                                            right = P'          (MAT_K tokens × MAT_N heads)
// (p: tile positions, the channels in the format's tile order.) Tokens sit on the 16-row side and the
// query heads (a GQA group, zero-padded to MAT_N) on the narrow side; Oᵀ (channels as rows, heads as
// columns) stays in the subgroup's result matrices across all its tiles.
//
// Exactness (as the serial variant, paged-decode-matrix-serial.wgsl): INT4 codes and FP16 values are
// exact in f16; the query and P' are each passed as hi + lo f16 parts (x = hi + lo to ~2⁻²¹, two MMAs
// into one f32 accumulator); each query head is first multiplied by a power of two so that its largest
// |value| lies in [2^13, 2^14); the scale/min algebra is applied to the f32 results (score =
// scale·(q·codes) + min·Σq; P' = p·scale·2^f and Σp·min per token).
//
// Synchronisation, chosen by the WGSL memory model: workgroup memory written by some invocations and
// read by others is ordered only by a workgroup barrier (WGSL has no subgroup-scoped barrier, atomics
// are relaxed, and a matrix load or store is performed by unspecified lanes of the subgroup, so even
// "my subgroup wrote it" needs one). So every lane → matrix and matrix → lane hand-off (staged tiles,
// S, P', a spilled Oᵀ) crosses a workgroupBarrier, and the streams advance in lock step: one step is
// one tile per stream, with TWO barriers per step (the second is the workgroupUniformLoad of the
// rescale flags), a stream-independent trip count, and no branch on the stream around a barrier:
//   L (lanes)   V of tile n and K of tile n + 1 are staged (each lane one u32 word at a time, bit
//               operations, no conversions; with PREFETCH_TILES their words were loaded one step
//               earlier, and the loads of V of tile n + 1 and K of tile n + 2 are issued now). Then the
//               softmax of tile n: the lanes form head groups of TOKEN_LANES lanes, lane r of a group
//               takes token r (+ TOKEN_LANES·j) and its group's heads of that S row; row maxima by
//               reductions within the group, the reference maximum moved only when a score
//               passes it by RESCALE_SLACK, the P' factor 2^f (P' within f16's normal range), p, P'
//               hi/lo into p_hi / p_lo; Σp and Σp·min stay in each lane's registers (reduced at the
//               end); the scale/min words of tile n + 1 are loaded.
//   barrier     (workgroupUniformLoad: which streams must rescale Oᵀ)
//   rescale     rare: a flagged stream stores Oᵀ to o_mem, its lanes scale the moved columns, it
//               reloads Oᵀ (three barriers per flagged stream)
//   M (matrix)  Oᵀ += Vᵀ·P' of tile n; Sᵀ of tile n + 1 into s_mem
//   barrier
// Then: the streams' (maximum, Σp, Σp·min, P' factor) per head, log-sum-exp merge of their Oᵀ through
// o_mem into rot_buf, and lib/decode-epilogue.wgsl: with one split the output is normalised (and V
// rotated back) here; otherwise the partial and its (max, sum) go to shaders/paged-decode-merge.wgsl.
//
// The matrix step comes from lib/matrix-step-subgroup.wgsl (subgroup matrices) or, where the adapter
// has none, lib/matrix-step-software.wgsl (the same tiles and hi/lo split, multiplied by plain loops
// over the stream's lanes: what CI runs), its functions pasted into main by the host (inlineCalls:
// matrix state passed between functions compiled 1.5× slower on the H200); the format from lib/kv-stream-int4.wgsl or
// lib/kv-stream-fp16.wgsl; TileScalar (f16 with shader-f16, else f32 holding f16 values), tile_round,
// half_pair and code_pair from lib/tile-scalar-f16.wgsl or lib/tile-scalar-f32.wgsl. Loops over
// per-invocation arrays are marked `// unroll` (src/kernels/wgsl-unroll.ts).
//
// Constants from src/kernels/paged-decode-matrix.ts: HEAD_DIM, NUM_KV_HEADS, PAGE_SIZE, ROW_WORDS,
// PAGE_WORDS, SCALE_MIN_REGION_OFFSET, NUM_Q_HEADS, GROUP_SIZE, HEADS_PER_WG, HEAD_GROUPS,
// WORKGROUP_SIZE (= MATRIX_STREAMS·SUBGROUP_SIZE), HADAMARD_BLOCK, ROTATE_Q, ROTATE_OUT, RANDOM_SIGNS,
// ROT_VECTORS (= HEADS_PER_WG); MAT_M, MAT_N, MAT_K; MATRIX_STREAMS, SUBGROUP_SIZE, TILE_TOKENS (a
// multiple of MAT_M, MAT_K and 8), TILE_STRIDE (a tile row in TileScalar, HEAD_DIM + 8: rows 16-byte
// aligned and an odd number of 16-byte units apart, so a matrix load's 8 rows hit distinct banks),
// TILE_ELEMENTS (= TILE_TOKENS·TILE_STRIDE), TILE_WORDS (= TILE_TOKENS·ROW_WORDS), LANE_WORDS
// (= ⌈TILE_WORDS / SUBGROUP_SIZE⌉), PREFETCH_TILES (a tile's words are loaded into registers one step
// before they are staged; else when staged), UNROLL_LANES (the loops over a lane's words, marked
// `// unroll-lanes`, unrolled so that those arrays stay in registers), TOKEN_LANES, HEADS_PER_LANE and
// HEAD_GROUPS_IN_SUBGROUP (the softmax's head groups, see token_lane), LANE_TOKENS (= ⌈TILE_TOKENS /
// TOKEN_LANES⌉), STAGE_GROUP (tokens one staging instruction covers, see stage_token), SCORE_BLOCKS
// (= TILE_TOKENS / MAT_M), Q_BLOCKS (= HEAD_DIM / MAT_K), VALUE_STEPS (= TILE_TOKENS / MAT_K),
// O_BLOCKS (= HEAD_DIM / MAT_M), O_REGIONS.

// DecodeParams and the bindings: lib/decode-io.wgsl (CacheChunk = u32).

var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;                  // [HEADS_PER_WG, HEAD_DIM] queries, later outputs
var<workgroup> kv_tiles: array<TileScalar, MATRIX_STREAMS * 2u * TILE_ELEMENTS>; // [stream, K | V, token, tile position]; Q̃ hi/lo first (hardware step)
var<workgroup> s_mem: array<f32, MATRIX_STREAMS * TILE_TOKENS * MAT_N>;      // [stream, token, head] Q̃·codes of the stream's tile
var<workgroup> p_hi: array<TileScalar, MATRIX_STREAMS * TILE_TOKENS * MAT_N>; // [stream, token, head] hi part of P' = p·scale·2^f
var<workgroup> p_lo: array<TileScalar, MATRIX_STREAMS * TILE_TOKENS * MAT_N>; // [stream, token, head] lo part
var<workgroup> o_mem: array<f32, O_REGIONS * HEAD_DIM * MAT_N>;             // [region, tile position, head] Oᵀ (see the matrix step)
var<workgroup> q_factor: array<f32, MAT_N>;                                  // scale × 2^e: Q̃ = rotated q · q_factor
var<workgroup> q_unscale: array<f32, MAT_N>;                                 // 2^−e
var<workgroup> q_sum_shared: array<f32, MAT_N>;                              // Σ_d scaled query (for the INT4 min term)
var<workgroup> stream_state: array<vec4<f32>, MATRIX_STREAMS * HEADS_PER_WG>; // [stream, head] (reference max, Σp, Σp·min, P' factor) at the end
var<workgroup> head_ml: array<vec2<f32>, HEADS_PER_WG>;                      // (max·log2e, Σp) per head, for the epilogue
var<workgroup> rescale_bits: array<atomic<u32>, 2>;                          // by step parity: bit s = stream s must rescale Oᵀ
var<workgroup> stream_counter: atomic<u32>;                                  // streams claimed (zero-initialised)
var<workgroup> context_len_shared: u32;

// Stands for −inf (a const −inf is not expressible in WGSL); exp2(NEG_HUGE − m) is 0.
const NEG_HUGE: f32 = -3.0e38;
// log2 units: p = exp2(score − reference) stays ≤ 2^RESCALE_SLACK.
const RESCALE_SLACK: f32 = 2.0;
// P' = p·scale·2^f with f chosen so that the tile's bound 2^RESCALE_SLACK·max(scale) lies in
// [2^(P_EXPONENT−1), 2^P_EXPONENT), and moved (Oᵀ rescaled by a power of two) when a tile's bound
// passes P_LIMIT: P' then stays inside f16 (≤ 65504) and far from its subnormals, which matrix units
// and f16 emulation may flush (measured: INT4 outputs 1e-3 off on SwiftShader's quantizeToF16 without it).
const P_EXPONENT: i32 = 14;
const P_LIMIT: f32 = 32768.0;
// A query head's largest |value| is brought to [2^(Q_EXPONENT−1), 2^Q_EXPONENT).
const Q_EXPONENT: i32 = 14;

// The softmax's lanes: a subgroup's lanes form SUBGROUP_SIZE / TOKEN_LANES head groups of TOKEN_LANES
// lanes; head group g takes query heads g·HEADS_PER_LANE + i (i < HEADS_PER_LANE; those ≥ HEADS_PER_WG
// idle) and its lane r the tile's tokens r + j·TOKEN_LANES (j < LANE_TOKENS). Reductions over a head's
// tokens stay within a head group (token_max, token_sum: XOR shuffles below TOKEN_LANES; with one head
// group, HEAD_GROUPS_IN_SUBGROUP = 0, the subgroup's own reductions).
fn token_lane(lane: u32) -> u32 {
  return lane % TOKEN_LANES;
}

// #if HEAD_GROUPS_IN_SUBGROUP
fn lane_head(lane: u32, i: u32) -> u32 {
  return (lane / TOKEN_LANES) * HEADS_PER_LANE + i;
}

fn token_max(x: f32) -> f32 {
  var m = x;
  for (var offset = 1u; offset < TOKEN_LANES; offset <<= 1u) {  // unroll
    m = max(m, subgroupShuffleXor(m, offset));
  }
  return m;
}

fn token_sum(x: f32) -> f32 {
  var sum = x;
  for (var offset = 1u; offset < TOKEN_LANES; offset <<= 1u) {  // unroll
    sum += subgroupShuffleXor(sum, offset);
  }
  return sum;
}
// #else
// one head group (TOKEN_LANES = SUBGROUP_SIZE): head i is head i (a constant in unrolled loops), and the
// subgroup's own reductions (SwiftShader compiles the grouped form of both ~30× more slowly)
fn lane_head(lane: u32, i: u32) -> u32 {
  return i;
}

fn token_max(x: f32) -> f32 {
  return subgroupMax(x);
}

fn token_sum(x: f32) -> f32 {
  return subgroupAdd(x);
}
// #endif

// A stream's online-softmax state for this lane's heads (lane_head(lane, i)). reference, p_factor and
// alpha are the same in every lane of a head group (computed from its reductions); sum_p and sum_p_min
// are this lane's tokens' part.
struct HeadState {
  reference: array<f32, HEADS_PER_LANE>,  // the maximum p and Oᵀ refer to (log2 units)
  p_factor: array<f32, HEADS_PER_LANE>,   // 2^f (0 until a tile had a nonzero V scale)
  alpha: array<f32, HEADS_PER_LANE>,      // this step's factor for Oᵀ's column (1: unchanged)
  sum_p: array<f32, HEADS_PER_LANE>,
  sum_p_min: array<f32, HEADS_PER_LANE>,
}

// The query terms of the scores, for this lane's heads (an idle slot holds the last head's: its scores are masked).
struct QueryTerms {
  sum: array<f32, HEADS_PER_LANE>,      // Σ_d scaled query
  unscale: array<f32, HEADS_PER_LANE>,  // 2^−e
}

// Word index of (token t of the sequence, kv head)'s row: the page from the block table.
fn row_word(seq: u32, t: u32, kv_head: u32) -> u32 {
  let page = block_tables[seq * params.max_pages_per_seq + t / PAGE_SIZE];
  return page * PAGE_WORDS + (kv_head * PAGE_SIZE + t % PAGE_SIZE) * ROW_WORDS;
}

fn scale_min_word(seq: u32, t: u32, kv_head: u32) -> u32 {
  let page = block_tables[seq * params.max_pages_per_seq + t / PAGE_SIZE];
  return page * PAGE_WORDS + SCALE_MIN_REGION_OFFSET + kv_head * PAGE_SIZE + t % PAGE_SIZE;
}

// The tile token a lane's staging word of linear index i belongs to: i / ROW_WORDS, permuted within
// each group of 8 tokens so that the STAGE_GROUP tokens one staging instruction covers are 8 /
// STAGE_GROUP apart. With f16 tiles and a head_dim that is a multiple of 64, rows are TILE_STRIDE / 2
// ≡ 4 (mod 32) words apart, so those tokens' words land in distinct banks (INT4 at head_dim 128: lanes
// 0–15 take token t, lanes 16–31 token t + 4, 16 banks apart; with consecutive tokens, 4 banks apart,
// 12 of the 16 banks would take two stores). Any STAGE_GROUP dividing 8 makes it a permutation.
fn stage_token(i: u32) -> u32 {
  let x = i / ROW_WORDS;
  let b = x % 8u;
  return x - b + b / STAGE_GROUP + (8u / STAGE_GROUP) * (b % STAGE_GROUP);
}

// words ← (K, V) scale/min words of this lane's softmax tokens (token_lane + j·TOKEN_LANES) of the tile at `first`.
fn load_scale_mins(words: ptr<function, array<vec2<u32>, LANE_TOKENS>>, seq: u32, first: u32, chunk_end: u32, kv_head: u32, lane: u32) {  // inline
  if (HAS_SCALE_MIN) {
    for (var j = 0u; j < LANE_TOKENS; j++) {  // unroll
      let t = min(first + min(token_lane(lane) + j * TOKEN_LANES, TILE_TOKENS - 1u), chunk_end - 1u);
      let w = scale_min_word(seq, t, kv_head);
      (*words)[j] = vec2<u32>(k_cache[w], v_cache[w]);
    }
  }
}

// #if PREFETCH_TILES
// Words of this lane's staging slots for the tile starting at token `first`: the row word of each
// (tokens past chunk_end read its last token; they are staged as zeros).
fn tile_rows(rows: ptr<function, array<u32, LANE_WORDS>>, seq: u32, first: u32, chunk_end: u32, kv_head: u32, lane: u32) {  // inline
  for (var k = 0u; k < LANE_WORDS; k++) {  // unroll-lanes
    let i = min(lane + k * SUBGROUP_SIZE, TILE_WORDS - 1u);
    (*rows)[k] = row_word(seq, min(first + stage_token(i), chunk_end - 1u), kv_head) + i % ROW_WORDS;
  }
}

// words ← the K (load_k_words) or V (load_v_words) words at `rows`.
fn load_k_words(words: ptr<function, array<u32, LANE_WORDS>>, rows: ptr<function, array<u32, LANE_WORDS>>) {  // inline
  for (var k = 0u; k < LANE_WORDS; k++) {  // unroll-lanes
    (*words)[k] = k_cache[(*rows)[k]];
  }
}

fn load_v_words(words: ptr<function, array<u32, LANE_WORDS>>, rows: ptr<function, array<u32, LANE_WORDS>>) {  // inline
  for (var k = 0u; k < LANE_WORDS; k++) {  // unroll-lanes
    (*words)[k] = v_cache[(*rows)[k]];
  }
}

// Stages a tile's words (as loaded by tile_rows' slots) into the tile at element `tile_base`; tokens
// past chunk_end as zeros.
fn stage_tile(tile_base: u32, words: ptr<function, array<u32, LANE_WORDS>>, first: u32, chunk_end: u32, lane: u32) {  // inline
  for (var k = 0u; k < LANE_WORDS; k++) {  // unroll-lanes
    let i = lane + k * SUBGROUP_SIZE;
    if (TILE_WORDS % SUBGROUP_SIZE == 0u || i < TILE_WORDS) {
      let t = stage_token(i);
      stage_word(tile_base + t * TILE_STRIDE, i % ROW_WORDS, select(0u, (*words)[k], first + t < chunk_end));
    }
  }
}
// #else
// Loads and stages, in one pass, the K (or V) words of the tile starting at token `first` into the
// tile at element `tile_base`; tokens past chunk_end as zeros.
fn load_stage_tile(tile_base: u32, is_v: bool, seq: u32, first: u32, chunk_end: u32, kv_head: u32, lane: u32) {
  for (var i = lane; i < TILE_WORDS; i += SUBGROUP_SIZE) {
    let t = stage_token(i);
    let word = row_word(seq, min(first + t, chunk_end - 1u), kv_head) + i % ROW_WORDS;
    var value = 0u;
    if (first + t < chunk_end) {
      if (is_v) {
        value = v_cache[word];
      } else {
        value = k_cache[word];
      }
    }
    stage_word(tile_base + t * TILE_STRIDE, i % ROW_WORDS, value);
  }
}
// #endif

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

// Step L's softmax of the stream's tile at `first` (its Sᵀ in s_mem): moves the reference maxima and
// P' factors, writes P' hi/lo, adds to the lane's sums. Returns whether Oᵀ must be rescaled (a column
// with contributions got alpha ≠ 1). Called by every lane of every stream (subgroup reductions).
fn softmax_tile(hs: ptr<function, HeadState>, q: QueryTerms, scale_mins: array<vec2<u32>, LANE_TOKENS>, first: u32, chunk_end: u32, stream: u32, lane: u32) -> bool {
  let base = stream * TILE_TOKENS * MAT_N;
  var scores: array<f32, LANE_TOKENS * HEADS_PER_LANE>;  // [j, i]
  var v_scale_min: array<vec2<f32>, LANE_TOKENS>;
  var tile_max: array<f32, HEADS_PER_LANE>;
  var v_scale_max = 0.0;
  for (var i = 0u; i < HEADS_PER_LANE; i++) {  // unroll
    tile_max[i] = NEG_HUGE;
  }
  for (var j = 0u; j < LANE_TOKENS; j++) {  // unroll
    let t = token_lane(lane) + j * TOKEN_LANES;
    let live = t < TILE_TOKENS && first + t < chunk_end;
    let row = base + min(t, TILE_TOKENS - 1u) * MAT_N;
    var k_sm = vec2<f32>(1.0, 0.0);
    var v_sm = vec2<f32>(1.0, 0.0);
    if (HAS_SCALE_MIN) {
      k_sm = unpack2x16float(scale_mins[j].x);
      v_sm = unpack2x16float(scale_mins[j].y);
    }
    v_scale_min[j] = select(vec2<f32>(0.0), v_sm, live);
    v_scale_max = max(v_scale_max, v_scale_min[j].x);
    for (var i = 0u; i < HEADS_PER_LANE; i++) {  // unroll
      let h = lane_head(lane, i);
      let s = select(NEG_HUGE, k_sm.x * s_mem[row + min(h, MAT_N - 1u)] * q.unscale[i] + k_sm.y * q.sum[i], live && h < HEADS_PER_WG);
      scores[j * HEADS_PER_LANE + i] = s;
      tile_max[i] = max(tile_max[i], s);
    }
  }
  let bound = exp2(RESCALE_SLACK) * token_max(v_scale_max);  // ≥ every p·scale of the tile
  var rescale = false;
  for (var i = 0u; i < HEADS_PER_LANE; i++) {  // unroll
    let m = token_max(tile_max[i]);
    var alpha = 1.0;
    if (m > (*hs).reference[i] + RESCALE_SLACK) {
      alpha = exp2((*hs).reference[i] - m);  // 0 the first time (exp2(−inf))
      (*hs).reference[i] = m;
      (*hs).sum_p[i] *= alpha;
      (*hs).sum_p_min[i] *= alpha;
    }
    let factor_before = (*hs).p_factor[i];
    if (bound > 0.0 && (factor_before == 0.0 || bound * factor_before >= P_LIMIT)) {
      let factor = ldexp(1.0, P_EXPONENT - frexp(bound).exp);
      alpha = select(0.0, alpha * factor / factor_before, factor_before != 0.0);
      (*hs).p_factor[i] = factor;
    }
    (*hs).alpha[i] = alpha;
    // a column is still zero while its factor is (every P' was 0): nothing to rescale then
    rescale = rescale || (lane_head(lane, i) < HEADS_PER_WG && factor_before != 0.0 && alpha != 1.0);
  }
  for (var j = 0u; j < LANE_TOKENS; j++) {  // unroll
    let t = token_lane(lane) + j * TOKEN_LANES;
    let live = t < TILE_TOKENS && first + t < chunk_end;
    for (var i = 0u; i < HEADS_PER_LANE; i++) {  // unroll
      let h = lane_head(lane, i);
      let p = select(0.0, exp2(scores[j * HEADS_PER_LANE + i] - (*hs).reference[i]), live);
      (*hs).sum_p[i] += p;
      (*hs).sum_p_min[i] += p * v_scale_min[j].y;
      let parts = split_hi_lo(p * v_scale_min[j].x * (*hs).p_factor[i]);
      // idle heads write nothing: the padding columns of P' stay zero
      if ((TILE_TOKENS % TOKEN_LANES == 0u || t < TILE_TOKENS) && h < HEADS_PER_WG) {
        p_hi[base + t * MAT_N + h] = tile_round(parts.x);
        p_lo[base + t * MAT_N + h] = tile_round(parts.y);
      }
    }
  }
  return rescale;
}

// o_mem[region] *= alpha per head column (each head group its heads' columns).
fn rescale_out(region: u32, alpha: array<f32, HEADS_PER_LANE>, lane: u32) {
  for (var row = token_lane(lane); row < HEAD_DIM; row += TOKEN_LANES) {
    for (var i = 0u; i < HEADS_PER_LANE; i++) {  // unroll
      let h = lane_head(lane, i);
      if (h < HEADS_PER_WG) {
        o_mem[region + row * MAT_N + h] *= alpha[i];
      }
    }
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let split = wid.x;
  let kv_head = wid.y / HEAD_GROUPS;
  let first_q_head = kv_head * GROUP_SIZE + (wid.y % HEAD_GROUPS) * HEADS_PER_WG;
  let seq = wid.z;

  // 0. this subgroup's stream (workgroup memory starts zeroed), and the K loads of its first tile,
  // issued before the query work; tile n of the stream starts at chunk_start + (n·MATRIX_STREAMS +
  // stream)·TILE_TOKENS
  var ticket = 0u;
  if (subgroupElect()) {
    ticket = atomicAdd(&stream_counter, 1u);
  }
  let stream = min(subgroupBroadcastFirst(ticket), MATRIX_STREAMS - 1u);  // < MATRIX_STREAMS: WORKGROUP_SIZE = MATRIX_STREAMS·SUBGROUP_SIZE
  let chunk_start = split * params.tokens_per_split;
  let stream_start = chunk_start + stream * TILE_TOKENS;
  let step_tokens = MATRIX_STREAMS * TILE_TOKENS;
  let first_chunk_end = min(context_lens[seq], chunk_start + params.tokens_per_split);
// #if PREFETCH_TILES
  var rows: array<u32, LANE_WORDS>;
  var k_words: array<u32, LANE_WORDS>;
  var v_words: array<u32, LANE_WORDS>;
  tile_rows(&rows, seq, stream_start, first_chunk_end, kv_head, lane);
  load_k_words(&k_words, &rows);
// #endif
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
  workgroupBarrier();
  var state: MatrixState;
  matrix_init(&state);
  let context_len = workgroupUniformLoad(&context_len_shared);  // also: every stream has its Q̃ before K is staged over it
  var q: QueryTerms;
  var hs: HeadState;
  for (var i = 0u; i < HEADS_PER_LANE; i++) {  // unroll
    let h = min(lane_head(lane, i), HEADS_PER_WG - 1u);  // idle heads: their scores are masked
    q.sum[i] = q_sum_shared[h];
    q.unscale[i] = q_unscale[h];
    hs.reference[i] = NEG_HUGE;
  }

  let chunk_end = min(context_len, chunk_start + params.tokens_per_split);  // = first_chunk_end, uniform
  let steps = (max(chunk_end, chunk_start) - chunk_start + step_tokens - 1u) / step_tokens;
  let k_tile = stream * 2u * TILE_ELEMENTS;
  let v_tile = k_tile + TILE_ELEMENTS;

  // prologue: K of tile 0 staged, its Sᵀ; V of tile 0, its scale/min words and K of tile 1 in flight
// #if PREFETCH_TILES
  stage_tile(k_tile, &k_words, stream_start, chunk_end, lane);
  load_v_words(&v_words, &rows);
  tile_rows(&rows, seq, stream_start + step_tokens, chunk_end, kv_head, lane);
  load_k_words(&k_words, &rows);
// #else
  load_stage_tile(k_tile, false, seq, stream_start, chunk_end, kv_head, lane);
// #endif
  var scale_mins: array<vec2<u32>, LANE_TOKENS>;
  load_scale_mins(&scale_mins, seq, stream_start, chunk_end, kv_head, lane);
  workgroupBarrier();
  matrix_scores(&state, stream, lane);
  workgroupBarrier();

  // step n: tile n of every stream. Held from the step before: scale_mins of tile n and (PREFETCH_TILES)
  // k_words = K of tile n + 1, v_words = V of tile n, rows = tile n + 1's.
  for (var n = 0u; n < steps; n++) {
    let first = stream_start + n * step_tokens;
    let more = n + 1u < steps;  // uniform
    // L: stage V_n and K_{n+1}, issue the next loads, softmax of tile n
    if (lid == 0u) {
      atomicStore(&rescale_bits[(n + 1u) % 2u], 0u);  // read last at step n − 1, behind its last barrier
    }
// #if PREFETCH_TILES
    stage_tile(v_tile, &v_words, first, chunk_end, lane);
    if (more) {
      stage_tile(k_tile, &k_words, first + step_tokens, chunk_end, lane);
      load_v_words(&v_words, &rows);
      tile_rows(&rows, seq, first + 2u * step_tokens, chunk_end, kv_head, lane);
      load_k_words(&k_words, &rows);
    }
// #else
    load_stage_tile(v_tile, true, seq, first, chunk_end, kv_head, lane);
    if (more) {
      load_stage_tile(k_tile, false, seq, first + step_tokens, chunk_end, kv_head, lane);
    }
// #endif
    let rescale = softmax_tile(&hs, q, scale_mins, first, chunk_end, stream, lane);
    if (rescale) {  // any lane whose head moved
      atomicOr(&rescale_bits[n % 2u], 1u << stream);
    }
    if (more) {
      load_scale_mins(&scale_mins, seq, first + step_tokens, chunk_end, kv_head, lane);
    }

    // rescale Oᵀ's columns of the flagged streams, one stream at a time through o_mem (rare)
    let flagged = workgroupUniformLoad(&rescale_bits[n % 2u]);
    if (flagged != 0u) {
      for (var s = 0u; s < MATRIX_STREAMS; s++) {
        if ((flagged & (1u << s)) != 0u) {
          if (stream == s) {
            matrix_spill(&state, stream);
          }
          workgroupBarrier();
          if (stream == s) {
            rescale_out(o_region(stream), hs.alpha, lane);
          }
          workgroupBarrier();
          if (stream == s) {
            matrix_fill(&state, stream);
          }
          workgroupBarrier();
        }
      }
    }

    // M: Oᵀ += Vᵀ·P' of tile n, Sᵀ of tile n + 1
    matrix_values(&state, stream, lane);
    if (more) {
      matrix_scores(&state, stream, lane);
    }
    workgroupBarrier();
  }

  // each stream's (reference, Σp, Σp·min, P' factor) per head; per head the workgroup's maximum and Σp
  for (var i = 0u; i < HEADS_PER_LANE; i++) {  // unroll
    let sum_p = token_sum(hs.sum_p[i]);
    let sum_p_min = token_sum(hs.sum_p_min[i]);
    let h = lane_head(lane, i);
    if (token_lane(lane) == 0u && h < HEADS_PER_WG) {
      stream_state[stream * HEADS_PER_WG + h] = vec4<f32>(hs.reference[i], sum_p, sum_p_min, hs.p_factor[i]);
    }
  }
  workgroupBarrier();
  if (lid < HEADS_PER_WG) {
    var m = NEG_HUGE;
    for (var s = 0u; s < MATRIX_STREAMS; s++) {
      m = max(m, stream_state[s * HEADS_PER_WG + lid].x);
    }
    var total = 0.0;
    for (var s = 0u; s < MATRIX_STREAMS; s++) {
      let st = stream_state[s * HEADS_PER_WG + lid];
      total += exp2(st.x - m) * st.y;
    }
    head_ml[lid] = vec2<f32>(m, total);
  }

  // Σ p·(scale·code + min) = Σ_streams 2^(m_s − m)·(Oᵀ_s / 2^f_s + Σp·min_s) into rot_buf, one stream's
  // Oᵀ at a time through o_mem; lib/decode-epilogue.wgsl normalises and writes it (one split) or writes
  // the partial for shaders/paged-decode-merge.wgsl.
  for (var s = 0u; s < MATRIX_STREAMS; s++) {
    if (stream == s) {
      matrix_spill(&state, stream);
    }
    workgroupBarrier();
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      let h = i / HEAD_DIM;
      let st = stream_state[s * HEADS_PER_WG + h];
      let out_sum = select(o_mem[o_region(s) + tile_position(i % HEAD_DIM) * MAT_N + h] / st.w, 0.0, st.w == 0.0) + st.z;
      let part = exp2(st.x - head_ml[h].x) * out_sum;
      rot_buf[i] = select(rot_buf[i] + part, part, s == 0u);
    }
    workgroupBarrier();
  }
  write_decode_result(lid, seq, first_q_head, split);
}
