// Decode attention over a paged KV cache (one new query token per sequence), INT4 or FP16: the
// format file included before this one (lib/kv-format-int4.wgsl or lib/kv-format-fp16.wgsl) supplies
// k_scores(), the V word type VWord with load_v_word() and decode_v_word(), and v_scale_min().
//
// Grid: workgroup (split, kv_head × HEAD_GROUPS + head_group, seq). A workgroup owns HEADS_PER_WG
// query heads that share one kv head (GQA), so each K/V byte of its chunk is read once for all of
// them, and the token range [split × tokens_per_split, …) of the sequence (split-K, flash-decoding).
//   0. load the queries; when K is rotated, rotate them the same way (q·k = qH·kH); fold in the
//      softmax scale and log2(e) so that exp2 serves as exp.
//   1. per tile of WORKGROUP_SIZE tokens, invocation t scores token t for every head (whole K row,
//      dequantized on the fly: score = s·(q·codes) + m·Σq); tile maxima through atomicMax on
//      order-preserving keys (after subgroupMax where subgroups exist: no subgroup size assumed).
//   2. online softmax: running max per head, p = exp2(score − max), accumulators rescaled.
//   3. V: invocation (token lane tl, value lane wl) accumulates Σ p·s·codes and Σ p·m for values
//      8wl..8wl+7 over tokens tl, tl + TOKEN_LANES, …
//   4. merge the token lanes in workgroup memory; with one split and V not rotated, normalise and
//      write `out`; otherwise write the unnormalised partial and its (max, sum) for
//      shaders/paged-decode-merge.wgsl, which also rotates V back.
// Rows of tokens past the context are never read; a non-finite K/V row only affects its own
// (sequence, kv head) outputs.
//
// Constants from src/kernels/paged-decode.ts: HEAD_DIM, NUM_KV_HEADS, PAGE_SIZE, ROW_WORDS, PAGE_WORDS,
// SCALE_MIN_REGION_OFFSET, NUM_Q_HEADS, GROUP_SIZE, HEADS_PER_WG, HEAD_GROUPS, WORKGROUP_SIZE,
// V_LANES (= HEAD_DIM/8), TOKEN_LANES (= ⌊WORKGROUP_SIZE/V_LANES⌋), V_PREFETCH_MAX, HADAMARD_BLOCK, ROTATE_Q,
// ROTATE_OUT, RANDOM_SIGNS, ROT_VECTORS (= HEADS_PER_WG), SCRATCH_LEN.

// DecodeParams and the bindings: lib/decode-io.wgsl.

var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;       // [HEADS_PER_WG, HEAD_DIM] queries, later outputs
var<workgroup> q_vec: array<vec4<f32>, HEADS_PER_WG * HEAD_DIM / 4u>; // [HEADS_PER_WG, HEAD_DIM/4] scaled queries
var<workgroup> q_sum: array<f32, HEADS_PER_WG>;                  // Σ_d q_vec (for the INT4 min term)
var<workgroup> scratch: array<f32, SCRATCH_LEN>;                  // [HEADS_PER_WG, WORKGROUP_SIZE] scores → probabilities;
                                                                  // then [TOKEN_LANES, HEAD_DIM] for the merge
var<workgroup> token_row: array<u32, WORKGROUP_SIZE>;             // word index of tile token t's row
var<workgroup> token_scale_min: array<u32, WORKGROUP_SIZE>;       // word index of its scale/min
var<workgroup> tile_max_key: array<atomic<u32>, HEADS_PER_WG>;    // order_key(max score) per head
var<workgroup> lane_sums: array<vec2<f32>, TOKEN_LANES>;          // (Σp, Σp·min) per token lane
var<workgroup> head_sum: array<f32, HEADS_PER_WG>;                // softmax denominators
var<workgroup> context_len_shared: u32;

// Tokens of a tile each (token lane) invocation accumulates, and how many V loads it keeps in flight.
// ⌈WORKGROUP_SIZE / TOKEN_LANES⌉: when V_LANES does not divide the workgroup (head_dim 96, 160, …) the
// last TOKEN_LANES·V_LANES < WORKGROUP_SIZE invocations take no V work.
const TOKENS_PER_LANE: u32 = (WORKGROUP_SIZE + TOKEN_LANES - 1u) / TOKEN_LANES;
const V_PREFETCH: u32 = min(V_PREFETCH_MAX, TOKENS_PER_LANE);

