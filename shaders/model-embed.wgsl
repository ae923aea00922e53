// Token embedding: x[b, :] = E[ids[b], :] in f32, from the f16 embedding matrix packed two per u32.
// One invocation per output word (two elements).
//
// Constants from src/model/model-embed.ts: DIM_WORDS (= d_model/2), VOCAB, WORKGROUP_SIZE.

@group(0) @binding(0) var<storage, read> embed: array<u32>;             // [VOCAB, DIM_WORDS] f16 pairs
@group(0) @binding(1) var<storage, read> ids: array<u32>;               // [batch] token id of each row
@group(0) @binding(2) var<storage, read_write> x: array<vec2<f32>>;     // [batch, DIM_WORDS] (the residual stream)
@group(0) @binding(3) var<uniform> step_params: StepParams;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let index = gid.x;  // over [batch, DIM_WORDS]
  if (index >= step_params.batch * DIM_WORDS) {
    return;
  }
  let b = index / DIM_WORDS;
  let w = index % DIM_WORDS;
  let id = min(ids[b], VOCAB - 1u);  // the host checks ids; the clamp only keeps reads in bounds
  x[index] = unpack2x16float(embed[id * DIM_WORDS + w]);
}
