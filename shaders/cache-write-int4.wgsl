// Fused cache write: [block-diagonal Hadamard rotation] + INT4 quantization + nibble packing + paged
// store, for a batch of new tokens (prefill: many per sequence; decode: one per sequence).
//
// One workgroup handles ROT_VECTORS rows of either K (workgroup_id.y = 0) or V (y = 1); a row is one
// (token, kv head) vector of HEAD_DIM values, and ROW_WORDS = HEAD_DIM/8 invocations share it: lane i
// owns elements 8i..8i+7, exactly the 8 nibbles of output word i. Steps, per row:
//   1. load (× random signs when rotating) into rot_buf;
//   2. rotate: log2(B) butterfly stages in workgroup memory, then × 1/√B (rows of a workgroup are all
//      K or all V, so "rotate or not" is uniform and the barriers are legal);
//   3. min/max over the row (per-lane, then across the row's lanes through workgroup memory);
//   4. scale = (max − min)/15 and min rounded to f16 (f16_bits: round to nearest even), then
//      q = clamp(round((x − min16)/scale16), 0, 15), q = 0 when scale16 = 0 (numeric contract, DESIGN §3);
//   5. pack 8 codes in NIBBLE ORDER (src/layout.ts), store the word; lane 0 stores pack(scale16, min16).
// A non-finite input only ever reaches its own row's words and scale/min.
//
// Constants come from the host (src/kernels/cache-write.ts): HEAD_DIM, NUM_KV_HEADS, PAGE_SIZE,
// ROW_WORDS, PAGE_WORDS, SCALE_MIN_REGION_OFFSET, HADAMARD_BLOCK (1: no rotation), ROTATE_K,
// ROTATE_V, ROT_VECTORS (rows per workgroup), WORKGROUP_SIZE (= ROT_VECTORS × ROW_WORDS).

// WriteParams and the bindings: lib/cache-write-io.wgsl.

var<workgroup> rot_buf: array<f32, ROT_VECTORS * HEAD_DIM>;  // [ROT_VECTORS, HEAD_DIM] rows being rotated
var<workgroup> lane_min: array<f32, WORKGROUP_SIZE>;         // per-lane minima, [ROT_VECTORS, ROW_WORDS]
var<workgroup> lane_max: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let is_v = wid.y == 1u;
  let rotate = select(ROTATE_K, ROTATE_V, is_v) == 1u;
  let row_in_wg = lid / ROW_WORDS;
  let lane = lid % ROW_WORDS;
  let row = (wid.x + wid.z * nwg.x) * ROT_VECTORS + row_in_wg;  // = token * NUM_KV_HEADS + kv head
  let valid = row < params.num_tokens * NUM_KV_HEADS;

  // 1. load
  var x: array<f32, 8>;
  for (var e = 0u; e < 8u; e++) {
    let d = lane * 8u + e;
    var value = 0.0;
    if (valid) {
      value = select(new_k[row * HEAD_DIM + d], new_v[row * HEAD_DIM + d], is_v);
    }
    if (rotate) {
      value *= hadamard_sign(params.sign_bits, d);
    }
    x[e] = value;
    rot_buf[row_in_wg * HEAD_DIM + d] = value;
  }

  // 2. rotate
  if (rotate) {
    hadamard_rows_in_workgroup(lid);
    let norm = inverseSqrt(f32(HADAMARD_BLOCK));
    for (var e = 0u; e < 8u; e++) {
      x[e] = rot_buf[row_in_wg * HEAD_DIM + lane * 8u + e] * norm;
    }
  }

  // 3. min / max over the row
  var mn = x[0];
  var mx = x[0];
  for (var e = 1u; e < 8u; e++) {
    mn = min(mn, x[e]);
    mx = max(mx, x[e]);
  }
  lane_min[lid] = mn;
  lane_max[lid] = mx;
  workgroupBarrier();
  for (var j = 0u; j < ROW_WORDS; j++) {
    mn = min(mn, lane_min[row_in_wg * ROW_WORDS + j]);
    mx = max(mx, lane_max[row_in_wg * ROW_WORDS + j]);
  }

  // 4. f16 scale / min, quantize
  let scale_bits = f16_bits((mx - mn) / INT4_MAX_CODE);
  let min_bits = f16_bits(mn);
  let scale16 = f16_value(scale_bits);
  let min16 = f16_value(min_bits);
  var word = 0u;
  for (var e = 0u; e < 8u; e++) {
    var code = 0u;
    if (scale16 != 0.0) {
      code = quant_code(x[e], min16, scale16, INT4_MAX_CODE) & 0xfu;  // lib/quant-code.wgsl
    }
    // 5. NIBBLE ORDER: element e in byte e % 4, high nibble for e >= 4
    word |= code << (8u * (e % 4u) + select(0u, 4u, e >= 4u));
  }

  if (!valid) {
    return;
  }
  let token = row / NUM_KV_HEADS;
  let kv_head = row % NUM_KV_HEADS;
  let slot = slots[token];
  let page = slot / PAGE_SIZE;
  let offset = slot % PAGE_SIZE;
  let word_index = page * PAGE_WORDS + (kv_head * PAGE_SIZE + offset) * ROW_WORDS + lane;
  let scale_min_index = page * PAGE_WORDS + SCALE_MIN_REGION_OFFSET + kv_head * PAGE_SIZE + offset;
  let scale_min = scale_bits | (min_bits << 16u);
  store_cache_word(is_v, word_index, word);
  if (lane == 0u) {
    store_cache_word(is_v, scale_min_index, scale_min);
  }
}
