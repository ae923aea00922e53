// Split-K merge for paged decode: combines the num_splits partial results of each (sequence, query
// head) written by the decode kernels with lib/split-merge.wgsl (log-sum-exp, splits in order). When V
// was rotated the result is rotated back (· H_blk, × signs). One workgroup per (query head, sequence).
//
// Constants from src/kernels/paged-decode.ts: HEAD_DIM, NUM_Q_HEADS, HADAMARD_BLOCK, ROTATE_OUT, RANDOM_SIGNS,
// ROT_VECTORS (= 1), SPLIT_MERGE_ROWS (= 1), SPLIT_MERGE_BLOCK (= 4), WORKGROUP_SIZE.

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

// Where lib/split-merge.wgsl finds the partials (written by the decode kernel before this dispatch):
// SPLIT_MERGE_BLOCK independent loads; splits past num_splits re-read the last one and count as empty.
fn load_ml_block(first: u32, s: u32, num_splits: u32) -> array<vec2<f32>, SPLIT_MERGE_BLOCK> {
  var ml: array<vec2<f32>, SPLIT_MERGE_BLOCK>;
  for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
    ml[j] = select(vec2<f32>(NEG_HUGE, 0.0), partial_ml[first + min(s + j, num_splits - 1u)], s + j < num_splits);
  }
  return ml;
}

fn load_acc_block(first: u32, s: u32, num_splits: u32, d: u32) -> array<f32, SPLIT_MERGE_BLOCK> {
  var acc: array<f32, SPLIT_MERGE_BLOCK>;
  for (var j = 0u; j < SPLIT_MERGE_BLOCK; j++) {  // unroll
    acc[j] = partial_acc[(first + min(s + j, num_splits - 1u)) * HEAD_DIM + d];
  }
  return acc;
}

// The merge itself is lib/split-merge.wgsl's (also the subgroup kernel's in-dispatch merge); no barrier
// is needed before the output without a rotation (each invocation writes the elements it merged).
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.y * NUM_Q_HEADS + wid.x;  // (seq, head)
  merge_rows_into_rot_buf(lid, row, params.num_splits);
  if (ROTATE_OUT == 1u) {
    unrotate_rows_in_workgroup(lid);
  }
  for (var d = lid; d < HEAD_DIM; d += WORKGROUP_SIZE) {
    out[row * HEAD_DIM + d] = rot_buf[d];
  }
}
