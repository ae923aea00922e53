/**
 * A reusable attention workspace: the buffers, bind groups and readback of decode attention over one
 * PagedKvCache, kept between calls so that a decode loop allocates nothing per step. Buffers grow
 * (geometrically, within the device's binding limit) only when a call needs more than they hold;
 * bind groups are cached per pipeline variant until a buffer is replaced. One call at a time: a
 * workspace's buffers serve the call in flight (use several workspaces for overlapping calls).
 *
 *   const ws = cache.createAttentionWorkspace();
 *   for (;;) { …append…; const out = await ws.attention(seqIds, q); }
 *   ws.destroy();
 */
import { withGpuErrors, type GpuContext } from '../gpu/gpu-context';
import { checkBufferFits, writeFloats, writeWords } from '../kernels/gpu-buffers';
import { poolExtras } from '../kernels/cache-pool';
import type { BoundCacheWrite } from '../kernels/cache-write';
import { bindDecode, decodeParams, encodeDecode, mergeParams, mergeVariant, type BoundDecode, type DecodeShape } from '../kernels/paged-decode';
import type { AttentionCall, AttentionOptions, PagedKvCache, PreparedAttention, PreparedDecodeStep } from './paged-kv-cache';

/** Growth factor of a buffer that is too small (amortises batches that grow one sequence at a time). */
const GROWTH = 1.5;

type SlotName = 'q' | 'out' | 'blockTables' | 'contextLens' | 'partialAcc' | 'partialMl' | 'mergeWords' | 'mergeCounters' | 'decodeParams' | 'mergeParams' | 'newK' | 'newV' | 'appendSlots' | 'appendParams' | 'readback';

/** The buffers of a cache write bound in a workspace (PagedKvCache.prepareAppend with a workspace). */
export interface AppendBuffers {
  /** [N, Hkv, D] f32 new K rows */
  kInput: GPUBuffer;
  /** [N, Hkv, D] f32 new V rows */
  vInput: GPUBuffer;
  /** [N] u32 page · pageSize + offset */
  slots: GPUBuffer;
  /** WriteParams (48 bytes) */
  params: GPUBuffer;
}

/** What a slot is for; its GPUBufferUsage flags are read when a buffer is made (the globals exist only once a GPU is open). */
type SlotKind = 'storage' | 'uniform' | 'readback';

function usageOf(kind: SlotKind): number {
  if (kind === 'storage') return GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  if (kind === 'uniform') return GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
  return GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
}

export class AttentionWorkspace {
  private readonly buffers = new Map<SlotName, GPUBuffer>();
  private readonly bound = new Map<string, BoundDecode>();
  /** The cache write bound to the append buffers (the cache's write kernel never changes). */
  private boundWrite: BoundCacheWrite | null = null;
  private destroyed = false;
  /** GPU buffers this workspace has created so far (steady-state decode loops add none). */
  buffersCreated = 0;

  constructor(
    private readonly ctx: GpuContext,
    private readonly cache: PagedKvCache,
    private readonly planCall: (seqIds: number[], options: AttentionOptions, decodeStep: boolean) => AttentionCall,
  ) {}

  /**
   * Binds attention over `seqIds` into this workspace (block tables, lengths and parameters written
   * now): write queries into `queryBuffer`, encode, read. `destroy()` of the result is a no-op; the
   * workspace owns the buffers, and the next prepare() may reuse them.
   */
  async prepare(seqIds: number[], options: AttentionOptions = {}): Promise<PreparedAttention> {
    return this.bind(seqIds, options, false);
  }

  /**
   * Binds a fused decode step over `seqIds`, whose new tokens the cache has reserved (they are the last
   * token of each sequence): PagedKvCache.prepareDecodeStep calls this. Write the new K/V rows into
   * kInput / vInput and the queries into queryBuffer, encode, read.
   */
  async prepareFusedStep(seqIds: number[], options: AttentionOptions = {}): Promise<Omit<PreparedDecodeStep, 'fused' | 'unreserve'>> {
    const prepared = await this.bind(seqIds, { ...options, fuse: true }, true);
    return { ...prepared, kInput: this.buffers.get('newK')!, vInput: this.buffers.get('newV')! };
  }

