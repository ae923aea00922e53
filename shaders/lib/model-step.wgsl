// The per-step uniform of the model kernels (src/model/model-kernel.ts writes it before each step):
// every kernel of one decode step of the forward pass reads the same 16 bytes.
struct StepParams {
  batch: u32,     // rows this step: one token of each of `batch` sequences
  position: u32,  // the token position of every row (the batch advances in lockstep; RoPE angle)
  step: u32,      // the step's index in the run: the row of the nll/argmax histories it writes
  _pad: u32,
}
