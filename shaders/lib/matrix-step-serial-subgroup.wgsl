// Matrix step of paged-decode-matrix-serial.wgsl (the serial variant) on the adapter's subgroup matrices (tensor cores; needs
// `enable f16; enable chromium_experimental_subgroup_matrix;`, TileScalar = f16). The queries' right
// matrices live in registers: a MatrixState in the kernel's function scope (the only address space
// matrices may live in), passed by pointer to functions marked `// inline`, which the host pastes
// into the kernel's main (inlineCalls; see lib/matrix-step-subgroup.wgsl). The output accumulator Oᵀ
// lives in o_tile (f32) and is loaded and stored around each tile's MMAs (the rescale then works on o_tile directly). Every call is
// made from workgroup-uniform control flow with constant offsets (the feature's rules).

alias CacheLeft = subgroup_matrix_left<f16, MAT_K, MAT_M>;   // MAT_M rows × MAT_K columns
alias HeadsRight = subgroup_matrix_right<f16, MAT_N, MAT_K>; // MAT_K rows × MAT_N columns
alias Accumulator = subgroup_matrix_result<f32, MAT_N, MAT_M>;

var<workgroup> q_hi: array<f16, MAT_N * HEAD_DIM>;  // [head, tile position] hi part of Q̃ (padding heads 0)
var<workgroup> q_lo: array<f16, MAT_N * HEAD_DIM>;  // [head, tile position] lo part
struct MatrixState {
  q_hi_right: array<HeadsRight, Q_BLOCKS>,  // Q̃ᵀ channel blocks, hi part
  q_lo_right: array<HeadsRight, Q_BLOCKS>,
}

// Q̃ as hi/lo f16 into q_hi / q_lo in the cache tiles' channel order (rot_buf and q_factor complete).
fn matrix_stage_queries(lid: u32) {
  for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
    let h = i / HEAD_DIM;
    let p = i % HEAD_DIM;
    let parts = split_hi_lo(scaled_query(h, tile_channel(p)));
    q_hi[i] = tile_round(parts.x);
    q_lo[i] = tile_round(parts.y);
  }
}

// After matrix_stage_queries, behind a barrier.
fn matrix_init(state: ptr<function, MatrixState>, lid: u32) {  // inline
  for (var kb = 0u; kb < Q_BLOCKS; kb++) {  // unroll
    // q_*[head, channel]: element (channel r, head c) at c·HEAD_DIM + r, column-major
    (*state).q_hi_right[kb] = subgroupMatrixLoad<HeadsRight, col_major>(&q_hi, kb * MAT_K, HEAD_DIM);
    (*state).q_lo_right[kb] = subgroupMatrixLoad<HeadsRight, col_major>(&q_lo, kb * MAT_K, HEAD_DIM);
  }
}  // o_tile starts zeroed (workgroup memory is zero-initialised)

// s_tile ← Sᵀ = C·Q̃ᵀ (hi and lo parts into one accumulator) over the staged K tile.
fn matrix_scores(state: ptr<function, MatrixState>, lid: u32) {  // inline
  for (var mb = 0u; mb < SCORE_BLOCKS; mb++) {  // unroll
    var acc = Accumulator();
    for (var kb = 0u; kb < Q_BLOCKS; kb++) {  // unroll
      let codes = subgroupMatrixLoad<CacheLeft, row_major>(&k_tile, mb * MAT_M * TILE_STRIDE + kb * MAT_K, TILE_STRIDE);
      acc = subgroupMatrixMultiplyAccumulate(codes, (*state).q_hi_right[kb], acc);
      acc = subgroupMatrixMultiplyAccumulate(codes, (*state).q_lo_right[kb], acc);
    }
    subgroupMatrixStore<row_major>(&s_tile, mb * MAT_M * MAT_N, acc, MAT_N);
  }
}

// o_tile += Vᵀ·P' over the staged V tile (Vᵀ: element (channel r, token c) at c·TILE_STRIDE + r).
fn matrix_values(state: ptr<function, MatrixState>, lid: u32) {  // inline
  for (var ob = 0u; ob < O_BLOCKS; ob++) {  // unroll
    var acc = subgroupMatrixLoad<Accumulator, row_major>(&o_tile, ob * MAT_M * MAT_N, MAT_N);
    for (var vs = 0u; vs < VALUE_STEPS; vs++) {  // unroll
      let values = subgroupMatrixLoad<CacheLeft, col_major>(&v_tile, vs * MAT_K * TILE_STRIDE + ob * MAT_M, TILE_STRIDE);
      acc = subgroupMatrixMultiplyAccumulate(values, subgroupMatrixLoad<HeadsRight, row_major>(&p_hi, vs * MAT_K * MAT_N, MAT_N), acc);
      acc = subgroupMatrixMultiplyAccumulate(values, subgroupMatrixLoad<HeadsRight, row_major>(&p_lo, vs * MAT_K * MAT_N, MAT_N), acc);
    }
    subgroupMatrixStore<row_major>(&o_tile, ob * MAT_M * MAT_N, acc, MAT_N);
  }
}

// Oᵀ already lives in o_tile.
fn matrix_spill_out(state: ptr<function, MatrixState>, lid: u32) {  // inline
}
fn matrix_fill_out(state: ptr<function, MatrixState>, lid: u32) {  // inline
}