  private async bind(seqIds: number[], options: AttentionOptions, decodeStep: boolean): Promise<PreparedAttention> {
    if (this.destroyed) throw new Error('this attention workspace was destroyed');
    const call = this.planCall(seqIds, options, decodeStep);
    const { plan, packed, shape, scale } = call;
    const c = this.cache.config;
    const qBytes = seqIds.length * c.numQueryHeads * c.headDim * 4;
    const newRowBytes = this.cache.appendInputBytes(seqIds.length);  // a fused step's new K (and V) rows
    const slot = this.ensure.bind(this);
    const buffers = {
      q: slot('q', qBytes, 'storage'),
      kCache: this.cache.kBuffer,
      vCache: this.cache.vBuffer,
      poolExtras: poolExtras(this.cache.kPool, this.cache.vPool),
      blockTables: slot('blockTables', packed.blockTables.byteLength, 'storage'),
      contextLens: slot('contextLens', packed.contextLens.byteLength, 'storage'),
      out: slot('out', qBytes, 'storage'),
      // bindings 6 and 7: the merge kernel's partials, or the in-dispatch merge's words and counters
      // (their own buffers: those hold MERGE_EMPTY and 0 between calls, which the partials would break)
      partialAcc: plan.mergeInDispatch ? slot('mergeWords', plan.partialAccBytes, 'storage') : slot('partialAcc', plan.partialAccBytes, 'storage'),
      partialMl: plan.mergeInDispatch ? slot('mergeCounters', plan.partialMlBytes, 'storage') : slot('partialMl', plan.partialMlBytes, 'storage'),
      decodeParams: slot('decodeParams', 48, 'uniform'),
      mergeParams: slot('mergeParams', 48, 'uniform'),
      // [S, Hkv, D] f32 new K/V rows of a fused step
      ...(plan.fusedStep ? { newK: slot('newK', newRowBytes, 'storage'), newV: slot('newV', newRowBytes, 'storage') } : {}),
    };
    writeWords(this.ctx.device, buffers.blockTables, packed.blockTables);
    writeWords(this.ctx.device, buffers.contextLens, packed.contextLens);
    this.ctx.device.queue.writeBuffer(buffers.decodeParams, 0, decodeParams(packed.maxPagesPerSeq, plan.splits, scale, this.cache.signBitWords));
    writeWords(this.ctx.device, buffers.mergeParams, mergeParams(plan.splits, this.cache.signBitWords));
    const fullShape: DecodeShape = { ...shape, kernel: plan.kernel, tuning: plan.tuning };
    const key = `${plan.variant.key}|${plan.merge ? mergeVariant(fullShape).key : ''}`;
    let bound = this.bound.get(key);
    if (bound === undefined) {
      bound = await bindDecode(this.ctx, plan, fullShape, buffers);
      this.bound.set(key, bound);
    }
    const binding = bound;
    return this.cache.describePrepared(call, {
      queryBuffer: buffers.q,
      outputBuffer: buffers.out,
      encode: (pass) => encodeDecode(pass, binding, plan, c.numQueryHeads),
      read: () => this.read(buffers.out, qBytes),
      destroy: () => {},
    });
  }

  /**
   * The append buffers for `numTokens` new rows (grown when too small) and the cache write bound to
   * them by `bind` (kept until a buffer is replaced): PagedKvCache.prepareAppend with a workspace
   * calls this, so that a decode loop's cache writes allocate nothing once warm. The K/V inputs are
   * the fused step's new-row buffers (newK, newV): a call either fuses its write or binds it here.
   */
  async bindAppend(numTokens: number, bind: (buffers: AppendBuffers) => Promise<BoundCacheWrite>): Promise<AppendBuffers & { write: BoundCacheWrite }> {
    if (this.destroyed) throw new Error('this attention workspace was destroyed');
    const rowBytes = this.cache.appendInputBytes(numTokens);
    const buffers: AppendBuffers = {
      kInput: this.ensure('newK', rowBytes, 'storage'),
      vInput: this.ensure('newV', rowBytes, 'storage'),
      slots: this.ensure('appendSlots', numTokens * 4, 'storage'),
      params: this.ensure('appendParams', 48, 'uniform'),
    };
    this.boundWrite ??= await bind(buffers);
    return { ...buffers, write: this.boundWrite };
  }

  /** Decode attention for one query token per sequence, like PagedKvCache.attention, with no allocation once warm. */
  async attention(seqIds: number[], q: Float32Array, options: AttentionOptions = {}): Promise<Float32Array> {
    const prepared = await this.prepare(seqIds, options);
    this.cache.checkQueries(seqIds, q);
    writeFloats(this.ctx.device, prepared.queryBuffer, q);
    await withGpuErrors(this.ctx.device, 'paged decode attention', () => this.cache.submit((pass) => prepared.encode(pass)));
    return prepared.read();
  }

  /** Frees every buffer; the workspace refuses work afterwards. */
  destroy(): void {
    this.destroyed = true;
    for (const b of this.buffers.values()) b.destroy();
    this.buffers.clear();
    this.bound.clear();
    this.boundWrite = null;
  }

  /** The buffer of `name`, replaced by a larger one (and every cached binding dropped) when too small. */
  private ensure(name: SlotName, bytes: number, kind: SlotKind): GPUBuffer {
    const need = Math.max(4, Math.ceil(bytes / 4) * 4);
    const have = this.buffers.get(name);
    if (have !== undefined && have.size >= need) return have;
    // Grown buffers stay within one binding; a need beyond it is refused by checkBufferFits.
    const cap = kind === 'storage' ? this.ctx.limits.maxStorageBufferBindingSize : need;
    const size = Math.max(need, Math.min(cap, Math.ceil(((have?.size ?? 0) * GROWTH) / 4) * 4));
    if (kind === 'storage') checkBufferFits(this.ctx, `attention workspace ${name}`, size);
    have?.destroy();
    // the in-dispatch merge's words start MERGE_EMPTY (lib/decode-epilogue.wgsl); everything else zeroed
    const empty = name === 'mergeWords';
    const buffer = this.ctx.device.createBuffer({ label: `attention workspace ${name}`, size, usage: usageOf(kind), mappedAtCreation: empty });
    if (empty) {
      new Uint32Array(buffer.getMappedRange()).fill(0xffffffff);
      buffer.unmap();
    }
    this.buffers.set(name, buffer);
    if (kind !== 'readback') {
      this.bound.clear();
      this.boundWrite = null;
    }
    this.buffersCreated++;
    return buffer;
  }

  private async read(source: GPUBuffer, bytes: number): Promise<Float32Array> {
    const staging = this.ensure('readback', bytes, 'readback');
    const encoder = this.ctx.device.createCommandEncoder();
    encoder.copyBufferToBuffer(source, 0, staging, 0, Math.ceil(bytes / 4) * 4);
    this.ctx.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ, 0, Math.ceil(bytes / 4) * 4);
    const out = new Float32Array(staging.getMappedRange(0, Math.ceil(bytes / 4) * 4).slice(0, bytes));
    staging.unmap();
    return out;
  }
}
