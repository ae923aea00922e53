/**
 * One plan per decode call (FlashInfer's plan/run split): which kernel, which matrix step and
 * configuration, the resolved tuning (heads per workgroup, tokens per step), the split-K partition,
 * whether the merge kernel runs, the grid, the pipeline variant, its workgroup memory and the sizes of
 * the split-K buffers, decided once by planDecode() from the shape and the call's options. The cache
 * binds buffers of those sizes and runs it (prepareDecode in paged-decode.ts); reports print it.
 */
import type { MatrixConfig, MatrixStep } from './paged-decode-matrix';
import { describeMatrixConfig } from '../gpu/gpu-context';
import { decodeKernel, decodeKernelKind, needsMerge, tuningForGrid, type DecodeShape } from './paged-decode';
import { chooseSplits, fuseDecodeStep, mergeInDispatch, splitMergeBlock, type DecodeKernelKind, type DecodeTuning, type SplitPlan } from './decode-tuning';
import type { ShaderVariant } from './pipeline-cache';

export interface DecodePlanOptions {
  /** Force the decode kernel (default: decodeKernelKind's automatic choice). */
  kernel?: DecodeKernelKind;
  /** Tuning overrides (default: the kernel's DEFAULT_*_DECODE_TUNING). */
  tuning?: Partial<DecodeTuning>;
  /** Force a split-K count (default: chooseSplits from the grid). */
  numSplits?: number;
  /**
   * Plan a whole decode step (one new token per sequence, appended, then attention over it): fused into
   * the decode dispatch where fuseDecodeStep says so, unless `fuse` forces the choice.
   */
  decodeStep?: boolean;
  /** With decodeStep: true fuses (an error where the shape cannot), false keeps the cache write separate. */
  fuse?: boolean;
  /** Split-K partials merged in the decode dispatch (true; an error where the kernel cannot) or by the merge kernel (false); default: mergeInDispatch's rule. */
  mergeInDispatch?: boolean;
}

export interface DecodePlan {
  kernel: DecodeKernelKind;
  /** The matrix kernel's step and configuration (null for the other kernels). */
  matrix: { step: MatrixStep; config: MatrixConfig } | null;
  /** The tuning the kernel runs with: defaults under the overrides, heads and tokens per step resolved. */
  tuning: DecodeTuning;
  /** Query heads per workgroup (the GQA group, or a divisor of it on small grids). */
  headsPerWorkgroup: number;
  splits: SplitPlan;
  /** The split-K merge kernel runs after the decode kernel. */
  merge: boolean;
  /** Split-K partials are merged inside the decode dispatch (no merge kernel; bindings 6/7 are the merge's words and counters). */
  mergeInDispatch: boolean;
  /** A decode step whose cache write is fused into the decode kernel (no separate append dispatch). */
  fusedStep: boolean;
  /** dispatchWorkgroups(x, y, z) of the decode kernel: splits, kv heads × head groups, sequences. */
  grid: [number, number, number];
  variant: ShaderVariant;
  /** Workgroup memory of the variant, in bytes (checked against the device before anything is bound). */
  workgroupBytes: number;
  /**
   * Bytes of the buffers at bindings 6 and 7: the merge kernel's partials ([S, Hq, splits, D] f32 and
   * [S, Hq, splits] vec2<f32>), or the in-dispatch merge's words ([S, Hq, splits, D + 2] u32, MERGE_EMPTY
   * between calls) and counters ([S, Hq / heads per workgroup] u32, 0 between calls); 4 and 8 without a merge.
   */
  partialAccBytes: number;
  partialMlBytes: number;
}

/**
 * Plans one decode call over `numSeqs` sequences whose longest context is `maxContext` tokens.
 * `shape` carries the cache layout, heads, rotation and what the device offers; its `kernel` and
 * `tuning` are taken from `options`. Throws (with what would work) on a kernel or tuning the shape
 * cannot run.
 */
export function planDecode(shape: Omit<DecodeShape, 'kernel' | 'tuning'>, numSeqs: number, maxContext: number, options: DecodePlanOptions = {}): DecodePlan {
  const kind = decodeKernelKind({ ...shape, kernel: options.kernel });
  const { tuning, workgroupsBeforeSplit } = tuningForGrid({ ...shape, kernel: kind }, numSeqs, options.tuning);
  const splits = chooseSplits(workgroupsBeforeSplit, maxContext, options.numSplits, tuning);
  const inDispatch = mergeInDispatch(kind, splits.numSplits, numSeqs * shape.layout.numKvHeads, options.mergeInDispatch);
  const merge = needsMerge(splits, shape, kind) && !inDispatch;
  if (options.fuse !== undefined && !options.decodeStep) throw new Error('fuse applies to a decode step (decodeStep: true)');
  const fusedStep = Boolean(options.decodeStep) && fusesStep(shape, kind, numSeqs, options.fuse);
  const kernel = decodeKernel({ ...shape, kernel: kind, tuning, fusedStep, mergeInDispatch: inDispatch, mergeBlock: splitMergeBlock(splits.numSplits) });
  const partialFloats = numSeqs * shape.numQueryHeads * splits.numSplits;
  const headDim = shape.layout.headDim;
  return {
    kernel: kind,
    matrix: kernel.matrix ?? null,
    tuning,
    headsPerWorkgroup: tuning.maxHeadsPerWorkgroup,
    splits,
    merge,
    mergeInDispatch: inDispatch,
    fusedStep,
    grid: [splits.numSplits, shape.layout.numKvHeads * kernel.headGroups, numSeqs],
    variant: kernel.variant,
    workgroupBytes: kernel.workgroupBytes,
    partialAccBytes: inDispatch ? partialFloats * (headDim + 2) * 4 : merge ? partialFloats * headDim * 4 : 4,
    partialMlBytes: inDispatch ? ((numSeqs * shape.numQueryHeads) / tuning.maxHeadsPerWorkgroup) * 4 : merge ? partialFloats * 8 : 8,
  };
}

/**
 * Whether a decode step over `numSeqs` sequences on `kind` fuses its cache write: `fuse` when given (true
 * throws with the reason where the kernel cannot), else fuseDecodeStep's rule. planDecode and
 * PagedKvCache.fusesDecodeStep both decide through this.
 */
export function fusesStep(shape: Omit<DecodeShape, 'kernel' | 'tuning'>, kind: DecodeKernelKind, numSeqs: number, fuse?: boolean): boolean {
  const fused = fuse ?? fuseDecodeStep(kind, shape, numSeqs);
  if (fused) decodeKernelKind({ ...shape, kernel: kind, fusedStep: true }); // throws with the reason when it cannot fuse
  return fused;
}

/** One line for logs and reports: "matrix (hardware f16→f32 16×8×16), 4 heads/wg, 2 splits + merge". */
export function describePlan(plan: DecodePlan): string {
  const matrix = plan.matrix ? ` (${plan.matrix.step} ${describeMatrixConfig(plan.matrix.config)})` : '';
  const splits = `${plan.splits.numSplits} split${plan.splits.numSplits === 1 ? '' : 's'} of ≤ ${plan.splits.tokensPerSplit} tokens`;
  return `${plan.kernel}${matrix}${plan.fusedStep ? ' with the cache write fused' : ''}, ${plan.headsPerWorkgroup} heads/wg, ${splits}${plan.merge ? ' + merge' : ''}${plan.mergeInDispatch ? ', merged in the dispatch' : ''}`;
}

