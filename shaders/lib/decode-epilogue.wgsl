// The end of the subgroup and matrix decode kernels (after lib/decode-io.wgsl and lib/hadamard.wgsl).
// On entry, behind a barrier, rot_buf holds each of the workgroup's heads' Σ p·(scale·code + min),
// unnormalised (relative to the head's reference maximum), and head_ml[h] that (maximum·log2e, Σp).
// With one split the result is final: normalise, rotate V back when it was rotated (as the merge
// kernel would) and write `out`; otherwise write the partial and its (max, sum) for
// shaders/paged-decode-merge.wgsl. Contains barriers: call from workgroup-uniform control flow.
// The kernel declares: var<workgroup> head_ml: array<vec2<f32>, HEADS_PER_WG>;

fn write_decode_result(lid: u32, seq: u32, first_q_head: u32, split: u32) {
  let num_splits = params.num_splits;
  if (num_splits == 1u) {
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      rot_buf[i] = rot_buf[i] / head_ml[i / HEAD_DIM].y;
    }
    if (ROTATE_OUT == 1u) {
      unrotate_rows_in_workgroup(lid);
    }
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      out[(seq * NUM_Q_HEADS + first_q_head) * HEAD_DIM + i] = rot_buf[i];
    }
  } else {
    for (var i = lid; i < HEADS_PER_WG * HEAD_DIM; i += WORKGROUP_SIZE) {
      let head = first_q_head + i / HEAD_DIM;
      partial_acc[((seq * NUM_Q_HEADS + head) * num_splits + split) * HEAD_DIM + i % HEAD_DIM] = rot_buf[i];
    }
    if (lid < HEADS_PER_WG) {
      partial_ml[(seq * NUM_Q_HEADS + first_q_head + lid) * num_splits + split] = head_ml[lid];
    }
  }
}
