// Splits the fused QKV projection into q, k and v heads and applies RoPE to q and k, rotate-half
// convention (transformers' Llama; model/llama.py): channels j and j + HALF (j < HALF = HEAD_DIM/2)
// of a head form a pair rotated by the angle p · θ^(−2j/HEAD_DIM) at position p:
//   y[j]        = x[j] · cos − x[j + HALF] · sin
//   y[j + HALF] = x[j + HALF] · cos + x[j] · sin
// cos/sin come from tables computed in float64 on the host and rounded to f32, as PyTorch's model
// does. v heads are copied unrotated. One invocation per (row, head, pair).
//
// Constants from src/model/model-rope.ts: HEAD_DIM, HALF, NUM_HEADS (query), NUM_KV_HEADS,
// CONTEXT (table rows), WORKGROUP_SIZE.

@group(0) @binding(0) var<storage, read> qkv: array<f32>;             // [batch, (NUM_HEADS + 2·NUM_KV_HEADS)·HEAD_DIM]: q heads, k heads, v heads
@group(0) @binding(1) var<storage, read> cos_table: array<f32>;       // [CONTEXT, HALF]
@group(0) @binding(2) var<storage, read> sin_table: array<f32>;       // [CONTEXT, HALF]
@group(0) @binding(3) var<storage, read_write> q_out: array<f32>;     // [batch, NUM_HEADS, HEAD_DIM]
@group(0) @binding(4) var<storage, read_write> k_out: array<f32>;     // [batch, NUM_KV_HEADS, HEAD_DIM]
@group(0) @binding(5) var<storage, read_write> v_out: array<f32>;     // [batch, NUM_KV_HEADS, HEAD_DIM]
@group(0) @binding(6) var<uniform> step_params: StepParams;

const HEADS: u32 = NUM_HEADS + 2u * NUM_KV_HEADS;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let index = gid.x;  // over [batch, HEADS, HALF]
  if (index >= step_params.batch * HEADS * HALF) {
    return;
  }
  let j = index % HALF;
  let head = (index / HALF) % HEADS;
  let b = index / (HALF * HEADS);
  let src = (b * HEADS + head) * HEAD_DIM + j;
  let x0 = qkv[src];
  let x1 = qkv[src + HALF];
  if (head >= NUM_HEADS + NUM_KV_HEADS) {
    let dst = (b * NUM_KV_HEADS + head - NUM_HEADS - NUM_KV_HEADS) * HEAD_DIM + j;
    v_out[dst] = x0;
    v_out[dst + HALF] = x1;
    return;
  }
  let t = min(step_params.position, CONTEXT - 1u) * HALF + j;
  let c = cos_table[t];
  let s = sin_table[t];
  let y0 = x0 * c - x1 * s;
  let y1 = x1 * c + x0 * s;
  if (head < NUM_HEADS) {
    let dst = (b * NUM_HEADS + head) * HEAD_DIM + j;
    q_out[dst] = y0;
    q_out[dst + HALF] = y1;
  } else {
    let dst = (b * NUM_KV_HEADS + head - NUM_HEADS) * HEAD_DIM + j;
    k_out[dst] = y0;
    k_out[dst + HALF] = y1;
  }
}
