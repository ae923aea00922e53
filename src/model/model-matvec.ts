/**
 * Host side of shaders/model-matvec.wgsl: y = x Wᵀ (or y += x Wᵀ) for a batch of rows over f16
 * weights packed in u32, f32 arithmetic. Every linear layer of the model runs through it: the fused
 * QKV and gate/up projections, o_proj and down_proj (accumulating into the residual stream) and the
 * tied LM head.
 */
import type { GpuContext } from '../gpu/gpu-context';
import { unrollLoops } from '../kernels/wgsl-unroll';
import type { ShaderVariant } from '../kernels/pipeline-cache';
import matvecWgsl from '../../shaders/model-matvec.wgsl?raw';
import { gridFor, modelWgsl, prepareKernel, type PreparedKernel } from './model-kernel';

/** Invocations (output rows) per workgroup. */
export const MATVEC_WORKGROUP_SIZE = 64;
/** Largest batch tile: rows of the batch that share one read of each weight word. */
export const MAX_MATVEC_BATCH_TILE = 4;
/** Input widths must be a multiple of this: rows are read as vec4<u32>, 8 halves per load. */
export const MATVEC_IN_MULTIPLE = 8;

export interface MatvecShape {
  /** Input width (a multiple of MATVEC_IN_MULTIPLE). */
  inDim: number;
  /** Output rows of W. */
  outDim: number;
  /** Rows of the batch (sequences per step). */
  batch: number;
  /** y += x Wᵀ instead of y = x Wᵀ. */
  accumulate: boolean;
}

/** The batch tile of a batch: the batch itself up to MAX_MATVEC_BATCH_TILE (a tile of 1 does no wasted work at batch 1). */
export function matvecBatchTile(batch: number): number {
  return Math.min(batch, MAX_MATVEC_BATCH_TILE);
}

export function matvecVariant(shape: MatvecShape): ShaderVariant {
  const constants = {
    IN_VEC4: shape.inDim / MATVEC_IN_MULTIPLE,
    OUT: shape.outDim,
    BATCH_TILE: matvecBatchTile(shape.batch),
    ACCUMULATE: shape.accumulate ? 1 : 0,
    WORKGROUP_SIZE: MATVEC_WORKGROUP_SIZE,
  };
  return {
    key: `model-matvec/in${shape.inDim}/out${shape.outDim}/t${constants.BATCH_TILE}/a${constants.ACCUMULATE}`,
    code: () => modelWgsl(constants, unrollLoops(matvecWgsl, constants)),
  };
}

export interface MatvecBuffers {
  /** [outDim, inDim/2] u32 f16 pairs (read as vec4<u32>) */
  weight: GPUBuffer;
  /** [batch, inDim] f32 */
  x: GPUBuffer;
  /** [batch, outDim] f32 */
  y: GPUBuffer;
  /** StepParams */
  params: GPUBuffer;
}

export async function prepareMatvec(ctx: GpuContext, shape: MatvecShape, buffers: MatvecBuffers): Promise<PreparedKernel> {
  if (shape.inDim % MATVEC_IN_MULTIPLE !== 0) throw new Error(`matvec: input width ${shape.inDim} must be a multiple of ${MATVEC_IN_MULTIPLE}`);
  const x = gridFor(ctx, `a matvec of ${shape.outDim} rows`, Math.ceil(shape.outDim / MATVEC_WORKGROUP_SIZE));
  const y = gridFor(ctx, `a matvec over a batch of ${shape.batch}`, Math.ceil(shape.batch / matvecBatchTile(shape.batch)));
  return prepareKernel(ctx, matvecVariant(shape), [buffers.weight, buffers.x, buffers.y, buffers.params], [x, y, 1]);
}
