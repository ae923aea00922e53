/**
 * The model's shape (model/config.json → "model", or a run's reference.json → "config") and the
 * weight tensors it implies: the names, shapes and order of model/train.py `weight_shapes`
 * (transformers' LlamaForCausalLM names; the LM head is tied to the embeddings, so not stored).
 *
 * @example
 *   const config = parseModelConfig(JSON.parse(configJson).model, 'model/config.json');
 *   weightShapes(config)[0]; // ['model.embed_tokens.weight', [4096, 384]]
 */
import { MAX_HEAD_DIM } from '../cache/paged-kv-cache';
import { MATVEC_IN_MULTIPLE } from './model-matvec';

export interface ModelConfig {
  vocabSize: number;
  dModel: number;
  nLayers: number;
  /** Query heads. */
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  ffnHidden: number;
  /** Longest sequence (RoPE table length). */
  contextLength: number;
  ropeTheta: number;
  normEps: number;
}

/** A model file (config, reference, tokenizer, corpus) that is missing or does not fit; the CLI exits 2 on it. */
export class ModelFileError extends Error {
  override readonly name = 'ModelFileError';
}

const INT_KEYS = [
  ['vocab_size', 'vocabSize'],
  ['d_model', 'dModel'],
  ['n_layers', 'nLayers'],
  ['n_heads', 'nHeads'],
  ['n_kv_heads', 'nKvHeads'],
  ['head_dim', 'headDim'],
  ['ffn_hidden', 'ffnHidden'],
  ['context_length', 'contextLength'],
] as const;

/**
 * The config from its JSON object (snake_case keys, as config.json writes them). Throws
 * ModelFileError naming `source` and the key for anything the WGSL forward pass cannot run.
 */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  const fail = (problem: string): never => {
    throw new ModelFileError(`${source}: ${problem}`);
  };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return fail('the model config must be a JSON object');
  const m = json as Record<string, unknown>;
  const out: Record<string, number> = {};
  for (const [key, name] of INT_KEYS) {
    const v = m[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail(`${key} must be an integer ≥ 1, got ${JSON.stringify(v)}`);
    out[name] = v as number;
  }
  for (const key of ['rope_theta', 'norm_eps']) {
    const v = m[key];
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) fail(`${key} must be a positive number, got ${JSON.stringify(v)}`);
  }
  if (m.rope_convention !== 'rotate_half') fail(`rope_convention ${JSON.stringify(m.rope_convention)}: only "rotate_half" is implemented`);
  if (m.tie_embeddings !== true) fail('tie_embeddings must be true (the LM head is the embedding matrix)');
  const c: ModelConfig = {
    vocabSize: out.vocabSize,
    dModel: out.dModel,
    nLayers: out.nLayers,
    nHeads: out.nHeads,
    nKvHeads: out.nKvHeads,
    headDim: out.headDim,
    ffnHidden: out.ffnHidden,
    contextLength: out.contextLength,
    ropeTheta: m.rope_theta as number,
    normEps: m.norm_eps as number,
  };
  if (c.nHeads % c.nKvHeads !== 0) fail(`n_heads ${c.nHeads} is not a multiple of n_kv_heads ${c.nKvHeads}`);
  if (c.headDim % 32 !== 0 || c.headDim > MAX_HEAD_DIM) fail(`head_dim ${c.headDim} does not suit the cache kernels (a multiple of 32, at most ${MAX_HEAD_DIM})`);
  // the matvec kernel reads weight rows 8 halves at a time: every input width is a multiple of 8
  if (c.dModel % MATVEC_IN_MULTIPLE !== 0) fail(`d_model ${c.dModel} must be a multiple of ${MATVEC_IN_MULTIPLE} (weight rows are read 8 halves at a time)`);
  if (c.ffnHidden % MATVEC_IN_MULTIPLE !== 0) fail(`ffn_hidden ${c.ffnHidden} must be a multiple of ${MATVEC_IN_MULTIPLE} (weight rows are read 8 halves at a time)`);
  return c;
}

/** The config in config.json's own spelling (for reports). */
export function configJson(c: ModelConfig): Record<string, unknown> {
  return {
    vocab_size: c.vocabSize, d_model: c.dModel, n_layers: c.nLayers, n_heads: c.nHeads, n_kv_heads: c.nKvHeads,
    head_dim: c.headDim, ffn_hidden: c.ffnHidden, context_length: c.contextLength, rope_theta: c.ropeTheta,
    rope_convention: 'rotate_half', norm_eps: c.normEps, tie_embeddings: true,
  };
}

/** Where two configs differ ('' when they agree): "d_model 512 vs 384, ffn_hidden 1792 vs 1024". */
export function configDifference(a: ModelConfig, b: ModelConfig): string {
  const ja = configJson(a);
  const jb = configJson(b);
  return Object.keys(ja).filter((k) => ja[k] !== jb[k]).map((k) => `${k} ${ja[k]} vs ${jb[k]}`).join(', ');
}

/** [(name, shape)] of the stored weights, in file order (model/train.py weight_shapes). */
export function weightShapes(c: ModelConfig): [string, number[]][] {
  const d = c.dModel;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocabSize, d]]];
  for (let i = 0; i < c.nLayers; i++) {
    const p = `model.layers.${i}.`;
    out.push(
      [`${p}input_layernorm.weight`, [d]],
      [`${p}self_attn.q_proj.weight`, [c.nHeads * c.headDim, d]],
      [`${p}self_attn.k_proj.weight`, [c.nKvHeads * c.headDim, d]],
      [`${p}self_attn.v_proj.weight`, [c.nKvHeads * c.headDim, d]],
      [`${p}self_attn.o_proj.weight`, [d, c.nHeads * c.headDim]],
      [`${p}post_attention_layernorm.weight`, [d]],
      [`${p}mlp.gate_proj.weight`, [c.ffnHidden, d]],
      [`${p}mlp.up_proj.weight`, [c.ffnHidden, d]],
      [`${p}mlp.down_proj.weight`, [d, c.ffnHidden]],
    );
  }
  out.push(['model.norm.weight', [d]]);
  return out;
}

/** Parameters of the config (the stored weights). */
export function parameterCount(c: ModelConfig): number {
  return weightShapes(c).reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
}
