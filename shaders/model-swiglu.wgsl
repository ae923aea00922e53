// SwiGLU gate of the MLP: h[b, i] = silu(g[b, i]) · u[b, i], silu(g) = g / (1 + exp(−g)), f32, where
// the fused gate/up projection wrote g = gu[b, 0..HIDDEN) and u = gu[b, HIDDEN..2·HIDDEN).
// One invocation per element.
//
// Constants from src/model/model-swiglu.ts: HIDDEN, WORKGROUP_SIZE.

@group(0) @binding(0) var<storage, read> gu: array<f32>;           // [batch, 2·HIDDEN]: gate, then up
@group(0) @binding(1) var<storage, read_write> h: array<f32>;      // [batch, HIDDEN]
@group(0) @binding(2) var<uniform> step_params: StepParams;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let index = gid.x;  // over [batch, HIDDEN]
  if (index >= step_params.batch * HIDDEN) {
    return;
  }
  let b = index / HIDDEN;
  let i = index % HIDDEN;
  let g = gu[b * 2u * HIDDEN + i];
  let u = gu[b * 2u * HIDDEN + HIDDEN + i];
  h[index] = g / (1.0 + exp(-g)) * u;
}
