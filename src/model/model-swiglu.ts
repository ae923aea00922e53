/** Host side of shaders/model-swiglu.wgsl: h = silu(gate) · up from the fused gate/up projection. */
import type { GpuContext } from '../gpu/gpu-context';
import type { ShaderVariant } from '../kernels/pipeline-cache';
import swigluWgsl from '../../shaders/model-swiglu.wgsl?raw';
import { ELEMENTWISE_WORKGROUP_SIZE, gridFor, modelWgsl, prepareKernel, type PreparedKernel } from './model-kernel';

export interface SwigluShape {
  hidden: number;
  batch: number;
}

export function swigluVariant(shape: SwigluShape): ShaderVariant {
  return { key: `model-swiglu/f${shape.hidden}`, code: () => modelWgsl({ HIDDEN: shape.hidden, WORKGROUP_SIZE: ELEMENTWISE_WORKGROUP_SIZE }, swigluWgsl) };
}

export interface SwigluBuffers {
  /** [batch, 2·hidden] f32: gate, then up */
  gateUp: GPUBuffer;
  /** [batch, hidden] f32 */
  h: GPUBuffer;
  params: GPUBuffer;
}

export async function prepareSwiglu(ctx: GpuContext, shape: SwigluShape, buffers: SwigluBuffers): Promise<PreparedKernel> {
  const workgroups = gridFor(ctx, 'SwiGLU', Math.ceil((shape.batch * shape.hidden) / ELEMENTWISE_WORKGROUP_SIZE));
  return prepareKernel(ctx, swigluVariant(shape), [buffers.gateUp, buffers.h, buffers.params], [workgroups, 1, 1]);
}
