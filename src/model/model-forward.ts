/**
 * The model's forward pass on the GPU, one token per sequence per step, through the project's own
 * paged KV cache: a ModelDecoder decodes a batch of sequences in lockstep under one KV method (one
 * PagedKvCache per layer). Each step records, in one command buffer:
 *
 *   x = embed[ids]                                               model-embed
 *   per layer:  n = rmsnorm(x) · input_layernorm                   model-rmsnorm
 *               q|k|v = n [Wq; Wk; Wv]ᵀ                            model-matvec (fused QKV)
 *               q, k = rope(q), rope(k) at the step's position     model-rope
 *               cache.append(k, v)    fused [rotate +] quantize + paged write (cache-write-*.wgsl)
 *               a = cache.attention(q)  paged decode over every token so far (paged-decode-*.wgsl)
 *               x += a Woᵀ                                         model-matvec (accumulate)
 *               m = rmsnorm(x) · post_attention_layernorm          model-rmsnorm
 *               g|u = m [Wg; Wu]ᵀ;  x += (silu(g) · u) Wdᵀ          model-matvec, model-swiglu
 *   logits = (rmsnorm(x) · norm) Eᵀ                               model-rmsnorm, model-matvec (tied head)
 *   nll[step] = lse(logits) − logits[target];  argmax[step]       model-logits
 *
 * K and V reach the cache through PagedKvCache.prepareAppend in the layer's AttentionWorkspace (its
 * input buffers are filled by GPU copies, so nothing returns to the CPU), q through the same
 * workspace: no buffer is allocated per step once warm. Steps are submitted without waiting (at most
 * MAX_STEPS_IN_FLIGHT queued); the per-step losses and argmaxes stay on the GPU until
 * readNll()/readArgmax(). A step with no host ids feeds the previous step's argmax back (greedy).
 *
 * @example teacher-forced loss of two sequences
 *   const dec = await ModelDecoder.create(model, { method: methodSpec('int4-hadamard'), batch: 2, maxSteps: 3 });
 *   for (let t = 0; t < 3; t++) await dec.step({ ids: [a[t], b[t]], targets: [a[t + 1], b[t + 1]] });
 *   const nll = await dec.readNll();   // [3, 2]
 *   dec.destroy();
 */
import { KvConfigError, PagedKvCache, type PreparedAppend, type PreparedAttention } from '../cache/paged-kv-cache';
import type { AttentionWorkspace } from '../cache/attention-workspace';
import { cacheConfigFor, methodFitsHeadDim, type MethodSpec } from '../accuracy/methods';
import { withGpuErrors } from '../gpu/gpu-context';
import { readBuffer, storageBuffer, uniformBufferFrom } from '../kernels/gpu-buffers';
import { DEFAULT_PAGE_SIZE } from '../layout';
import type { GpuModel } from './gpu-model';
import { prepareEmbed } from './model-embed';
import { stepParams, type PreparedKernel } from './model-kernel';
import { prepareLogits } from './model-logits';
import { prepareMatvec } from './model-matvec';
import { prepareRmsnorm } from './model-rmsnorm';
import { prepareRope } from './model-rope';
import { prepareSwiglu } from './model-swiglu';

/** Steps queued on the GPU before step() waits for the oldest (keeps the CPU ahead without an unbounded queue). */
export const MAX_STEPS_IN_FLIGHT = 2;

export interface DecoderOptions {
  /** The KV method of every layer's cache (an accuracy-lab method id's spec). */
  method: MethodSpec;
  /** Sequences decoded together. */
  batch: number;
  /** Steps this decoder will run (tokens per sequence), ≤ the model's context length. */
  maxSteps: number;
  /** Tokens per cache page (default DEFAULT_PAGE_SIZE). */
  pageSize?: number;
  /** Shuffle the physical page order (tests). */
  pageShuffleSeed?: number;
  /** Steps whose full logits [batch, vocab] are kept for readLogits() (tests; default none). */
  captureSteps?: readonly number[];
}

export interface StepInput {
  /** [batch] token ids of this step; omitted: the previous step's argmax (greedy decoding). */
  ids?: ArrayLike<number>;
  /** [batch] targets whose cross-entropy this step records (omitted: token 0; the nll is then meaningless). */
  targets?: ArrayLike<number>;
}

