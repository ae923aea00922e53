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
var<workgroup> reduce_buf: array<f32, WORKGROUP_SIZE>;      // one value per invocation (max, then sum)
var<workgroup> weights: array<f32, WORKGROUP_SIZE>;         // w_s of splits s < WORKGROUP_SIZE

// Stands for −inf (a const −inf is not expressible in WGSL); exp2(NEG_HUGE − m) is 0.
const NEG_HUGE: f32 = -3.0e38;

// The maximum (is_max) or sum of every invocation's x, in a fixed order (a tree over lid); all get it.
// Contains barriers: call from uniform control flow.
fn workgroup_reduce(lid: u32, x: f32, is_max: bool) -> f32 {
  reduce_buf[lid] = x;
  workgroupBarrier();
  for (var width = WORKGROUP_SIZE; width > 1u; ) {
    let half = (width + 1u) / 2u;
    if (lid < width - half) {
      let a = reduce_buf[lid];
      let b = reduce_buf[lid + half];
      reduce_buf[lid] = select(a + b, max(a, b), is_max);
    }
    width = half;
    workgroupBarrier();
  }
  let result = reduce_buf[0];
  workgroupBarrier();  // reduce_buf is free again
  return result;
}

// w_s = exp2(m_s − M), 0 for an empty split (l = 0).
fn split_weight(ml: vec2<f32>, global_max: f32) -> f32 {
  return select(exp2(ml.x - global_max), 0.0, ml.y == 0.0);
}

// Split-K loads are independent of each other: the latency of one split's load is what a merge at
// batch 1 waits for, so (max, sum) pairs are loaded by every invocation at once and partial values
// four splits at a time (on an NVIDIA H200 the serial version took 3.6 µs at 3 splits, 5 µs at 7).
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.y * NUM_Q_HEADS + wid.x;  // (seq, head)
  let num_splits = params.num_splits;
  // 1. M = max_s m_s; the weights of the first WORKGROUP_SIZE splits into workgroup memory; Σ_s w_s·l_s
  var local_max = NEG_HUGE;
  for (var s = lid; s < num_splits; s += WORKGROUP_SIZE) {
    local_max = max(local_max, partial_ml[row * num_splits + s].x);
  }
  let global_max = workgroup_reduce(lid, local_max, true);
  var local_sum = 0.0;
  for (var s = lid; s < num_splits; s += WORKGROUP_SIZE) {
    let ml = partial_ml[row * num_splits + s];
    let w = split_weight(ml, global_max);
    if (s < WORKGROUP_SIZE) {
      weights[s] = w;
    }
    local_sum += w * ml.y;
  }
  let denominator = workgroup_reduce(lid, local_sum, false);  // its barriers publish `weights`
  // 2. out = Σ_s w_s·acc_s / denominator, splits in order (bitwise reproducible), loads four at a time
  for (var d = lid; d < HEAD_DIM; d += WORKGROUP_SIZE) {
    var total = 0.0;
    var s = 0u;
    for (; s + 4u <= num_splits; s += 4u) {
      var acc: array<f32, 4>;
      for (var j = 0u; j < 4u; j++) {  // unroll
        acc[j] = partial_acc[(row * num_splits + s + j) * HEAD_DIM + d];
      }
      for (var j = 0u; j < 4u; j++) {  // unroll
        let w = merge_weight(row, s + j, num_splits, global_max);
        total += select(0.0, w * acc[j], w != 0.0);
      }
    }
    for (; s < num_splits; s++) {
      let w = merge_weight(row, s, num_splits, global_max);
      total += select(0.0, w * partial_acc[(row * num_splits + s) * HEAD_DIM + d], w != 0.0);
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

// w_s from workgroup memory for the first WORKGROUP_SIZE splits, else from its (max, sum).
fn merge_weight(row: u32, s: u32, num_splits: u32, global_max: f32) -> f32 {
  if (s < WORKGROUP_SIZE) {
    return weights[s];
  }
  return split_weight(partial_ml[row * num_splits + s], global_max);
}
