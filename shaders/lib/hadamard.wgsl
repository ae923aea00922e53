// Block-diagonal Walsh–Hadamard butterflies over vectors held in workgroup memory.
//
// Needs, from the including kernel: consts HEAD_DIM, HADAMARD_BLOCK, WORKGROUP_SIZE, ROT_VECTORS and
//   var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;   // [ROT_VECTORS, HEAD_DIM]
// Every invocation of the workgroup must call these (they contain barriers).

// rot_buf ← rot_buf · H_blk, unnormalised (the caller multiplies by 1/√B once).
// Stage `half` pairs element i (bit `half` clear) with i + half; blocks of B divide HEAD_DIM, so the
// whole [ROT_VECTORS, HEAD_DIM] buffer can be treated as one array. Stages below `first_half` are
// skipped (the caller did them in registers: hadamard_in_lane). Two stages share one pass (and one
// barrier) where they can: an invocation takes the 4 elements i, i+h, i+2h, i+3h and applies stage h
// then stage 2h to them, the same additions in the same order as two single-stage passes.
fn hadamard_rows_in_workgroup(lid: u32, first_half: u32) {
  let quads = ROT_VECTORS * HEAD_DIM / 4u;
  var half = first_half;
  for (; 2u * half < HADAMARD_BLOCK; half <<= 2u) {
    workgroupBarrier();
    for (var p = lid; p < quads; p += WORKGROUP_SIZE) {
      let i = (p / half) * 4u * half + (p % half);
      let x0 = rot_buf[i];
      let x1 = rot_buf[i + half];
      let x2 = rot_buf[i + 2u * half];
      let x3 = rot_buf[i + 3u * half];
      let a0 = x0 + x1;
      let a1 = x0 - x1;
      let a2 = x2 + x3;
      let a3 = x2 - x3;
      rot_buf[i] = a0 + a2;
      rot_buf[i + half] = a1 + a3;
      rot_buf[i + 2u * half] = a0 - a2;
      rot_buf[i + 3u * half] = a1 - a3;
    }
  }
  if (half < HADAMARD_BLOCK) {  // one stage left
    workgroupBarrier();
    for (var p = lid; p < 2u * quads; p += WORKGROUP_SIZE) {
      let lo = (p / half) * 2u * half + (p % half);
      let a = rot_buf[lo];
      let b = rot_buf[lo + half];
      rot_buf[lo] = a + b;
      rot_buf[lo + half] = a - b;
    }
  }
  workgroupBarrier();
}

// The word of the random signs (sign_bits: array<vec4<u32>, 2> of the kernel's params) holding element
// d's bit, and ±1 from it (bit d % 32 set means −1). Callers index params directly: passing the array
// by value would copy it into local memory on some drivers.
//   hadamard_sign(params.sign_bits[d / 128u][(d / 32u) % 4u], d)
fn hadamard_sign(word: u32, d: u32) -> f32 {
  return select(1.0, -1.0, ((word >> (d % 32u)) & 1u) == 1u);
}

// The three butterfly stages that stay inside 8 consecutive, 8-aligned elements of a row (half = 1,
// 2, 4; every Hadamard block is ≥ 16), in registers, straight-line (no indexing by a loop variable,
// which would put the array in local memory). Continue with hadamard_rows_in_workgroup(lid, 8u).
fn hadamard_in_lane(x: array<f32, 8>) -> array<f32, 8> {
  let a = array<f32, 8>(x[0] + x[1], x[0] - x[1], x[2] + x[3], x[2] - x[3], x[4] + x[5], x[4] - x[5], x[6] + x[7], x[6] - x[7]);
  let b = array<f32, 8>(a[0] + a[2], a[1] + a[3], a[0] - a[2], a[1] - a[3], a[4] + a[6], a[5] + a[7], a[4] - a[6], a[5] - a[7]);
  return array<f32, 8>(b[0] + b[4], b[1] + b[5], b[2] + b[6], b[3] + b[7], b[0] - b[4], b[1] - b[5], b[2] - b[6], b[3] - b[7]);
}