interface Activations {
  /** [batch] u32 */
  ids: GPUBuffer;
  /** [batch] u32 */
  targets: GPUBuffer;
  /** [batch, d_model] f32: the residual stream */
  x: GPUBuffer;
  /** [batch, d_model] f32: normed input of a projection */
  n: GPUBuffer;
  /** [batch, (Hq + 2·Hkv)·D] f32 */
  qkv: GPUBuffer;
  /** [batch, Hq, D] f32 */
  q: GPUBuffer;
  /** [batch, Hkv, D] f32 */
  k: GPUBuffer;
  v: GPUBuffer;
  /** [batch, Hq·D] f32: attention output */
  attn: GPUBuffer;
  /** [batch, 2·ffn] f32 */
  gateUp: GPUBuffer;
  /** [batch, ffn] f32 */
  h: GPUBuffer;
  /** [batch, vocab] f32 */
  logits: GPUBuffer;
  /** [maxSteps, batch] f32 */
  nll: GPUBuffer;
  /** [maxSteps, batch] u32 */
  argmax: GPUBuffer;
  /** [captures, batch, vocab] f32 */
  captured: GPUBuffer;
  /** StepParams */
  params: GPUBuffer;
}

interface LayerKernels {
  inputNorm: PreparedKernel;
  qkv: PreparedKernel;
  rope: PreparedKernel;
  o: PreparedKernel;
  postNorm: PreparedKernel;
  gateUp: PreparedKernel;
  swiglu: PreparedKernel;
  down: PreparedKernel;
}

export class ModelDecoder {
  /** Steps run so far (= the position of the next token). */
  stepsDone = 0;
  private readonly inFlight: Promise<void>[] = [];
  private destroyed = false;

  private constructor(
    readonly model: GpuModel,
    readonly options: Required<Omit<DecoderOptions, 'pageShuffleSeed'>> & { pageShuffleSeed?: number },
    /** One cache per layer, each holding the batch's sequences. */
    readonly caches: PagedKvCache[],
    private readonly workspaces: AttentionWorkspace[],
    /** seqIds[layer][row] */
    private readonly seqIds: number[][],
    private readonly act: Activations,
    private readonly embed: PreparedKernel,
    private readonly layers: LayerKernels[],
    private readonly finalNorm: PreparedKernel,
    private readonly lmHead: PreparedKernel,
    private readonly logits: PreparedKernel,
  ) {}

  get batch(): number {
    return this.options.batch;
  }

