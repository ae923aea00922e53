// Block-diagonal Walsh–Hadamard butterflies over vectors held in workgroup memory.
//
// Needs, from the including kernel: consts HEAD_DIM, HADAMARD_BLOCK, WORKGROUP_SIZE, ROT_VECTORS,
// RANDOM_SIGNS (1: `params.sign_bits` holds random ±1 signs; 0: none, and the bits are never read) and
//   var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;   // [ROT_VECTORS, HEAD_DIM]
// Every invocation of the workgroup must call these (they contain barriers).

// Two butterfly stages on 4 values (stage h on pairs (0,1), (2,3), then stage 2h on (0,2), (1,3)).
fn hadamard4(x: vec4<f32>) -> vec4<f32> {
  let a = vec4<f32>(x.x + x.y, x.x - x.y, x.z + x.w, x.z - x.w);
  return vec4<f32>(a.x + a.z, a.y + a.w, a.x - a.z, a.y - a.w);
}

// rot_buf ← rot_buf · H_blk, unnormalised (the caller multiplies by 1/√B once).
// Stage `half` pairs element i (bit `half` clear) with i + half; blocks of B divide HEAD_DIM, so the
// whole [ROT_VECTORS, HEAD_DIM] buffer can be treated as one array. Stages below `first_half` are
// skipped (the caller did them in registers: hadamard_in_lane). Several stages share one pass (and
// one barrier): an invocation takes 16 (or 4, or 2) elements i + k·h and applies stages h, 2h, 4h,
// 8h to them in registers, the same additions in the same order as one pass per stage.
fn hadamard_rows_in_workgroup(lid: u32, first_half: u32) {
  let n = ROT_VECTORS * HEAD_DIM;
  var half = first_half;
  for (; 8u * half < HADAMARD_BLOCK; half <<= 4u) {  // four stages per pass
    workgroupBarrier();
    for (var p = lid; p < n / 16u; p += WORKGROUP_SIZE) {
      let i = (p / half) * 16u * half + (p % half);
      var x: array<vec4<f32>, 4>;  // x[g][j] = element i + (4g + j)·half
      x[0] = hadamard4(vec4<f32>(rot_buf[i], rot_buf[i + half], rot_buf[i + 2u * half], rot_buf[i + 3u * half]));
      x[1] = hadamard4(vec4<f32>(rot_buf[i + 4u * half], rot_buf[i + 5u * half], rot_buf[i + 6u * half], rot_buf[i + 7u * half]));
      x[2] = hadamard4(vec4<f32>(rot_buf[i + 8u * half], rot_buf[i + 9u * half], rot_buf[i + 10u * half], rot_buf[i + 11u * half]));
      x[3] = hadamard4(vec4<f32>(rot_buf[i + 12u * half], rot_buf[i + 13u * half], rot_buf[i + 14u * half], rot_buf[i + 15u * half]));
      // stages 4h and 8h: element j of the four groups
      let y0 = hadamard4(vec4<f32>(x[0].x, x[1].x, x[2].x, x[3].x));
      let y1 = hadamard4(vec4<f32>(x[0].y, x[1].y, x[2].y, x[3].y));
      let y2 = hadamard4(vec4<f32>(x[0].z, x[1].z, x[2].z, x[3].z));
      let y3 = hadamard4(vec4<f32>(x[0].w, x[1].w, x[2].w, x[3].w));
      rot_buf[i] = y0.x;
      rot_buf[i + half] = y1.x;
      rot_buf[i + 2u * half] = y2.x;
      rot_buf[i + 3u * half] = y3.x;
      rot_buf[i + 4u * half] = y0.y;
      rot_buf[i + 5u * half] = y1.y;
      rot_buf[i + 6u * half] = y2.y;
      rot_buf[i + 7u * half] = y3.y;
      rot_buf[i + 8u * half] = y0.z;
      rot_buf[i + 9u * half] = y1.z;
      rot_buf[i + 10u * half] = y2.z;
      rot_buf[i + 11u * half] = y3.z;
      rot_buf[i + 12u * half] = y0.w;
      rot_buf[i + 13u * half] = y1.w;
      rot_buf[i + 14u * half] = y2.w;
      rot_buf[i + 15u * half] = y3.w;
    }
  }
  for (; 2u * half < HADAMARD_BLOCK; half <<= 2u) {  // two stages per pass
    workgroupBarrier();
    for (var p = lid; p < n / 4u; p += WORKGROUP_SIZE) {
      let i = (p / half) * 4u * half + (p % half);
      let y = hadamard4(vec4<f32>(rot_buf[i], rot_buf[i + half], rot_buf[i + 2u * half], rot_buf[i + 3u * half]));
      rot_buf[i] = y.x;
      rot_buf[i + half] = y.y;
      rot_buf[i + 2u * half] = y.z;
      rot_buf[i + 3u * half] = y.w;
    }
  }
  if (half < HADAMARD_BLOCK) {  // one stage left
    workgroupBarrier();
    for (var p = lid; p < n / 2u; p += WORKGROUP_SIZE) {
      let lo = (p / half) * 2u * half + (p % half);
      let a = rot_buf[lo];
      let b = rot_buf[lo + half];
      rot_buf[lo] = a + b;
      rot_buf[lo + half] = a - b;
    }
  }
  workgroupBarrier();
}

