/**
 * The model's weights on the GPU, uploaded once and shared by every decoder (every KV method, every
 * batch): f16 pairs in u32 as the file stores them, with the q/k/v projections of a layer fused into
 * one [Hq·D + 2·Hkv·D, d_model] matrix and gate/up into one [2·ffn, d_model] (one matvec each), and
 * the RoPE tables. Each buffer is checked against the device's limits before it is made.
 */
import { withGpuErrors, type GpuContext } from '../gpu/gpu-context';
import { storageBufferFrom } from '../kernels/gpu-buffers';
import type { ModelConfig } from './model-config';
import { ropeTables } from './model-rope';
import { concatWords, type ModelWeights } from './model-weights';

export interface GpuLayerWeights {
  /** [d_model/2] u32 f16 pairs */
  inputNorm: GPUBuffer;
  /** [(Hq + 2·Hkv)·D, d_model/2] u32: q_proj, k_proj, v_proj rows */
  qkv: GPUBuffer;
  /** [d_model, Hq·D/2] u32 */
  o: GPUBuffer;
  /** [d_model/2] u32 */
  postNorm: GPUBuffer;
  /** [2·ffn, d_model/2] u32: gate_proj, up_proj rows */
  gateUp: GPUBuffer;
  /** [d_model, ffn/2] u32 */
  down: GPUBuffer;
}

export class GpuModel {
  /** [vocab, d_model/2] u32: the embeddings and the tied LM head */
  readonly embed: GPUBuffer;
  /** [d_model/2] u32 */
  readonly finalNorm: GPUBuffer;
  readonly layers: GpuLayerWeights[];
  /** [contextLength, D/2] f32 */
  readonly ropeCos: GPUBuffer;
  readonly ropeSin: GPUBuffer;
  /** Bytes of weights on the GPU. */
  readonly weightBytes: number;
  private readonly buffers: GPUBuffer[] = [];

  private constructor(
    readonly ctx: GpuContext,
    readonly config: ModelConfig,
    weights: ModelWeights,
  ) {
    const t = (name: string) => weights.tensors.get(name)!;
    const upload = (label: string, words: Uint32Array | Float32Array) => {
      const buffer = storageBufferFrom(ctx, label, words);
      this.buffers.push(buffer);
      return buffer;
    };
    try {
      this.embed = upload('model.embed_tokens', t('model.embed_tokens.weight').words);
      this.finalNorm = upload('model.norm', t('model.norm.weight').words);
      this.layers = Array.from({ length: config.nLayers }, (_, i) => {
        const p = `model.layers.${i}.`;
        return {
          inputNorm: upload(`${p}input_layernorm`, t(`${p}input_layernorm.weight`).words),
          qkv: upload(`${p}self_attn.qkv`, concatWords([t(`${p}self_attn.q_proj.weight`), t(`${p}self_attn.k_proj.weight`), t(`${p}self_attn.v_proj.weight`)])),
          o: upload(`${p}self_attn.o_proj`, t(`${p}self_attn.o_proj.weight`).words),
          postNorm: upload(`${p}post_attention_layernorm`, t(`${p}post_attention_layernorm.weight`).words),
          gateUp: upload(`${p}mlp.gate_up`, concatWords([t(`${p}mlp.gate_proj.weight`), t(`${p}mlp.up_proj.weight`)])),
          down: upload(`${p}mlp.down_proj`, t(`${p}mlp.down_proj.weight`).words),
        };
      });
      this.weightBytes = this.buffers.reduce((n, b) => n + b.size, 0);
      const rope = ropeTables(config);
      this.ropeCos = upload('rope cos', rope.cos);
      this.ropeSin = upload('rope sin', rope.sin);
    } catch (e) {
      this.destroy(); // a buffer over the device's limits: free those already made
      throw e;
    }
  }

  /** Uploads `weights` (checked by loadModelWeights) to the device of `ctx`. */
  static create(ctx: GpuContext, weights: ModelWeights): Promise<GpuModel> {
    return withGpuErrors(ctx.device, 'uploading the model weights', () => {
      const model = new GpuModel(ctx, weights.config, weights);
      return model;
    });
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
    this.buffers.length = 0;
  }
}