  /**
   * Creates the caches (one per layer, sized for `maxSteps` tokens per sequence), the activation
   * buffers and every kernel binding. Throws KvConfigError on a method or size the model cannot run.
   */
  static async create(model: GpuModel, options: DecoderOptions): Promise<ModelDecoder> {
    const c = model.config;
    const ctx = model.ctx;
    const { method, batch, maxSteps } = options;
    const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    const captureSteps = [...(options.captureSteps ?? [])];
    if (!Number.isInteger(batch) || batch < 1) throw new KvConfigError(`batch must be an integer ≥ 1, got ${batch}`);
    if (!Number.isInteger(maxSteps) || maxSteps < 1 || maxSteps > c.contextLength) {
      throw new KvConfigError(`a decoder runs 1 to ${c.contextLength} steps (the model's context length), got ${maxSteps}`);
    }
    if (!methodFitsHeadDim(method, c.headDim)) throw new KvConfigError(`method ${method.id}: Hadamard block ${method.hadamardBlock} does not divide head_dim ${c.headDim}`);
    captureSteps.forEach((s) => {
      if (!Number.isInteger(s) || s < 0 || s >= maxSteps) throw new KvConfigError(`capture step ${s} is outside the decoder's ${maxSteps} steps`);
    });
    const numPages = batch * Math.ceil(maxSteps / pageSize);
    const made: { destroy(): void }[] = [];
    try {
      const caches: PagedKvCache[] = [];
      for (let l = 0; l < c.nLayers; l++) {
        const cache = await PagedKvCache.create(ctx, cacheConfigFor(method, {
          headDim: c.headDim, numQueryHeads: c.nHeads, numKvHeads: c.nKvHeads, numPages, pageSize,
          ...(options.pageShuffleSeed === undefined ? {} : { pageShuffleSeed: options.pageShuffleSeed + l }),
        }));
        made.push(cache);
        caches.push(cache);
      }
      const seqIds = caches.map((cache) => Array.from({ length: batch }, () => cache.createSequence()));
      const workspaces = caches.map((cache) => cache.createAttentionWorkspace());
      made.push(...workspaces);
      const f32 = (label: string, floats: number) => {
        const b = storageBuffer(ctx, label, floats * 4);
        made.push(b);
        return b;
      };
      const qkvDim = (c.nHeads + 2 * c.nKvHeads) * c.headDim;
      const params = uniformBufferFrom(ctx, 'model step params', stepParams(batch, 0, 0));
      made.push(params);
      const act: Activations = {
        ids: f32('model ids', batch),
        targets: f32('model targets', batch),
        x: f32('model x', batch * c.dModel),
        n: f32('model normed', batch * c.dModel),
        qkv: f32('model qkv', batch * qkvDim),
        q: f32('model q', batch * c.nHeads * c.headDim),
        k: f32('model k', batch * c.nKvHeads * c.headDim),
        v: f32('model v', batch * c.nKvHeads * c.headDim),
        attn: f32('model attention out', batch * c.nHeads * c.headDim),
        gateUp: f32('model gate/up', batch * 2 * c.ffnHidden),
        h: f32('model swiglu', batch * c.ffnHidden),
        logits: f32('model logits', batch * c.vocabSize),
        nll: f32('model nll history', maxSteps * batch),
        argmax: f32('model argmax history', maxSteps * batch),
        captured: f32('model captured logits', Math.max(1, captureSteps.length) * batch * c.vocabSize),
        params,
      };
      const embed = await prepareEmbed(ctx, { vocabSize: c.vocabSize, dim: c.dModel, batch }, { embed: model.embed, ids: act.ids, x: act.x, params });
      const norm = (weight: GPUBuffer, x: GPUBuffer, y: GPUBuffer) => prepareRmsnorm(ctx, { dim: c.dModel, eps: c.normEps, batch }, { weight, x, y, params });
      const matvec = (weight: GPUBuffer, inDim: number, outDim: number, x: GPUBuffer, y: GPUBuffer, accumulate: boolean) =>
        prepareMatvec(ctx, { inDim, outDim, batch, accumulate }, { weight, x, y, params });
      const layers: LayerKernels[] = [];
      for (const w of model.layers) {
        layers.push({
          inputNorm: await norm(w.inputNorm, act.x, act.n),
          qkv: await matvec(w.qkv, c.dModel, qkvDim, act.n, act.qkv, false),
          rope: await prepareRope(ctx, { headDim: c.headDim, numHeads: c.nHeads, numKvHeads: c.nKvHeads, contextLength: c.contextLength, batch }, {
            qkv: act.qkv, cos: model.ropeCos, sin: model.ropeSin, q: act.q, k: act.k, v: act.v, params,
          }),
          o: await matvec(w.o, c.nHeads * c.headDim, c.dModel, act.attn, act.x, true),
          postNorm: await norm(w.postNorm, act.x, act.n),
          gateUp: await matvec(w.gateUp, c.dModel, 2 * c.ffnHidden, act.n, act.gateUp, false),
          swiglu: await prepareSwiglu(ctx, { hidden: c.ffnHidden, batch }, { gateUp: act.gateUp, h: act.h, params }),
          down: await matvec(w.down, c.ffnHidden, c.dModel, act.h, act.x, true),
        });
      }
      const finalNorm = await norm(model.finalNorm, act.x, act.n);
      const lmHead = await matvec(model.embed, c.dModel, c.vocabSize, act.n, act.logits, false);
      const logits = await prepareLogits(ctx, { vocabSize: c.vocabSize, batch }, { logits: act.logits, targets: act.targets, nll: act.nll, argmax: act.argmax, params });
      return new ModelDecoder(model, { method, batch, maxSteps, pageSize, captureSteps, pageShuffleSeed: options.pageShuffleSeed }, caches, workspaces, seqIds, act, embed, layers, finalNorm, lmHead, logits);
    } catch (e) {
      for (const m of made.reverse()) m.destroy();
      throw e;
    }
  }

