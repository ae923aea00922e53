/**
 * Host side of shaders/model-logits.wgsl: per row of LM-head logits, the cross-entropy of the target
 * token (teacher-forced perplexity) and the argmax (greedy decoding), written into per-step histories
 * so a run reads them back once at the end.
 */
import type { GpuContext } from '../gpu/gpu-context';
import type { ShaderVariant } from '../kernels/pipeline-cache';
import logitsWgsl from '../../shaders/model-logits.wgsl?raw';
import { gridFor, modelWgsl, prepareKernel, ROW_WORKGROUP_SIZE, type PreparedKernel } from './model-kernel';

export interface LogitsShape {
  vocabSize: number;
  batch: number;
}

export function logitsVariant(shape: LogitsShape): ShaderVariant {
  return { key: `model-logits/v${shape.vocabSize}`, code: () => modelWgsl({ VOCAB: shape.vocabSize, WORKGROUP_SIZE: ROW_WORKGROUP_SIZE }, logitsWgsl) };
}

export interface LogitsBuffers {
  /** [batch, vocabSize] f32 */
  logits: GPUBuffer;
  /** [batch] u32 */
  targets: GPUBuffer;
  /** [steps, batch] f32 */
  nll: GPUBuffer;
  /** [steps, batch] u32 */
  argmax: GPUBuffer;
  params: GPUBuffer;
}

export async function prepareLogits(ctx: GpuContext, shape: LogitsShape, buffers: LogitsBuffers): Promise<PreparedKernel> {
  const rows = gridFor(ctx, `the logits of a batch of ${shape.batch}`, shape.batch);
  return prepareKernel(ctx, logitsVariant(shape), [buffers.logits, buffers.targets, buffers.nll, buffers.argmax, buffers.params], [rows, 1, 1]);
}
