// Matrix × batch of vectors over f16 weights packed in u32, f32 arithmetic:
//   y[b, o] = Σ_i x[b, i] · W[o, i]            (ACCUMULATE = 0)
//   y[b, o] = y[b, o] + Σ_i x[b, i] · W[o, i]  (ACCUMULATE = 1: the residual add after o_proj, down_proj)
// W is [OUT, IN] as PyTorch stores a Linear (y = x Wᵀ); word w of a row holds elements 2w (low half)
// and 2w + 1 (high half), unpacked with unpack2x16float (exact), so no `shader-f16` is needed.
//
// One invocation per (output row o, tile of BATCH_TILE batch rows): it walks its weight row in
// vec4<u32> loads (8 halves, 16 bytes) and keeps one f32 sum per batch row of the tile, so each weight
// word is read once per tile (workgroup_id.y selects the tile). No workgroup memory and no barriers:
// measured on SwiftShader (2 cores, 4096 × 384), this took 4.2 ms where 32 lanes per row with a tree in
// workgroup memory took 144 ms and 4 lanes 28 ms; on a GPU the model is bound by dispatches, not by
// these reads.
//
// Constants from src/model/model-matvec.ts: IN_VEC4 (= IN/8), OUT, BATCH_TILE, ACCUMULATE,
// WORKGROUP_SIZE.

@group(0) @binding(0) var<storage, read> weight: array<vec4<u32>>;   // [OUT, IN_VEC4]: 8 f16 per vec4
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;        // [batch, 2·IN_VEC4] (IN f32 per row)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;        // [batch, OUT]
@group(0) @binding(3) var<uniform> step_params: StepParams;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let o = gid.x;
  let batch = step_params.batch;
  if (o >= OUT) {
    return;
  }
  let b0 = wid.y * BATCH_TILE;
  var acc: array<f32, BATCH_TILE>;
  for (var t = 0u; t < BATCH_TILE; t++) {  // unroll
    acc[t] = 0.0;
  }
  for (var w = 0u; w < IN_VEC4; w++) {
    let packed = weight[o * IN_VEC4 + w];
    let w0 = vec4<f32>(unpack2x16float(packed.x), unpack2x16float(packed.y));
    let w1 = vec4<f32>(unpack2x16float(packed.z), unpack2x16float(packed.w));
    for (var t = 0u; t < BATCH_TILE; t++) {  // unroll
      let b = min(b0 + t, batch - 1u);  // rows past the batch repeat the last one and are not stored
      acc[t] += dot(w0, x[(b * IN_VEC4 + w) * 2u]) + dot(w1, x[(b * IN_VEC4 + w) * 2u + 1u]);
    }
  }
  for (var t = 0u; t < BATCH_TILE; t++) {  // unroll
    let b = b0 + t;
    if (b < batch) {
      if (ACCUMULATE == 1u) {
        y[b * OUT + o] += acc[t];
      } else {
        y[b * OUT + o] = acc[t];
      }
    }
  }
}