  /**
   * Runs one step: one token per sequence through every layer (append + attention of each layer's
   * cache), the logits, and the target's cross-entropy and the argmax recorded at row `stepsDone`.
   */
  async step(input: StepInput = {}): Promise<void> {
    if (this.destroyed) throw new KvConfigError('this model decoder was destroyed');
    const { batch, maxSteps } = this.options;
    const c = this.model.config;
    const step = this.stepsDone;
    if (step >= maxSteps) throw new KvConfigError(`the decoder was made for ${maxSteps} steps`);
    const device = this.model.ctx.device;
    const words = (name: string, values: ArrayLike<number>): Uint32Array<ArrayBuffer> => {
      if (values.length !== batch) throw new KvConfigError(`step: ${name} has ${values.length} entries; the batch is ${batch}`);
      const out = new Uint32Array(batch);
      for (let i = 0; i < batch; i++) {
        const id = values[i];
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new KvConfigError(`step: ${name}[${i}] = ${id} is not a token id (0 ≤ id < ${c.vocabSize})`);
        out[i] = id;
      }
      return out;
    };
    if (input.ids === undefined && step === 0) throw new KvConfigError('step: the first step needs token ids (there is no previous argmax)');
    const ids = input.ids === undefined ? null : words('ids', input.ids);
    const targets = input.targets === undefined ? new Uint32Array(batch) : words('targets', input.targets);
    while (this.inFlight.length >= MAX_STEPS_IN_FLIGHT) await this.inFlight.shift();

    // Reserve each layer's slot for the new token, then bind its attention (which then covers it).
    const appends: PreparedAppend[] = [];
    try {
      const attentions: PreparedAttention[] = [];
      for (let l = 0; l < c.nLayers; l++) {
        const seqs = this.seqIds[l];
        appends.push(await this.caches[l].prepareAppend(seqs, seqs.map(() => 1), this.workspaces[l]));
        attentions.push(await this.workspaces[l].prepare(seqs));
      }
      await withGpuErrors(device, `model step ${step} (${this.options.method.id})`, () => {
        if (ids !== null) device.queue.writeBuffer(this.act.ids, 0, ids);
        device.queue.writeBuffer(this.act.targets, 0, targets);
        device.queue.writeBuffer(this.act.params, 0, stepParams(batch, step, step));
        const encoder = device.createCommandEncoder({ label: `model step ${step}` });
        const kvBytes = batch * c.nKvHeads * c.headDim * 4;
        const qBytes = batch * c.nHeads * c.headDim * 4;
        // greedy: this step's tokens are the previous step's argmax
        if (ids === null) encoder.copyBufferToBuffer(this.act.argmax, (step - 1) * batch * 4, this.act.ids, 0, batch * 4);
        let pass = encoder.beginComputePass();
        this.embed.encode(pass);
        for (let l = 0; l < c.nLayers; l++) {
          const k = this.layers[l];
          k.inputNorm.encode(pass);
          k.qkv.encode(pass);
          k.rope.encode(pass);
          pass.end();
          encoder.copyBufferToBuffer(this.act.k, 0, appends[l].kInput, 0, kvBytes);
          encoder.copyBufferToBuffer(this.act.v, 0, appends[l].vInput, 0, kvBytes);
          encoder.copyBufferToBuffer(this.act.q, 0, attentions[l].queryBuffer, 0, qBytes);
          pass = encoder.beginComputePass();
          appends[l].encode(pass);
          attentions[l].encode(pass);
          pass.end();
          encoder.copyBufferToBuffer(attentions[l].outputBuffer, 0, this.act.attn, 0, qBytes);
          pass = encoder.beginComputePass();
          k.o.encode(pass);
          k.postNorm.encode(pass);
          k.gateUp.encode(pass);
          k.swiglu.encode(pass);
          k.down.encode(pass);
        }
        this.finalNorm.encode(pass);
        this.lmHead.encode(pass);
        this.logits.encode(pass);
        pass.end();
        const capture = this.options.captureSteps.indexOf(step);
        if (capture >= 0) {
          const rowBytes = batch * c.vocabSize * 4;
          encoder.copyBufferToBuffer(this.act.logits, 0, this.act.captured, capture * rowBytes, rowBytes);
        }
        device.queue.submit([encoder.finish()]);
      });
    } catch (e) {
      for (const a of appends) a.unreserve();
      throw e;
    } finally {
      // the writes' buffers are the layers' workspaces' (reused by the next step, queue-ordered): nothing to free
      for (const a of appends) a.destroy();
    }
    this.stepsDone++;
    this.inFlight.push(device.queue.onSubmittedWorkDone());
  }

  /** Waits until every submitted step has run. */
  async finish(): Promise<void> {
    while (this.inFlight.length) await this.inFlight.shift();
  }

  /** [stepsDone, batch] f32: the cross-entropy of each step's target, in nats. */
  async readNll(): Promise<Float32Array> {
    await this.finish();
    return new Float32Array(await readBuffer(this.model.ctx, this.act.nll, Math.max(4, this.stepsDone * this.batch * 4))).subarray(0, this.stepsDone * this.batch);
  }

  /** [stepsDone, batch] u32: the argmax token of each step. */
  async readArgmax(): Promise<Uint32Array> {
    await this.finish();
    return new Uint32Array(await readBuffer(this.model.ctx, this.act.argmax, Math.max(4, this.stepsDone * this.batch * 4))).subarray(0, this.stepsDone * this.batch);
  }

  /** [captureSteps.length, batch, vocab] f32: the logits of each capture step (zeros for one not run yet). */
  async readLogits(): Promise<Float32Array> {
    await this.finish();
    const n = this.options.captureSteps.length * this.batch * this.model.config.vocabSize;
    return new Float32Array(await readBuffer(this.model.ctx, this.act.captured, Math.max(4, n * 4))).subarray(0, n);
  }

  /** Frees the caches and every buffer of this decoder (the model's weights stay). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const w of this.workspaces) w.destroy();
    for (const cache of this.caches) cache.destroy();
    for (const b of Object.values(this.act)) (b as GPUBuffer).destroy();
  }
}
