// Reads each row of LM-head logits once per pass and writes, at row `step` of the run's histories:
//   nll[step, b]    = logsumexp(logits[b, :]) − logits[b, target[b]]   (the cross-entropy of the target)
//   argmax[step, b] = the index of the largest logit (the lowest such index on ties: greedy decoding)
// in f32: max and argmax first, then Σ exp(l − max). One workgroup per row, trees in workgroup memory.
//
// Constants from src/model/model-logits.ts: VOCAB, WORKGROUP_SIZE (a power of two).

@group(0) @binding(0) var<storage, read> logits: array<f32>;         // [batch, VOCAB]
@group(0) @binding(1) var<storage, read> targets: array<u32>;        // [batch] (teacher forcing; ignored values are any id < VOCAB)
@group(0) @binding(2) var<storage, read_write> nll: array<f32>;      // [steps, batch]
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;   // [steps, batch]
@group(0) @binding(4) var<uniform> step_params: StepParams;

var<workgroup> best_value: array<f32, WORKGROUP_SIZE>;
var<workgroup> best_index: array<u32, WORKGROUP_SIZE>;
var<workgroup> sums: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.x;
  let base = b * VOCAB;
  var m = logits[base];
  var mi = 0u;
  for (var i = lid; i < VOCAB; i += WORKGROUP_SIZE) {
    let v = logits[base + i];
    if (v > m) {  // strided ascending scan: the first maximum of this lane's indices
      m = v;
      mi = i;
    }
  }
  best_value[lid] = m;
  best_index[lid] = mi;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      let ov = best_value[lid + stride];
      let oi = best_index[lid + stride];
      if (ov > best_value[lid] || (ov == best_value[lid] && oi < best_index[lid])) {
        best_value[lid] = ov;
        best_index[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  let top = best_value[0];
  var s = 0.0;
  for (var i = lid; i < VOCAB; i += WORKGROUP_SIZE) {
    s += exp(logits[base + i] - top);
  }
  sums[lid] = s;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      sums[lid] += sums[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let row = step_params.step * step_params.batch + b;
    let tgt = min(targets[b], VOCAB - 1u);
    nll[row] = log(sums[0]) + top - logits[base + tgt];
    argmax[row] = best_index[0];
  }
}
