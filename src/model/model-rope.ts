/**
 * Host side of shaders/model-rope.wgsl (split the fused QKV projection into heads, RoPE on q and k)
 * and the RoPE tables it reads.
 */
import type { GpuContext } from '../gpu/gpu-context';
import type { ShaderVariant } from '../kernels/pipeline-cache';
import ropeWgsl from '../../shaders/model-rope.wgsl?raw';
import type { ModelConfig } from './model-config';
import { ELEMENTWISE_WORKGROUP_SIZE, gridFor, modelWgsl, prepareKernel, type PreparedKernel } from './model-kernel';

/**
 * cos and sin of the rotate-half RoPE angles, [contextLength, headDim/2] each: angle(p, j) =
 * p · θ^(−2j/headDim), computed in float64 and rounded to f32 (model/llama.py rope_tables).
 */
export function ropeTables(c: Pick<ModelConfig, 'contextLength' | 'headDim' | 'ropeTheta'>): { cos: Float32Array; sin: Float32Array } {
  const half = c.headDim / 2;
  const cos = new Float32Array(c.contextLength * half);
  const sin = new Float32Array(c.contextLength * half);
  for (let j = 0; j < half; j++) {
    const inv = 1 / c.ropeTheta ** ((2 * j) / c.headDim);
    for (let p = 0; p < c.contextLength; p++) {
      cos[p * half + j] = Math.cos(p * inv);
      sin[p * half + j] = Math.sin(p * inv);
    }
  }
  return { cos, sin };
}

export interface RopeShape {
  headDim: number;
  numHeads: number;
  numKvHeads: number;
  contextLength: number;
  batch: number;
}

export function ropeVariant(shape: RopeShape): ShaderVariant {
  const constants = {
    HEAD_DIM: shape.headDim,
    HALF: shape.headDim / 2,
    NUM_HEADS: shape.numHeads,
    NUM_KV_HEADS: shape.numKvHeads,
    CONTEXT: shape.contextLength,
    WORKGROUP_SIZE: ELEMENTWISE_WORKGROUP_SIZE,
  };
  return { key: `model-rope/d${shape.headDim}/h${shape.numHeads}/kv${shape.numKvHeads}/c${shape.contextLength}`, code: () => modelWgsl(constants, ropeWgsl) };
}

export interface RopeBuffers {
  /** [batch, (numHeads + 2·numKvHeads)·headDim] f32 */
  qkv: GPUBuffer;
  /** [contextLength, headDim/2] f32 */
  cos: GPUBuffer;
  sin: GPUBuffer;
  /** [batch, numHeads, headDim] f32 */
  q: GPUBuffer;
  /** [batch, numKvHeads, headDim] f32 */
  k: GPUBuffer;
  v: GPUBuffer;
  params: GPUBuffer;
}

export async function prepareRope(ctx: GpuContext, shape: RopeShape, buffers: RopeBuffers): Promise<PreparedKernel> {
  const pairs = shape.batch * (shape.numHeads + 2 * shape.numKvHeads) * (shape.headDim / 2);
  const workgroups = gridFor(ctx, 'RoPE', Math.ceil(pairs / ELEMENTWISE_WORKGROUP_SIZE));
  return prepareKernel(ctx, ropeVariant(shape), [buffers.qkv, buffers.cos, buffers.sin, buffers.q, buffers.k, buffers.v, buffers.params], [workgroups, 1, 1]);
}
