// Block-diagonal Walsh–Hadamard butterflies over vectors held in workgroup memory.
//
// Needs, from the including kernel: consts HEAD_DIM, HADAMARD_BLOCK, WORKGROUP_SIZE, ROT_VECTORS and
//   var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;   // [ROT_VECTORS, HEAD_DIM]
// Every invocation of the workgroup must call these (they contain barriers).

// rot_buf ← rot_buf · H_blk, unnormalised (the caller multiplies by 1/√B once).
// Stage `half` pairs element i (bit `half` clear) with i + half; blocks of B divide HEAD_DIM, so the
// whole [ROT_VECTORS, HEAD_DIM] buffer can be treated as one array. Stages below `first_half` are
// skipped (the caller did them in registers: hadamard_in_lane).
fn hadamard_rows_in_workgroup(lid: u32, first_half: u32) {
  let pairs = ROT_VECTORS * HEAD_DIM / 2u;
  for (var half = first_half; half < HADAMARD_BLOCK; half <<= 1u) {
    workgroupBarrier();
    for (var p = lid; p < pairs; p += WORKGROUP_SIZE) {
      let lo = (p / half) * 2u * half + (p % half);
      let a = rot_buf[lo];
      let b = rot_buf[lo + half];
      rot_buf[lo] = a + b;
      rot_buf[lo + half] = a - b;
    }
  }
  workgroupBarrier();
}

// ±1: the random sign of element d (bit d of `bits` set means −1).
fn hadamard_sign(bits: array<vec4<u32>, 2>, d: u32) -> f32 {
  let word = bits[d / 128u][(d / 32u) % 4u];
  return select(1.0, -1.0, ((word >> (d % 32u)) & 1u) == 1u);
}

// The butterfly stages that stay inside 8 consecutive, 8-aligned elements of a row (half = 1, 2, 4,
// below the block size), in registers; returns the first stage still to do across lanes.
fn hadamard_in_lane(x: ptr<function, array<f32, 8>>) -> u32 {
  var half = 1u;
  for (; half < min(8u, HADAMARD_BLOCK); half <<= 1u) {
    for (var e = 0u; e < 8u; e++) {
      if ((e & half) == 0u) {
        let a = (*x)[e];
        let b = (*x)[e + half];
        (*x)[e] = a + b;
        (*x)[e + half] = a - b;
      }
    }
  }
  return half;
}
