// Matrix step of paged-decode-matrix-serial.wgsl (the serial variant) without matrix hardware: the same tiles, the same hi/lo
// parts and the same order of accumulation per matrix block (one f32 sum per MAT_K-long block, the hi
// block added before the lo block), computed by plain loops over the workgroup's invocations. Runs
// on any adapter (TileScalar = f16 with shader-f16, else f32 holding f16 values): it is how CI runs
// the matrix kernel, whose hardware path needs tensor cores. Oᵀ lives in o_tile throughout, so
// spilling and filling are no-ops; the queries' hi/lo parts are taken from rot_buf when used.

struct MatrixState {
  unused: u32,
}

fn matrix_stage_queries(lid: u32) {}
fn matrix_init(state: ptr<function, MatrixState>, lid: u32) {  // inline (o_tile starts zeroed: workgroup memory is zero-initialised)
}

// s_tile ← Sᵀ = C·Q̃ᵀ over the staged K tile (padding heads skipped).
fn matrix_scores(state: ptr<function, MatrixState>, lid: u32) {  // inline
  for (var e = lid; e < TILE_TOKENS * MAT_N; e += WORKGROUP_SIZE) {
    let t = e / MAT_N;
    let h = e % MAT_N;
    var acc = 0.0;
    if (h < HEADS_PER_WG) {
      for (var kb = 0u; kb < Q_BLOCKS; kb++) {
        var hi = 0.0;
        var lo = 0.0;
        for (var k = 0u; k < MAT_K; k++) {
          let c = f32(k_tile[t * TILE_STRIDE + kb * MAT_K + k]);
          let q = split_hi_lo(scaled_query(h, tile_channel(kb * MAT_K + k)));
          hi += c * f32(tile_round(q.x));
          lo += c * f32(tile_round(q.y));
        }
        acc += hi;
        acc += lo;
      }
    }
    s_tile[e] = acc;
  }
}

// o_tile += Vᵀ·P' over the staged V tile.
fn matrix_values(state: ptr<function, MatrixState>, lid: u32) {  // inline
  for (var e = lid; e < HEAD_DIM * MAT_N; e += WORKGROUP_SIZE) {
    let d = e / MAT_N;
    let h = e % MAT_N;
    if (h < HEADS_PER_WG) {
      var acc = o_tile[e];
      for (var vs = 0u; vs < VALUE_STEPS; vs++) {
        var hi = 0.0;
        var lo = 0.0;
        for (var k = 0u; k < MAT_K; k++) {
          let t = vs * MAT_K + k;
          let v = f32(v_tile[t * TILE_STRIDE + d]);
          hi += v * f32(p_hi[t * MAT_N + h]);
          lo += v * f32(p_lo[t * MAT_N + h]);
        }
        acc += hi;
        acc += lo;
      }
      o_tile[e] = acc;
    }
  }
}

fn matrix_spill_out(state: ptr<function, MatrixState>, lid: u32) {  // inline
}
fn matrix_fill_out(state: ptr<function, MatrixState>, lid: u32) {  // inline
}
