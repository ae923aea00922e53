// RMSNorm of each row, f32: y[b, i] = w[i] · (x[b, i] / sqrt(mean_i(x[b, i]²) + EPS)), as the model's
// RMSNorm (model/llama.py: x · rsqrt(mean(x²) + eps), then × weight). The weight w is f16, two per u32.
// One workgroup per row: each invocation sums the squares of a strided part of the row, a tree in
// workgroup memory adds them (log2(WORKGROUP_SIZE) barriers), then each scales its part.
//
// Constants from src/model/model-rmsnorm.ts: DIM (even), WORKGROUP_SIZE (a power of two), EPS (f32).

@group(0) @binding(0) var<storage, read> weight: array<u32>;     // [DIM/2] f16 pairs
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [batch, DIM]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;    // [batch, DIM]
@group(0) @binding(3) var<uniform> step_params: StepParams;

var<workgroup> sums: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.x;  // one workgroup per row
  if (b >= step_params.batch) {
    return;
  }
  let base = b * DIM;
  var ss = 0.0;
  for (var i = lid; i < DIM; i += WORKGROUP_SIZE) {
    let v = x[base + i];
    ss = fma(v, v, ss);
  }
  sums[lid] = ss;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      sums[lid] += sums[lid + stride];
    }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(sums[0] / f32(DIM) + EPS);
  for (var i = lid; i < DIM; i += WORKGROUP_SIZE) {
    let w = unpack2x16float(weight[i / 2u]);
    let wi = select(w.x, w.y, (i & 1u) == 1u);
    y[base + i] = wi * (x[base + i] * inv);
  }
}
