/** Host side of shaders/model-embed.wgsl: the token embedding gather (f16 rows → f32 residual stream). */
import type { GpuContext } from '../gpu/gpu-context';
import type { ShaderVariant } from '../kernels/pipeline-cache';
import embedWgsl from '../../shaders/model-embed.wgsl?raw';
import { ELEMENTWISE_WORKGROUP_SIZE, gridFor, modelWgsl, prepareKernel, type PreparedKernel } from './model-kernel';

export interface EmbedShape {
  vocabSize: number;
  dim: number;
  batch: number;
}

export function embedVariant(shape: EmbedShape): ShaderVariant {
  const constants = { DIM_WORDS: shape.dim / 2, VOCAB: shape.vocabSize, WORKGROUP_SIZE: ELEMENTWISE_WORKGROUP_SIZE };
  return { key: `model-embed/v${shape.vocabSize}/d${shape.dim}`, code: () => modelWgsl(constants, embedWgsl) };
}

export interface EmbedBuffers {
  /** [vocabSize, dim/2] u32 f16 pairs */
  embed: GPUBuffer;
  /** [batch] u32 token ids */
  ids: GPUBuffer;
  /** [batch, dim] f32 */
  x: GPUBuffer;
  params: GPUBuffer;
}

export async function prepareEmbed(ctx: GpuContext, shape: EmbedShape, buffers: EmbedBuffers): Promise<PreparedKernel> {
  const workgroups = gridFor(ctx, 'the embedding gather', Math.ceil((shape.batch * shape.dim) / 2 / ELEMENTWISE_WORKGROUP_SIZE));
  return prepareKernel(ctx, embedVariant(shape), [buffers.embed, buffers.ids, buffers.x, buffers.params], [workgroups, 1, 1]);
}
