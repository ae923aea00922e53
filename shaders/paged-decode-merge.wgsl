// Split-K merge for paged decode: combines the num_splits partial results of each (sequence, query
// head) written by paged-decode-workgroup.wgsl, using their log-sum-exp:
//   M = max_s m_s,  w_s = exp2(m_s − M),  out = Σ_s w_s·acc_s / Σ_s w_s·l_s
// (m is in log2 units; empty splits have m = −inf and l = 0, so w = 0). When V was rotated the result
// is rotated back (· H_blk, × signs). One workgroup per (query head, sequence).
//
// Constants from src/kernels/paged-decode.ts: HEAD_DIM, NUM_Q_HEADS, HADAMARD_BLOCK, ROTATE_OUT, RANDOM_SIGNS,
// ROT_VECTORS (= 1), WORKGROUP_SIZE.

struct MergeParams {
  num_splits: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
  sign_bits: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> partial_acc: array<f32>;        // [S, NUM_Q_HEADS, num_splits, HEAD_DIM]
@group(0) @binding(1) var<storage, read> partial_ml: array<vec2<f32>>;   // [S, NUM_Q_HEADS, num_splits]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;          // [S, NUM_Q_HEADS, HEAD_DIM]
@group(0) @binding(3) var<uniform> params: MergeParams;

var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;  // [1, HEAD_DIM] merged output

// Stands for −inf (a const −inf is not expressible in WGSL); exp2(NEG_HUGE − m) is 0.
const NEG_HUGE: f32 = -3.0e38;

// w_s = exp2(m_s − M), 0 for an empty split (l = 0).
fn split_weight(ml: vec2<f32>, global_max: f32) -> f32 {
  return select(exp2(ml.x - global_max), 0.0, ml.y == 0.0);
}

// The (max, sum) of the four splits s..s+3 (a block): all four loads issued before any is used; splits
// past num_splits re-read the last one and count as empty (m = −inf, l = 0).
fn block_ml(first: u32, s: u32, num_splits: u32) -> array<vec2<f32>, 4> {
  var ml: array<vec2<f32>, 4>;
  for (var j = 0u; j < 4u; j++) {  // unroll
    ml[j] = select(vec2<f32>(NEG_HUGE, 0.0), partial_ml[first + min(s + j, num_splits - 1u)], s + j < num_splits);
  }
  return ml;
}

// Element d of the partial values of the block's splits (past num_splits: the last split's, weighted 0).
fn block_acc(first: u32, s: u32, num_splits: u32, d: u32) -> array<f32, 4> {
  var acc: array<f32, 4>;
  for (var j = 0u; j < 4u; j++) {  // unroll
    acc[j] = partial_acc[(first + min(s + j, num_splits - 1u)) * HEAD_DIM + d];
  }
  return acc;
}

// At batch 1 a merge waits for the latency of its loads, not for bandwidth: splits are read in blocks of
// four independent loads, the first block of partial values before the maxima (it does not depend on
// them), and no barrier is needed before the output. On an NVIDIA H200 (docs/tuning.md): the first
// version (three loops of one load each) took 3.6 µs at 3 splits, 5 µs at 7; tree reductions over the
// workgroup were slower at 3 splits; blocks of four took 1 µs off batch 1's attention against loads four
// at a time with a one-by-one remainder (3 splits: all of them one by one).
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.y * NUM_Q_HEADS + wid.x;  // (seq, head)
  let num_splits = params.num_splits;
  let first = row * num_splits;
  let first_acc = block_acc(first, 0u, num_splits, lid);  // lid < HEAD_DIM: WORKGROUP_SIZE ≤ HEAD_DIM
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
  // 2. out = Σ_s w_s·acc_s / denominator, splits in order (bitwise reproducible)
  for (var d = lid; d < HEAD_DIM; d += WORKGROUP_SIZE) {
    var total = 0.0;
    for (var s = 0u; s < num_splits; s += 4u) {
      let ml = block_ml(first, s, num_splits);
      var acc = first_acc;
      if (s > 0u || d != lid) {
        acc = block_acc(first, s, num_splits, d);
      }
      for (var j = 0u; j < 4u; j++) {  // unroll
        let w = split_weight(ml[j], global_max);
        total += select(0.0, w * acc[j], w != 0.0);
      }
    }
    rot_buf[d] = total / denominator;
  }
  if (ROTATE_OUT == 1u) {
    unrotate_rows_in_workgroup(lid);
  }
  for (var d = lid; d < HEAD_DIM; d += WORKGROUP_SIZE) {
    out[row * HEAD_DIM + d] = rot_buf[d];
  }
}