// rot_buf ← rot_buf · H_blk / √B × signs: the inverse of the rotation the write kernel applied to V
// (× signs, then · H_blk / √B), on every row. Needs the kernel's `params.sign_bits`; contains barriers.
fn unrotate_rows_in_workgroup(lid: u32) {
  hadamard_rows_in_workgroup(lid, 1u);
  let norm = inverseSqrt(f32(HADAMARD_BLOCK));
  for (var i = lid; i < ROT_VECTORS * HEAD_DIM; i += WORKGROUP_SIZE) {
    let d = i % HEAD_DIM;
    rot_buf[i] = rot_buf[i] * norm * random_sign(d);
  }
  workgroupBarrier();
}

// ±1 for element d from the word of the random signs holding its bit (bit d % 32 set means −1).
fn hadamard_sign(word: u32, d: u32) -> f32 {
  return select(1.0, -1.0, ((word >> (d % 32u)) & 1u) == 1u);
}

// The word of the random signs (sign_bits: array<vec4<u32>, 2> of the kernel's params) holding element
// d's bit; 0 (all +1) without random signs, when params are not read at all: the dynamic index into the
// uniform cost ~0.9 µs per cache write on an H200 even with every bit clear. Indexes params directly:
// passing the array by value would copy it into local memory on some drivers.
fn sign_word(d: u32) -> u32 {
  if (RANDOM_SIGNS == 0u) {
    return 0u;
  }
  return params.sign_bits[d / 128u][(d / 32u) % 4u];
}

// ±1 of element d (1 without random signs).
fn random_sign(d: u32) -> f32 {
  if (RANDOM_SIGNS == 0u) {
    return 1.0;
  }
  return hadamard_sign(sign_word(d), d);
}

// The three butterfly stages that stay inside 8 consecutive, 8-aligned elements of a row (half = 1,
// 2, 4; every Hadamard block is ≥ 16), in registers, straight-line (no indexing by a loop variable,
// which would put the array in local memory). Continue with hadamard_rows_in_workgroup(lid, 8u).
fn hadamard_in_lane(x: array<f32, 8>) -> array<f32, 8> {
  let a = array<f32, 8>(x[0] + x[1], x[0] - x[1], x[2] + x[3], x[2] - x[3], x[4] + x[5], x[4] - x[5], x[6] + x[7], x[6] - x[7]);
  let b = array<f32, 8>(a[0] + a[2], a[1] + a[3], a[0] - a[2], a[1] - a[3], a[4] + a[6], a[5] + a[7], a[4] - a[6], a[5] - a[7]);
  return array<f32, 8>(b[0] + b[4], b[1] + b[5], b[2] + b[6], b[3] + b[7], b[0] - b[4], b[1] - b[5], b[2] - b[6], b[3] - b[7]);
}
