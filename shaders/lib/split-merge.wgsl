// The split-K merge of (sequence, query head) rows, shared by shaders/paged-decode-merge.wgsl and the
// subgroup kernel's in-dispatch merge (lib/decode-epilogue.wgsl, MERGE_IN_DISPATCH). Split s of a row
// left its partial Σ p·v (acc_s, relative to its own maximum) and (m_s, l_s) = (maximum·log2e, Σ p):
//   M = max_s m_s,  w_s = exp2(m_s − M),  out = Σ_s w_s·acc_s / Σ_s w_s·l_s
// (an empty split has m = −inf and l = 0, so w = 0). Splits are taken in order, so the result is the
// same bits run to run, whichever workgroup merges.
//
// The including kernel says where the partials are: load_partial_ml(record) -> vec2<f32> (m, l) and
// load_partial_acc(record, d) -> f32, with record = row × num_splits + split and row = seq ×
// NUM_Q_HEADS + head; and declares HEAD_DIM, WORKGROUP_SIZE, NEG_HUGE and rot_buf.
//
// At batch 1 a merge waits for the latency of its loads, not for bandwidth: splits are read in blocks of
// four independent loads, the first block of partial values before the maxima (it does not depend on
// them). On an NVIDIA H200 (docs/tuning.md): the first version (three loops of one load each) took 3.6 µs
// at 3 splits, 5 µs at 7; tree reductions over the workgroup were slower at 3 splits; blocks of four took
// 1 µs off batch 1's attention against loads four at a time with a one-by-one remainder.

// w_s = exp2(m_s − M), 0 for an empty split (l = 0).
fn split_weight(ml: vec2<f32>, global_max: f32) -> f32 {
  return select(exp2(ml.x - global_max), 0.0, ml.y == 0.0);
}

// The (max, sum) of the four splits s..s+3 (a block) of the row whose first record is `first`: all four
// loads issued before any is used; splits past num_splits re-read the last one and count as empty.
fn block_ml(first: u32, s: u32, num_splits: u32) -> array<vec2<f32>, 4> {
  var ml: array<vec2<f32>, 4>;
  for (var j = 0u; j < 4u; j++) {  // unroll
    ml[j] = select(vec2<f32>(NEG_HUGE, 0.0), load_partial_ml(first + min(s + j, num_splits - 1u)), s + j < num_splits);
  }
  return ml;
}

// Element d of the partial values of the block's splits (past num_splits: the last split's, weighted 0).
fn block_acc(first: u32, s: u32, num_splits: u32, d: u32) -> array<f32, 4> {
  var acc: array<f32, 4>;
  for (var j = 0u; j < 4u; j++) {  // unroll
    acc[j] = load_partial_acc(first + min(s + j, num_splits - 1u), d);
  }
  return acc;
}

// rot_buf[r·HEAD_DIM + d] = element d of the merged (normalised) output of row first_row + r, r < rows,
// for this invocation's elements lid, lid + WORKGROUP_SIZE, … (no barrier).
fn merge_rows_into_rot_buf(lid: u32, first_row: u32, rows: u32, num_splits: u32) {
  for (var i = lid; i < rows * HEAD_DIM; i += WORKGROUP_SIZE) {
    let first = (first_row + i / HEAD_DIM) * num_splits;
    let d = i % HEAD_DIM;
    let first_acc = block_acc(first, 0u, num_splits, d);
    // 1. M = max_s m_s and the denominator Σ_s w_s·l_s, splits in order
    var global_max = NEG_HUGE;
    for (var s = 0u; s < num_splits; s += 4u) {
      let ml = block_ml(first, s, num_splits);
      global_max = max(max(global_max, max(ml[0].x, ml[1].x)), max(ml[2].x, ml[3].x));
    }
    var denominator = 0.0;
    for (var s = 0u; s < num_splits; s += 4u) {
      let ml = block_ml(first, s, num_splits);
      for (var j = 0u; j < 4u; j++) {  // unroll
        denominator += split_weight(ml[j], global_max) * ml[j].y;
      }
    }
    // 2. Σ_s w_s·acc_s / denominator, splits in order
    var total = 0.0;
    for (var s = 0u; s < num_splits; s += 4u) {
      let ml = block_ml(first, s, num_splits);
      var acc = first_acc;
      if (s > 0u) {
        acc = block_acc(first, s, num_splits, d);
      }
      for (var j = 0u; j < 4u; j++) {  // unroll
        let w = split_weight(ml[j], global_max);
        total += select(0.0, w * acc[j], w != 0.0);
      }
    }
    rot_buf[i] = total / denominator;
  }
}
