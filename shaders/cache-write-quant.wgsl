// Fused cache write of every quantized method: [block-diagonal Hadamard rotation] + quantization +
// packing + paged store, for a batch of new tokens (prefill: many per sequence; decode: one each).
// Methods: token-wise INT4 (`int4`; `int4-hadamard` rotates K, and V when rotate_v), token-wise INT8
// (`int8`) and INT4 with one scale/min per group of channels (`int4-g32`).
//
// One workgroup handles ROWS_PER_WG rows of either K (workgroup_id.y = 0) or V (y = 1); a row is one
// (token, kv head) vector of HEAD_DIM values and LANES = HEAD_DIM/8 invocations share it: lane i owns
// elements 8i..8i+7. A scale group is GROUP_LANES consecutive lanes (all of them for token-wise
// methods, 32/8 = 4 for int4-g32). Per row:
//   1. load 8 values per lane (× random signs when rotating);
//   2. rotate: log2(B) butterfly stages (those within a lane's 8 elements in registers, the others in
//      workgroup memory), then × 1/√B (rows of a workgroup are all K or all V, so "rotate or not" is
//      uniform and the barriers are legal);
//   3. min/max over the group (per lane, then across the group's lanes through workgroup memory);
//   4. scale = (max − min)/MAX_CODE and min rounded to f16 (f16_bits: round to nearest even), then
//      q = quant_code(x, min16, scale16, 1/scale16, MAX_CODE), q = 0 when scale16 = 0 (docs/numeric-contract.md
//      per group; lib/quantize-lane.wgsl, which the fused decode step shares);
//   5. pack: CODE_BITS = 4 → 1 word in NIBBLE ORDER; CODE_BITS = 8 → 2 words in BYTE ORDER
//      (src/layout.ts); the group's first lane stores pack(scale16, min16) at its group's index.
// A non-finite input only ever reaches its own group's words and scale/min.
//
// Constants from src/kernels/cache-write.ts: HEAD_DIM, NUM_KV_HEADS, PAGE_SIZE, ROW_WORDS, PAGE_WORDS,
// SCALE_MIN_REGION_OFFSET, SCALE_MIN_WORDS (groups per row), CODE_BITS, MAX_CODE (f32), LANES,
// GROUP_LANES, ROWS_PER_WG, ROT_VECTORS (= ROWS_PER_WG), HADAMARD_BLOCK (1: no rotation), ROTATE_K,
// ROTATE_V, RANDOM_SIGNS, WORKGROUP_SIZE (= ROWS_PER_WG × LANES).

// Loops over the lane's 8 values are marked `// unroll` and unrolled by the host
// (src/kernels/wgsl-unroll.ts), so those arrays stay in registers.
//
// WriteParams and the bindings: lib/cache-write-io.wgsl.

var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;  // [ROWS_PER_WG, HEAD_DIM] rows being rotated
var<workgroup> lane_min: array<f32, WORKGROUP_SIZE>;         // per-lane minima, [ROWS_PER_WG, LANES]
var<workgroup> lane_max: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let is_v = wid.y == 1u;
  let row_in_wg = lid / LANES;
  let lane = lid % LANES;
  let row = (wid.x + wid.z * nwg.x) * ROWS_PER_WG + row_in_wg;  // = token * NUM_KV_HEADS + kv head
  let valid = row < params.num_tokens * NUM_KV_HEADS;

  let rotate = select(ROTATE_K, ROTATE_V, is_v) == 1u;

  // 1. load (a lane's 8 elements share one word of sign bits)
  let lane_signs = sign_word(lane * 8u);
  var x: array<f32, 8>;
  for (var e = 0u; e < 8u; e++) {  // unroll
    let d = lane * 8u + e;
    var value = 0.0;
    if (valid) {
      value = select(new_k[row * HEAD_DIM + d], new_v[row * HEAD_DIM + d], is_v);
    }
    if (rotate && RANDOM_SIGNS == 1u) {
      value *= hadamard_sign(lane_signs, d);
    }
    x[e] = value;
  }

  // 2. rotate: the stages inside a lane's 8 elements in registers, the rest in workgroup memory
  if (rotate) {
    x = hadamard_in_lane(x);
    for (var e = 0u; e < 8u; e++) {  // unroll
      rot_buf[row_in_wg * HEAD_DIM + lane * 8u + e] = x[e];
    }
    hadamard_rows_in_workgroup(lid, 8u);
    let norm = inverseSqrt(f32(HADAMARD_BLOCK));
    for (var e = 0u; e < 8u; e++) {  // unroll
      x[e] = rot_buf[row_in_wg * HEAD_DIM + lane * 8u + e] * norm;
    }
  }

  // 3. min / max over the group
  var mn = x[0];
  var mx = x[0];
  for (var e = 1u; e < 8u; e++) {  // unroll
    mn = min(mn, x[e]);
    mx = max(mx, x[e]);
  }
  lane_min[lid] = mn;
  lane_max[lid] = mx;
  workgroupBarrier();
  let group = lane / GROUP_LANES;
  let first_lane = row_in_wg * LANES + group * GROUP_LANES;
  for (var j = 0u; j < GROUP_LANES; j++) {
    mn = min(mn, lane_min[first_lane + j]);
    mx = max(mx, lane_max[first_lane + j]);
  }

  // 4. f16 scale / min, quantize (lib/quantize-lane.wgsl)
  let scale_min = group_scale_min_word(mn, mx);
  let codes = lane_codes(x, scale_min);

  if (!valid) {
    return;
  }
  let token = row / NUM_KV_HEADS;
  let kv_head = row % NUM_KV_HEADS;
  let slot = slots[token];
  let page = slot / PAGE_SIZE;
  let row_slot = kv_head * PAGE_SIZE + slot % PAGE_SIZE;
  let row_start = row_slot * ROW_WORDS;  // in the page

  // 5. pack and store
  if (CODE_BITS == 4u) {
    store_cache_word(is_v, page, row_start + lane, pack_nibbles(codes));
  } else {
    for (var w = 0u; w < 2u; w++) {  // unroll
      store_cache_word(is_v, page, row_start + 2u * lane + w, pack_bytes(codes, w));
    }
  }
  if (lane % GROUP_LANES == 0u) {
    store_cache_word(is_v, page, SCALE_MIN_REGION_OFFSET + row_slot * SCALE_MIN_WORDS + group, scale_min);
  }
}