// Stands for −inf (a const −inf is not expressible in WGSL); exp2(NEG_HUGE − m) is 0.
const NEG_HUGE: f32 = -3.0e38;

// Monotonic map f32 → u32 (for atomicMax on floats); 0 is below every value.
fn order_key(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn key_value(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let split = wid.x;
  let kv_head = wid.y / HEAD_GROUPS;
  let first_q_head = kv_head * GROUP_SIZE + (wid.y % HEAD_GROUPS) * HEADS_PER_WG;
  let seq = wid.z;

  // 0. queries
  if (lid == 0u) {
    context_len_shared = context_lens[seq];
  }
  let q_scale = load_queries(lid, seq, first_q_head);
  for (var i = lid; i < HEADS_PER_WG * HEAD_DIM / 4u; i += WORKGROUP_SIZE) {
    q_vec[i] = vec4<f32>(rot_buf[4u * i], rot_buf[4u * i + 1u], rot_buf[4u * i + 2u], rot_buf[4u * i + 3u]) * q_scale;
  }
  if (lid < HEADS_PER_WG) {
    atomicStore(&tile_max_key[lid], 0u);
  }
  workgroupBarrier();
  if (lid < HEADS_PER_WG) {
    var sum = vec4<f32>(0.0);
    for (var j = 0u; j < HEAD_DIM / 4u; j++) {
      sum += q_vec[lid * HEAD_DIM / 4u + j];
    }
    q_sum[lid] = sum.x + sum.y + sum.z + sum.w;
  }
  let context_len = workgroupUniformLoad(&context_len_shared);  // (also a barrier)

  let chunk_start = split * params.tokens_per_split;
  let chunk_end = min(context_len, chunk_start + params.tokens_per_split);
  let token_lane = lid / V_LANES;
  let value_lane = lid % V_LANES;
  let v_lane = token_lane < TOKEN_LANES;  // false only for the spare invocations described above
  var running_max: array<f32, HEADS_PER_WG>;
  var acc: array<vec4<f32>, 2u * HEADS_PER_WG>;  // Σ p·scale·values, values 8·value_lane .. +7
  var sum_p: array<f32, HEADS_PER_WG>;            // Σ p over this lane's tokens
  var sum_p_min: array<f32, HEADS_PER_WG>;        // Σ p·min over this lane's tokens
  for (var g = 0u; g < HEADS_PER_WG; g++) {
    running_max[g] = NEG_HUGE;
  }

  for (var tile_start = chunk_start; tile_start < chunk_end; tile_start += WORKGROUP_SIZE) {
    // 1. scores
    let t = tile_start + lid;
    let live = t < chunk_end;
    var score: array<f32, HEADS_PER_WG>;
    for (var g = 0u; g < HEADS_PER_WG; g++) {
      score[g] = NEG_HUGE;
    }
    if (live) {
      let page = block_tables[seq * params.max_pages_per_seq + t / PAGE_SIZE];
      let slot = kv_head * PAGE_SIZE + t % PAGE_SIZE;
      let row = page * PAGE_WORDS + slot * ROW_WORDS;
      let scale_min_index = page * PAGE_WORDS + SCALE_MIN_REGION_OFFSET + slot;
      token_row[lid] = row;
      token_scale_min[lid] = scale_min_index;
      k_scores(row, scale_min_index, &score);
    }
    for (var g = 0u; g < HEADS_PER_WG; g++) {
      scratch[g * WORKGROUP_SIZE + lid] = score[g];
      publish_tile_max(g, score[g]);
    }
    workgroupBarrier();

    // 2. online softmax
    var alpha: array<f32, HEADS_PER_WG>;
    for (var g = 0u; g < HEADS_PER_WG; g++) {
      let new_max = max(running_max[g], key_value(atomicLoad(&tile_max_key[g])));
      alpha[g] = exp2(running_max[g] - new_max);  // 0 on the first tile (exp2(−inf))
      running_max[g] = new_max;
      scratch[g * WORKGROUP_SIZE + lid] = select(0.0, exp2(score[g] - new_max), live);
    }
    workgroupBarrier();
    if (lid < HEADS_PER_WG) {
      atomicStore(&tile_max_key[lid], 0u);  // every invocation has read it (before the barrier)
    }

    // 3. values
    for (var g = 0u; g < HEADS_PER_WG; g++) {
      acc[2u * g] *= alpha[g];
      acc[2u * g + 1u] *= alpha[g];
      sum_p[g] *= alpha[g];
      sum_p_min[g] *= alpha[g];
    }
    // Loads of V_PREFETCH tokens are issued together, then consumed, to keep several in flight.
    let tile_len = min(WORKGROUP_SIZE, chunk_end - tile_start);
    for (var group = 0u; group < TOKENS_PER_LANE; group += V_PREFETCH) {
      var words: array<VWord, V_PREFETCH>;
      var scale_mins: array<vec2<f32>, V_PREFETCH>;
      for (var i = 0u; i < V_PREFETCH; i++) {
        let j = token_lane + (group + i) * TOKEN_LANES;
        if (j < tile_len && v_lane) {
          words[i] = load_v_word(token_row[j], value_lane);
          scale_mins[i] = v_scale_min(token_scale_min[j]);
        }
      }
      for (var i = 0u; i < V_PREFETCH; i++) {
        let j = token_lane + (group + i) * TOKEN_LANES;
        if (j < tile_len && v_lane) {
          let values = decode_v_word(words[i]);
          for (var g = 0u; g < HEADS_PER_WG; g++) {
            let p = scratch[g * WORKGROUP_SIZE + j];
            let p_scaled = p * scale_mins[i].x;
            acc[2u * g] += p_scaled * values[0];
            acc[2u * g + 1u] += p_scaled * values[1];
            sum_p[g] += p;
            sum_p_min[g] += p * scale_mins[i].y;
          }
        }
      }
    }
    workgroupBarrier();
  }

  // 4. merge token lanes, head by head, into rot_buf (unnormalised)
  for (var g = 0u; g < HEADS_PER_WG; g++) {
    let a = acc[2u * g];
    let b = acc[2u * g + 1u];
    let base = token_lane * HEAD_DIM + value_lane * 8u;
    if (v_lane) {
      scratch[base] = a.x;
      scratch[base + 1u] = a.y;
      scratch[base + 2u] = a.z;
      scratch[base + 3u] = a.w;
      scratch[base + 4u] = b.x;
      scratch[base + 5u] = b.y;
      scratch[base + 6u] = b.z;
      scratch[base + 7u] = b.w;
      if (value_lane == 0u) {
        lane_sums[token_lane] = vec2<f32>(sum_p[g], sum_p_min[g]);
      }
    }
    workgroupBarrier();
    var sums = vec2<f32>(0.0);
    for (var l = 0u; l < TOKEN_LANES; l++) {
      sums += lane_sums[l];
    }
    for (var d = lid; d < HEAD_DIM; d += WORKGROUP_SIZE) {
      var total = 0.0;
      for (var l = 0u; l < TOKEN_LANES; l++) {
        total += scratch[l * HEAD_DIM + d];
      }
      rot_buf[g * HEAD_DIM + d] = total + sums.y;  // Σ p·(scale·code + min)
    }
    if (lid == 0u) {
      head_sum[g] = sums.x;
    }
    workgroupBarrier();
  }

  // With one split and no V rotation the result is final; otherwise the merge kernel finishes it
  // (rotating V back there keeps this kernel's code, and so its register use, the same as K-only).
  let num_splits = params.num_splits;
  if (num_splits == 1u && ROTATE_OUT == 0u) {
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      out[(seq * NUM_Q_HEADS + first_q_head) * HEAD_DIM + i] = rot_buf[i] / head_sum[i / HEAD_DIM];
    }
  } else {
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      let head = first_q_head + i / HEAD_DIM;
      partial_acc[((seq * NUM_Q_HEADS + head) * num_splits + split) * HEAD_DIM + i % HEAD_DIM] = rot_buf[i];
    }
    if (lid < HEADS_PER_WG) {
      partial_ml[(seq * NUM_Q_HEADS + first_q_head + lid) * num_splits + split] = vec2<f32>(running_max[lid], head_sum[lid]);
    }
  }
}
