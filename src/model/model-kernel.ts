/**
 * What the model kernels (shaders/model-*.wgsl, one host module each: model-matvec.ts,
 * model-rmsnorm.ts, model-embed.ts, model-rope.ts, model-swiglu.ts, model-logits.ts) share: the
 * per-step uniform (shaders/lib/model-step.wgsl), WGSL assembly with the generated constants, grids
 * checked against the device's limits, and binding a pipeline to its buffers.
 */
import stepParamsWgsl from '../../shaders/lib/model-step.wgsl?raw';
import { GpuError, type GpuContext } from '../gpu/gpu-context';
import { bindBuffers } from '../kernels/gpu-buffers';
import { assembleWgsl } from '../kernels/kernel-source';
import { getPipeline, type ShaderVariant } from '../kernels/pipeline-cache';

/** Bytes of StepParams (batch, position, step, pad: four u32). */
export const STEP_PARAMS_BYTES = 16;

/** The StepParams words of one step. */
export function stepParams(batch: number, position: number, step: number): Uint32Array<ArrayBuffer> {
  return Uint32Array.of(batch, position, step, 0);
}

/** Invocations per workgroup of the one-invocation-per-element kernels (embed, rope, swiglu). */
export const ELEMENTWISE_WORKGROUP_SIZE = 64;
/** Invocations per workgroup of the one-workgroup-per-row kernels (rmsnorm, logits); a power of two. */
export const ROW_WORKGROUP_SIZE = 64;

/** `const NAME: f32 = bitcast<f32>(0x…u);`: the exact f32 nearest to `value` (as PyTorch rounds a Python float). */
export function wgslF32Constant(name: string, value: number): string {
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0];
  return `const ${name}: f32 = bitcast<f32>(0x${bits.toString(16).padStart(8, '0')}u);`;
}

/** A model kernel's WGSL: u32 constants, StepParams, extra declarations, then the kernel. */
export function modelWgsl(constants: Record<string, number>, kernel: string, declarations: string[] = []): string {
  return assembleWgsl({ constants, sources: [...declarations, stepParamsWgsl, kernel] });
}

/** `workgroups` along one grid dimension, refused (before any work) beyond the device's per-dimension limit. */
export function gridFor(ctx: GpuContext, what: string, workgroups: number): number {
  const limit = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (workgroups > limit) {
    throw new GpuError(`${what} needs ${workgroups} workgroups along x, more than this device's maxComputeWorkgroupsPerDimension of ${limit}; use a smaller batch`, 'validation', true);
  }
  return Math.max(1, workgroups);
}

/** A bound model kernel: `encode` records its dispatch into a compute pass. */
export interface PreparedKernel {
  encode(pass: GPUComputePassEncoder): void;
}

/** Compiles (or takes from the cache) `variant`, binds `buffers` to bindings 0, 1, …, and dispatches `grid`. */
export async function prepareKernel(ctx: GpuContext, variant: ShaderVariant, buffers: GPUBuffer[], grid: [number, number, number]): Promise<PreparedKernel> {
  const pipeline = await getPipeline(ctx.device, variant);
  const bindGroup = bindBuffers(ctx.device, pipeline, buffers, variant.key);
  return {
    encode(pass) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...grid);
    },
  };
}
