// Matrix step of paged-decode-matrix.wgsl without matrix hardware: the same tiles, the same hi/lo
// parts and the same order of accumulation per matrix block (one f32 sum per MAT_K-long block, the hi
// block added before the lo block), computed by plain loops over the lanes of the stream's subgroup.
// Runs on any adapter with subgroups (TileScalar = f16 with shader-f16, else f32 holding f16 values):
// it is how CI runs the matrix kernel, whose hardware step needs tensor cores. Each stream's Oᵀ lives
// in its own o_mem region (O_REGIONS = MATRIX_STREAMS) throughout, so spilling and filling are no-ops;
// the queries' hi/lo parts are taken from rot_buf when used.

struct MatrixState {
  unused: u32,
}

fn o_region(stream: u32) -> u32 {
  return stream * HEAD_DIM * MAT_N;
}

fn matrix_stage_queries(lid: u32) {}
fn matrix_init(state: ptr<function, MatrixState>) {  // inline (o_mem starts zeroed: workgroup memory is zero-initialised)
}

// s_mem[stream] ← Sᵀ = C·Q̃ᵀ over the stream's staged K tile (padding heads 0).
fn matrix_scores(state: ptr<function, MatrixState>, stream: u32, lane: u32) {  // inline
  let k_base = stream * 2u * TILE_ELEMENTS;
  let s_base = stream * TILE_TOKENS * MAT_N;
  for (var e = lane; e < TILE_TOKENS * MAT_N; e += SUBGROUP_SIZE) {
    let t = e / MAT_N;
    let h = e % MAT_N;
    var acc = 0.0;
    if (h < HEADS_PER_WG) {
      for (var kb = 0u; kb < Q_BLOCKS; kb++) {
        var hi = 0.0;
        var lo = 0.0;
        for (var k = 0u; k < MAT_K; k++) {
          let c = f32(kv_tiles[k_base + t * TILE_STRIDE + kb * MAT_K + k]);
          let q = split_hi_lo(scaled_query(h, tile_channel(kb * MAT_K + k)));
          hi += c * f32(tile_round(q.x));
          lo += c * f32(tile_round(q.y));
        }
        acc += hi;
        acc += lo;
      }
    }
    s_mem[s_base + e] = acc;
  }
}

// o_mem[stream] += Vᵀ·P' over the stream's staged V tile.
fn matrix_values(state: ptr<function, MatrixState>, stream: u32, lane: u32) {  // inline
  let v_base = (stream * 2u + 1u) * TILE_ELEMENTS;
  let p_base = stream * TILE_TOKENS * MAT_N;
  let o_base = o_region(stream);
  for (var e = lane; e < HEAD_DIM * MAT_N; e += SUBGROUP_SIZE) {
    let position = e / MAT_N;
    let h = e % MAT_N;
    if (h < HEADS_PER_WG) {
      var acc = o_mem[o_base + e];
      for (var vs = 0u; vs < VALUE_STEPS; vs++) {
        var hi = 0.0;
        var lo = 0.0;
        for (var k = 0u; k < MAT_K; k++) {
          let t = vs * MAT_K + k;
          let v = f32(kv_tiles[v_base + t * TILE_STRIDE + position]);
          hi += v * f32(p_hi[p_base + t * MAT_N + h]);
          lo += v * f32(p_lo[p_base + t * MAT_N + h]);
        }
        acc += hi;
        acc += lo;
      }
      o_mem[o_base + e] = acc;
    }
  }
}

fn matrix_spill(state: ptr<function, MatrixState>, stream: u32) {  // inline
}
fn matrix_fill(state: ptr<function, MatrixState>, stream: u32) {  // inline
}
