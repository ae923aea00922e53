// The split-K merge of (sequence, query head) rows, shared by shaders/paged-decode-merge.wgsl and the
// subgroup kernel's in-dispatch merge (lib/decode-epilogue.wgsl, MERGE_IN_DISPATCH). Split s of a row
// left its partial Σ p·v (acc_s, relative to its own maximum) and (m_s, l_s) = (maximum·log2e, Σ p):
//   M = max_s m_s,  w_s = exp2(m_s − M),  out = Σ_s w_s·acc_s / Σ_s w_s·l_s
// (an empty split has m = −inf and l = 0, so w = 0). Splits are taken in order, so the result is the
// same bits run to run, whichever workgroup merges.
//
// The including kernel says where the partials are, a block of SPLIT_MERGE_BLOCK splits
// s..s+SPLIT_MERGE_BLOCK−1 at a time (past num_splits: the last split again):
// load_ml_block(first, s, num_splits) -> array<vec2<f32>, SPLIT_MERGE_BLOCK> of (m, l), empty past
// num_splits, and load_acc_block(first, s, num_splits, d) -> array<f32, SPLIT_MERGE_BLOCK>, with
// first = row × num_splits the row's first record and row = seq × NUM_Q_HEADS + head; and declares
// HEAD_DIM, WORKGROUP_SIZE, SPLIT_MERGE_ROWS, SPLIT_MERGE_BLOCK, NEG_HUGE and rot_buf.
//
// At batch 1 a merge waits for the latency of its loads, not for bandwidth: splits are read in blocks of
// independent loads (four in the merge kernel; the in-dispatch merge reads all its splits as one
// block), the first block of partial values before the maxima (it does not depend on them), the first
// block's maxima once for all passes. On an NVIDIA H200 (docs/tuning.md): the first version (three
// loops of one load each) took 3.6 µs at 3 splits, 5 µs at 7; tree reductions over the workgroup were
// slower at 3 splits; blocks of four took 1 µs off batch 1's attention against loads four at a time
// with a one-by-one remainder; one block of all 7 splits took the in-dispatch merge's 1 × 4k attention
// from 17.4 to 15.4 µs (fp16).

// w_s = exp2(m_s − M), 0 for an empty split (l = 0).
fn split_weight(ml: vec2<f32>, global_max: f32) -> f32 {
  return select(exp2(ml.x - global_max), 0.0, ml.y == 0.0);
}

// rot_buf[r·HEAD_DIM + d] = element d of the merged (normalised) output of row first_row + r, for the
// SPLIT_MERGE_ROWS rows and this invocation's elements d = lid, lid + WORKGROUP_SIZE, … (no barrier).
// A block is SPLIT_MERGE_BLOCK splits (load_ml_block / load_acc_block: independent loads; splits past
// num_splits count as empty); the first block's (max, sum) serve all three passes and its values of
// element lid are loaded before the maxima, so a merge of ≤ SPLIT_MERGE_BLOCK splits waits for one
// round of loads.
fn merge_rows_into_rot_buf(lid: u32, first_row: u32, num_splits: u32) {
  for (var r = 0u; r < SPLIT_MERGE_ROWS; r++) {  // unroll
    let first = (first_row + r) * num_splits;
    let first_acc = load_acc_block(first, 0u, num_splits, min(lid, HEAD_DIM - 1u));
    let first_ml = load_ml_block(first, 0u, num_splits);
    // 1. M = max_s m_s and the denominator Σ_s w_s·l_s, splits in order
    var global_max = NEG_HUGE;
    for (var s = 0u; s < num_splits; s += SPLIT_MERGE_BLOCK) {
      var ml = first_ml;
      if (s > 0u) {
        ml = load_ml_block(first, s, num_splits);
      }
      for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
        global_max = max(global_max, ml[j].x);
      }
    }
    var denominator = 0.0;
    for (var s = 0u; s < num_splits; s += SPLIT_MERGE_BLOCK) {
      var ml = first_ml;
      if (s > 0u) {
        ml = load_ml_block(first, s, num_splits);
      }
      for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
        denominator += split_weight(ml[j], global_max) * ml[j].y;
      }
    }
    // 2. Σ_s w_s·acc_s / denominator, splits in order
    for (var d = lid; d < HEAD_DIM; d += WORKGROUP_SIZE) {
      var total = 0.0;
      for (var s = 0u; s < num_splits; s += SPLIT_MERGE_BLOCK) {
        var ml = first_ml;
        var acc = first_acc;
        if (s > 0u) {
          ml = load_ml_block(first, s, num_splits);
        }
        if (s > 0u || d != lid) {
          acc = load_acc_block(first, s, num_splits, d);
        }
        for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
          let w = split_weight(ml[j], global_max);
          total += select(0.0, w * acc[j], w != 0.0);
        }
      }
      rot_buf[r * HEAD_DIM + d] = total / denominator;
    }
  }
}
