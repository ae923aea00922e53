/**
 * The model's files before any GPU work: the config's checks, the weights loader (F16 bits kept as
 * u32 pairs; every tensor's name, dtype, shape and values checked against the config, each problem a
 * one-line TensorFileError naming file and tensor), and the run folder's cross-checks (reference.json
 * made for another config, weights missing).
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TensorFileError, writeSafetensors, type TensorToWrite } from '../src/io/safetensors';
import { configDifference, ModelFileError, parameterCount, parseModelConfig, weightShapes } from '../src/model/model-config';
import { readModelRun } from '../src/model/model-files';
import { loadModelWeights } from '../src/model/model-weights';
import { f16Bits } from '../src/reference/f16';

const ROOT = resolve(__dirname, '..');
const TINY = {
  vocab_size: 16, d_model: 8, n_layers: 1, n_heads: 2, n_kv_heads: 1, head_dim: 32, ffn_hidden: 16,
  context_length: 8, rope_theta: 10000, rope_convention: 'rotate_half', norm_eps: 1e-5, tie_embeddings: true,
};
const config = parseModelConfig(TINY, 'tiny');

/** Every tensor of the tiny config as F16, element i = i / 64 (exact in f16). */
function tensors(): Record<string, TensorToWrite> {
  return Object.fromEntries(weightShapes(config).map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return [name, { dtype: 'F16', shape, data: Uint16Array.from({ length: n }, (_, i) => f16Bits(i / 64)) }];
  }));
}

function load(files: Record<string, Record<string, TensorToWrite>>) {
  return loadModelWeights(config, Object.entries(files).map(([name, t]) => ({ name, bytes: writeSafetensors(t) })));
}

describe('model config', () => {
  it('reads config.json and the trained run\'s shape', () => {
    const json = JSON.parse(readFileSync(join(ROOT, 'model/config.json'), 'utf8'));
    const c = parseModelConfig(json.model, 'model/config.json');
    expect(c.headDim).toBe(128);
    expect(c.nHeads % c.nKvHeads).toBe(0);
    expect(parameterCount(config)).toBe(16 * 8 + 8 + 64 * 8 + 32 * 8 * 2 + 8 * 64 + 8 + 16 * 8 * 3 + 8);
  });

  it('refuses what the forward pass cannot run, naming the key', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ ...TINY, head_dim: 48 }, /head_dim 48 does not suit the cache kernels/],
      [{ ...TINY, d_model: 12 }, /d_model 12 must be a multiple of 8/],
      [{ ...TINY, ffn_hidden: 20 }, /ffn_hidden 20 must be a multiple of 8/],
      [{ ...TINY, n_heads: 3, n_kv_heads: 2 }, /n_heads 3 is not a multiple of n_kv_heads 2/],
      [{ ...TINY, rope_convention: 'interleaved' }, /only "rotate_half"/],
      [{ ...TINY, tie_embeddings: false }, /tie_embeddings must be true/],
      [{ ...TINY, vocab_size: 0 }, /vocab_size must be an integer ≥ 1, got 0/],
      [{ ...TINY, norm_eps: 'small' }, /norm_eps must be a positive number/],
    ];
    for (const [json, message] of bad) expect(() => parseModelConfig(json, 'c.json')).toThrow(message);
    expect(configDifference(config, parseModelConfig({ ...TINY, d_model: 16, ffn_hidden: 24 }, 'x'))).toBe('d_model 8 vs 16, ffn_hidden 16 vs 24');
  });
});

describe('weights loader', () => {
  it('keeps the F16 bits as u32 pairs (element 2i low), from one file or shards', () => {
    const all = tensors();
    const w = load({ 'model.safetensors': all });
    const norm = w.tensors.get('model.norm.weight')!;
    expect(norm.shape).toEqual([8]);
    expect(norm.words).toHaveLength(4);
    expect(norm.words[1]).toBe((f16Bits(3 / 64) << 16 | f16Bits(2 / 64)) >>> 0);
    const names = Object.keys(all);
    const half = names.length >> 1;
    const sharded = load({
      'a.safetensors': Object.fromEntries(names.slice(0, half).map((n) => [n, all[n]])),
      'b.safetensors': Object.fromEntries(names.slice(half).map((n) => [n, all[n]])),
    });
    expect([...sharded.tensors.keys()].sort()).toEqual(names.sort());
  });

  it('refuses a wrong dtype, shape, name, a missing or repeated tensor and a non-finite value, naming file and tensor', () => {
    const all = tensors();
    const cases: [Record<string, Record<string, TensorToWrite>>, RegExp][] = [
      [{ 'm.safetensors': { ...all, 'model.norm.weight': { shape: [8], data: new Float32Array(8) } } }, /^m\.safetensors: tensor 'model\.norm\.weight': has dtype F32; expected F16$/],
      [{ 'm.safetensors': { ...all, 'model.norm.weight': { dtype: 'F16', shape: [2, 4], data: new Uint16Array(8) } } }, /tensor 'model\.norm\.weight': has shape \[2, 4\]; the config needs \[8\]/],
      [{ 'm.safetensors': { ...all, 'lm_head.weight': all['model.embed_tokens.weight'] } }, /'lm_head\.weight': the LM head is tied to model\.embed_tokens\.weight/],
      [{ 'm.safetensors': { ...all, 'model.layers.1.mlp.up_proj.weight': all['model.layers.0.mlp.up_proj.weight'] } }, /'model\.layers\.1\.mlp\.up_proj\.weight': is not a weight of this config \(1 layers/],
      [{ 'm.safetensors': Object.fromEntries(Object.entries(all).filter(([n]) => n !== 'model.norm.weight')) }, /weights: 1 tensor of the config is in none of the files: model\.norm\.weight/],
      [{ 'a.safetensors': all, 'b.safetensors': { 'model.norm.weight': all['model.norm.weight'] } }, /^b\.safetensors: tensor 'model\.norm\.weight': is also in a\.safetensors/],
      [{ 'm.safetensors': { ...all, 'model.norm.weight': { dtype: 'F16', shape: [8], data: Uint16Array.from([0, 0, 0, 0x7c00, 0, 0, 0, 0]) } } }, /'model\.norm\.weight': element 3 is not finite \(Infinity\)/],
    ];
    for (const [files, message] of cases) {
      let err: unknown = null;
      try {
        load(files);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TensorFileError);
      expect((err as Error).message).toMatch(message);
    }
  });
});

describe('the run folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'model-weights-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('says when the weights are missing, and when reference.json was made for another config', () => {
    copyFileSync(join(ROOT, 'model/run/reference.json'), join(dir, 'reference.json'));
    expect(() => readModelRun(join(ROOT, 'model'), dir)).toThrow(/model\.safetensors not found: the trained weights \(one F16 file\); python3 model\/train\.py --out/);
    const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
    writeFileSync(join(dir, 'reference.json'), JSON.stringify({ ...ref, config: { ...ref.config, d_model: 512 } }));
    expect(() => readModelRun(join(ROOT, 'model'), dir)).toThrow(ModelFileError);
    expect(() => readModelRun(join(ROOT, 'model'), dir)).toThrow(/was made for another model than .*model\/config\.json describes \(d_model 512 vs \d+\)/);
    writeFileSync(join(dir, 'reference.json'), JSON.stringify({ ...ref, tokenizer_sha256: '00'.repeat(32) }));
    expect(() => readModelRun(join(ROOT, 'model'), dir)).toThrow(/the run's tokenizer \(sha256 0000000000000000…\) is not .*model\/tokenizer\.json/);
  });
});
