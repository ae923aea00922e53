/** Host side of shaders/model-rmsnorm.wgsl: RMSNorm of each row with an f16 weight, f32 arithmetic. */
import type { GpuContext } from '../gpu/gpu-context';
import type { ShaderVariant } from '../kernels/pipeline-cache';
import rmsnormWgsl from '../../shaders/model-rmsnorm.wgsl?raw';
import { gridFor, modelWgsl, prepareKernel, ROW_WORKGROUP_SIZE, wgslF32Constant, type PreparedKernel } from './model-kernel';

export interface RmsnormShape {
  dim: number;
  eps: number;
  batch: number;
}

export function rmsnormVariant(shape: RmsnormShape): ShaderVariant {
  const eps = wgslF32Constant('EPS', shape.eps);
  return {
    key: `model-rmsnorm/d${shape.dim}/eps${shape.eps}`,
    code: () => modelWgsl({ DIM: shape.dim, WORKGROUP_SIZE: ROW_WORKGROUP_SIZE }, rmsnormWgsl, [eps]),
  };
}

export interface RmsnormBuffers {
  /** [dim/2] u32 f16 pairs */
  weight: GPUBuffer;
  /** [batch, dim] f32 */
  x: GPUBuffer;
  /** [batch, dim] f32 */
  y: GPUBuffer;
  params: GPUBuffer;
}

export async function prepareRmsnorm(ctx: GpuContext, shape: RmsnormShape, buffers: RmsnormBuffers): Promise<PreparedKernel> {
  const rows = gridFor(ctx, `RMSNorm over a batch of ${shape.batch}`, shape.batch);
  return prepareKernel(ctx, rmsnormVariant(shape), [buffers.weight, buffers.x, buffers.y, buffers.params], [rows, 1, 1]);
}
