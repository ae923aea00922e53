// Matrix step of paged-decode-matrix.wgsl on the adapter's subgroup matrices (tensor cores; needs
// `enable f16; enable chromium_experimental_subgroup_matrix;`, TileScalar = f16). Each subgroup works
// on its own stream's tiles (offsets from `stream`, the same in all of its lanes) and keeps, in a
// MatrixState in the kernel's function scope (the only address space matrices may live in):
//   - the queries' right matrices Q̃ᵀ hi/lo (loaded once: matrix_init), and
//   - its output accumulator Oᵀ (O_BLOCKS result matrices of MAT_M tile positions × MAT_N heads),
//     held across all tiles; it goes through o_mem (one region, O_REGIONS = 1, used by one stream at
//     a time) only to be rescaled (rare) and at the end.
// The functions taking the state are marked `// inline`: the host pastes them into the kernel's main
// (inlineCalls, src/kernels/wgsl-unroll.ts), because the H200's driver compiled the state passed by
// pointer, or by value, into a kernel 1.55× slower (docs/tuning.md, "Matrix state in the caller").
// Every call comes from control flow that is uniform within the subgroup (the kernel has no branch on
// lanes around them); the workgroup-uniformity diagnostic is off because the offsets derive from the
// stream index.

alias CacheLeft = subgroup_matrix_left<f16, MAT_K, MAT_M>;   // MAT_M rows × MAT_K columns
alias HeadsRight = subgroup_matrix_right<f16, MAT_N, MAT_K>; // MAT_K rows × MAT_N columns
alias Accumulator = subgroup_matrix_result<f32, MAT_N, MAT_M>;

struct MatrixState {
  q_hi: array<HeadsRight, Q_BLOCKS>,  // Q̃ᵀ channel blocks, hi part
  q_lo: array<HeadsRight, Q_BLOCKS>,
  o: array<Accumulator, O_BLOCKS>,    // Oᵀ, MAT_M tile positions per block
}

// Where stream `stream`'s Oᵀ can be read after matrix_spill: [tile position, head] from this element.
fn o_region(stream: u32) -> u32 {
  return 0u;
}

// Q̃ as hi/lo f16 into kv_tiles ([head, tile position], hi at 0, lo at MAT_N·HEAD_DIM; the padding
// heads stay zero: workgroup memory starts zeroed), in the cache tiles' channel order. All invocations
// of the workgroup, after rot_buf and q_factor are complete; the K tiles are staged over it later.
fn matrix_stage_queries(lid: u32) {
  for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
    let parts = split_hi_lo(scaled_query(i / HEAD_DIM, tile_channel(i % HEAD_DIM)));
    kv_tiles[i] = tile_round(parts.x);
    kv_tiles[MAT_N * HEAD_DIM + i] = tile_round(parts.y);
  }
}

// After matrix_stage_queries, behind a barrier; kv_tiles may be overwritten after the next barrier.
fn matrix_init(state: ptr<function, MatrixState>) {  // inline
  for (var kb = 0u; kb < Q_BLOCKS; kb++) {  // unroll
    // [head, channel]: element (channel r, head c) at c·HEAD_DIM + r, column-major
    (*state).q_hi[kb] = subgroupMatrixLoad<HeadsRight, col_major>(&kv_tiles, kb * MAT_K, HEAD_DIM);
    (*state).q_lo[kb] = subgroupMatrixLoad<HeadsRight, col_major>(&kv_tiles, MAT_N * HEAD_DIM + kb * MAT_K, HEAD_DIM);
  }
  for (var ob = 0u; ob < O_BLOCKS; ob++) {  // unroll
    (*state).o[ob] = Accumulator();
  }
}

// s_mem[stream] ← Sᵀ = C·Q̃ᵀ (hi and lo parts into one accumulator) over the stream's staged K tile.
fn matrix_scores(state: ptr<function, MatrixState>, stream: u32, lane: u32) {  // inline
  let k_base = stream * 2u * TILE_ELEMENTS;
  let s_base = stream * TILE_TOKENS * MAT_N;
  for (var mb = 0u; mb < SCORE_BLOCKS; mb++) {  // unroll
    var acc = Accumulator();
    for (var kb = 0u; kb < Q_BLOCKS; kb++) {  // unroll
      let codes = subgroupMatrixLoad<CacheLeft, row_major>(&kv_tiles, k_base + mb * MAT_M * TILE_STRIDE + kb * MAT_K, TILE_STRIDE);
      acc = subgroupMatrixMultiplyAccumulate(codes, (*state).q_hi[kb], acc);
      acc = subgroupMatrixMultiplyAccumulate(codes, (*state).q_lo[kb], acc);
    }
    subgroupMatrixStore<row_major>(&s_mem, s_base + mb * MAT_M * MAT_N, acc, MAT_N);
  }
}

// Oᵀ += Vᵀ·P' over the stream's staged V tile (Vᵀ: element (position r, token c) at c·TILE_STRIDE + r)
// and its P' hi/lo ([token, head]); each P' block is loaded once for all O blocks.
fn matrix_values(state: ptr<function, MatrixState>, stream: u32, lane: u32) {  // inline
  let v_base = (stream * 2u + 1u) * TILE_ELEMENTS;
  let p_base = stream * TILE_TOKENS * MAT_N;
  for (var vs = 0u; vs < VALUE_STEPS; vs++) {  // unroll
    let weights_hi = subgroupMatrixLoad<HeadsRight, row_major>(&p_hi, p_base + vs * MAT_K * MAT_N, MAT_N);
    let weights_lo = subgroupMatrixLoad<HeadsRight, row_major>(&p_lo, p_base + vs * MAT_K * MAT_N, MAT_N);
    for (var ob = 0u; ob < O_BLOCKS; ob++) {  // unroll
      let values = subgroupMatrixLoad<CacheLeft, col_major>(&kv_tiles, v_base + vs * MAT_K * TILE_STRIDE + ob * MAT_M, TILE_STRIDE);
      (*state).o[ob] = subgroupMatrixMultiplyAccumulate(values, weights_hi, (*state).o[ob]);
      (*state).o[ob] = subgroupMatrixMultiplyAccumulate(values, weights_lo, (*state).o[ob]);
    }
  }
}

// Oᵀ → o_mem (region o_region(stream)).
fn matrix_spill(state: ptr<function, MatrixState>, stream: u32) {  // inline
  for (var ob = 0u; ob < O_BLOCKS; ob++) {  // unroll
    subgroupMatrixStore<row_major>(&o_mem, ob * MAT_M * MAT_N, (*state).o[ob], MAT_N);
  }
}

// Oᵀ ← o_mem (after the lanes rescaled it, behind a barrier).
fn matrix_fill(state: ptr<function, MatrixState>, stream: u32) {  // inline
  for (var ob = 0u; ob < O_BLOCKS; ob++) {  // unroll
    (*state).o[ob] = subgroupMatrixLoad<Accumulator, row_major>(&o_mem, ob * MAT_M * MAT_N, MAT_N);
  }
}
