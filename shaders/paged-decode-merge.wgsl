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

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.y * NUM_Q_HEADS + wid.x;  // (seq, head)
  let num_splits = params.num_splits;
  var global_max = NEG_HUGE;
  for (var s = 0u; s < num_splits; s++) {
    global_max = max(global_max, partial_ml[row * num_splits + s].x);
  }
  var denominator = 0.0;
  for (var s = 0u; s < num_splits; s++) {
    let ml = partial_ml[row * num_splits + s];
    denominator += select(exp2(ml.x - global_max) * ml.y, 0.0, ml.y == 0.0);
  }
  for (var d = lid; d < HEAD_DIM; d += WORKGROUP_SIZE) {
    var total = 0.0;
    for (var s = 0u; s < num_splits; s++) {
      let ml = partial_ml[row * num_splits + s];
      if (ml.y != 0.0) {
        total += exp2(ml.x - global_max) * partial_acc[(row * num_splits + s) * HEAD_DIM + d];
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
