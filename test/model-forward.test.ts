/**
 * The WGSL forward pass (src/model/) through the project's paged KV cache, against two references:
 *   1. a random-weight model (model/make_random_run.py: GQA 4/2, head_dim 64, 2 layers) and forward_numpy's
 *      float64 logits at every position of two sequences decoded as one batch, with K/V rounded to f16
 *      as the fp16 cache stores them (tight: f32 arithmetic only);
 *   2. the model trained here (model/run): PyTorch's fp32 logits in reference.json at the prompt
 *      positions (the quick-slice perplexity, FP16 KV within 0.5 % of PyTorch's, is checked through
 *      the CLI in test/model-cli.test.ts).
 * Every token goes through append + attention of every layer's cache. Each tolerance is shown to be
 * exceeded by a wrong answer (naive INT4 KV), so none is vacuous. There is no skip: without the trained
 * weights the second part fails and says how to get them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { methodSpec } from '../src/accuracy/methods';
import type { GpuContext } from '../src/gpu/gpu-context';
import { GpuModel } from '../src/model/gpu-model';
import { parseModelConfig, type ModelConfig } from '../src/model/model-config';
import { ModelDecoder } from '../src/model/model-forward';
import { readModelRun, type ModelRun } from '../src/model/model-files';
import { generateGreedy } from '../src/model/model-generate';
import { runPerplexity } from '../src/model/model-perplexity';
import { loadModelWeights } from '../src/model/model-weights';
import { testGpu } from './gpu-harness';

const ROOT = resolve(__dirname, '..');

/**
 * GPU (f32 arithmetic, fp16 KV cache) vs float64 numpy with K and V rounded to f16, relative to the
 * largest |logit|. What remains is f32 rounding (~1e-6 relative per dot product) and the few K/V
 * elements whose f16 rounding goes the other way because the GPU's f32 value differs from float64's
 * in its last bits (one f16 ulp, 2^-11 relative, on those elements). Measured on SwiftShader:
 * 2.1e-4 to 5.0e-4 at max |logit| 14.5 (≤ 3.5e-5 relative). The f16 rounding itself moves these logits
 * by 6.7e-3 (4.6e-4 relative), so the tolerance still tells f16 storage from exact K/V (checked below).
 */
const F16_EMULATION_REL_TOL = 1e-4;

/**
 * GPU with an fp16 KV cache vs PyTorch fp32 with exact K/V (reference.json), absolute, on the trained
 * model (max |logit| ≈ 17.4): numpy float64 with K/V rounded to f16 moves its prompt logits at the
 * reference positions by at most 4.3e-3 from exact float64 (7.2e-3 over all 128 positions); f32
 * arithmetic adds ≤ 3.5e-5 × 17.4 ≈ 6e-4 (as above); PyTorch fp32 vs float64 is 6e-6. About twice
 * their sum. Measured on SwiftShader: 4.0e-3; naive INT4 KV: 0.78.
 */
const REFERENCE_LOGIT_TOL = 1e-2;

interface RandomReference {
  config: Record<string, unknown>;
  ids: number[][];
  logits: number[][][];
  logits_f16_kv: number[][][];
}

/** Max |got − want| over [S][T][V] (got: [T, S, V] as the decoder captures it) and where. */
function worstLogitError(got: Float32Array, want: number[][][], steps: number[]): { error: number; at: string } {
  const seqs = want.length;
  const vocab = want[0][0].length;
  let error = 0;
  let at = '';
  steps.forEach((t, c) => {
    for (let s = 0; s < seqs; s++) {
      for (let v = 0; v < vocab; v++) {
        const e = Math.abs(got[(c * seqs + s) * vocab + v] - want[s][t][v]);
        if (!(e <= error)) {
          error = e;
          at = `sequence ${s}, position ${t}, token ${v}: got ${got[(c * seqs + s) * vocab + v]}, want ${want[s][t][v]}`;
        }
      }
    }
  });
  return { error, at };
}

function maxAbs3(x: number[][][]): number {
  return Math.max(...x.flat(2).map(Math.abs));
}

/** Logits of every step of `ids` ([S][T]) decoded as one batch under `method`: [T, S, V]. */
async function batchLogits(model: GpuModel, ids: number[][], method: string, pageSize: number): Promise<Float32Array> {
  const steps = ids[0].length;
  const decoder = await ModelDecoder.create(model, {
    method: methodSpec(method), batch: ids.length, maxSteps: steps, pageSize, pageShuffleSeed: 3,
    captureSteps: Array.from({ length: steps }, (_, t) => t),
  });
  try {
    for (let t = 0; t < steps; t++) await decoder.step({ ids: ids.map((row) => row[t]) });
    return await decoder.readLogits();
  } finally {
    decoder.destroy();
  }
}

describe('forward pass: random-weight model vs float64 numpy (model/make_random_run.py)', () => {
  let dir = '';
  let ref: RandomReference;
  let config: ModelConfig;
  let ctx: GpuContext;
  let model: GpuModel;
  const steps = () => Array.from({ length: ref.ids[0].length }, (_, t) => t);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'model-forward-test-'));
    const r = spawnSync('/usr/bin/python3', [join(ROOT, 'model/make_random_run.py'), dir], { encoding: 'utf8', timeout: 120_000 });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`model/make_random_run.py failed (numpy needed: python3-numpy):\n${r.stdout}\n${r.stderr}`);
    ref = JSON.parse(readFileSync(join(dir, 'random-reference.json'), 'utf8')) as RandomReference;
    config = parseModelConfig(ref.config, 'random-reference.json');
    const weights = loadModelWeights(config, [{ name: 'model.safetensors', bytes: new Uint8Array(readFileSync(join(dir, 'model.safetensors'))) }]);
    ctx = await testGpu();
    model = await GpuModel.create(ctx, weights);
  });

  afterAll(() => {
    model?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fp16 KV: every position of two sequences in one batch matches numpy with f16 K/V; exact K/V and naive INT4 KV do not', async () => {
    const tol = F16_EMULATION_REL_TOL * Math.max(1, maxAbs3(ref.logits_f16_kv));
    // page size 8 with shuffled pages: each 40-token sequence spans 5 physical pages out of order
    const fp16 = worstLogitError(await batchLogits(model, ref.ids, 'fp16', 8), ref.logits_f16_kv, steps());
    expect(fp16.error, `fp16 KV vs numpy with f16 K/V, worst at ${fp16.at}`).toBeLessThanOrEqual(tol);
    // the tolerance resolves f16 storage: exact K/V is farther from the emulation than it allows …
    expect(worstLogitError(Float32Array.from(steps().flatMap((t) => ref.logits.map((_, s) => ref.logits[s][t]).flat())), ref.logits_f16_kv, steps()).error).toBeGreaterThan(tol);
    // … and a wrong cache format is far outside it
    const int4 = worstLogitError(await batchLogits(model, ref.ids, 'int4', 16), ref.logits_f16_kv, steps());
    expect(int4.error).toBeGreaterThan(20 * tol);
  });

  it('greedy generation feeds each argmax back on the GPU: the same tokens as the argmax of teacher-forced logits', async () => {
    const prompt = ref.ids[0].slice(0, 6);
    const spec = methodSpec('int4-hadamard-b64');
    const gen = await generateGreedy(model, prompt, 10, spec, { warmup: false });
    expect(gen.tokens).toHaveLength(10);
    const sequence = [...prompt, ...gen.tokens.slice(0, -1)];
    const logits = await batchLogits(model, [sequence], spec.id, 16);
    const v = config.vocabSize;
    const argmax = sequence.map((_, t) => {
      let best = 0;
      for (let i = 1; i < v; i++) if (logits[t * v + i] > logits[t * v + best]) best = i;
      return best;
    });
    expect(argmax.slice(prompt.length - 1)).toEqual(gen.tokens);
  });

  it('teacher-forced perplexity: windows decoded as one batch give the cross-entropy of the numpy logits', async () => {
    // the two sequences end to end; window s is sequence s (inputs 39 tokens, targets the next ones)
    const stream = Int32Array.from([...ref.ids[0], ...ref.ids[1]]);
    const length = ref.ids[0].length - 1;
    const windows = [{ start: 0, length }, { start: length + 1, length }];
    const r = await runPerplexity(model, stream, windows, methodSpec('fp16'), { batch: 2, pageSize: 8 });
    let want = 0;
    ref.logits_f16_kv.forEach((rows, s) => {
      for (let t = 0; t < length; t++) {
        const row = rows[t];
        const max = Math.max(...row);
        want += Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0)) + max - row[ref.ids[s][t + 1]];
      }
    });
    expect(r.targets).toBe(2 * length);
    // each token's nll moves at most twice as far as a logit does
    const tol = 2 * F16_EMULATION_REL_TOL * Math.max(1, maxAbs3(ref.logits_f16_kv));
    expect(Math.abs(r.nllSum - want), `nll sum ${r.nllSum} vs numpy ${want}`).toBeLessThanOrEqual(2 * length * tol);
    expect(Math.abs(Math.log(r.perplexity) - want / (2 * length))).toBeLessThanOrEqual(tol);
  });
});

describe('forward pass: the trained model (model/run) vs PyTorch (reference.json)', () => {
  let run: ModelRun;
  let ctx: GpuContext;
  let model: GpuModel;

  beforeAll(async () => {
    const weights = join(ROOT, 'model/run/model.safetensors');
    if (!existsSync(weights)) {
      throw new Error(`${weights} is missing: the trained weights are committed with the run (model/README.md); python3 model/train.py --out model/run re-creates them on a GPU`);
    }
    run = readModelRun(join(ROOT, 'model'), join(ROOT, 'model/run'));
    ctx = await testGpu();
    model = await GpuModel.create(ctx, run.weights);
  });

  afterAll(() => model?.destroy());

  it('fp16 KV: logits at the reference positions of the prompt within REFERENCE_LOGIT_TOL, and the same top token', async () => {
    const ref = run.reference;
    const prompt = ref.prompt.tokenIds;
    const positions = ref.prompt.positions.map((p) => p.position);
    const decoder = await ModelDecoder.create(model, { method: methodSpec('fp16'), batch: 1, maxSteps: Math.max(...positions) + 1, captureSteps: positions });
    let logits: Float32Array;
    try {
      while (decoder.stepsDone < decoder.options.maxSteps) await decoder.step({ ids: [prompt[decoder.stepsDone]] });
      logits = await decoder.readLogits();
    } finally {
      decoder.destroy();
    }
    const v = run.config.vocabSize;
    let worst = 0;
    let at = '';
    ref.prompt.positions.forEach((p, c) => {
      const ids = p.logits ? p.logits.map((_, i) => i) : p.top_ids;
      const want = p.logits ?? p.top_logits;
      ids.forEach((id, i) => {
        const e = Math.abs(logits[c * v + id] - want[i]);
        if (!(e <= worst)) {
          worst = e;
          at = `position ${p.position}, token ${id}: got ${logits[c * v + id]}, PyTorch ${want[i]}`;
        }
      });
      // greedy agrees with PyTorch's top token
      const row = logits.subarray(c * v, (c + 1) * v);
      expect(row.indexOf(Math.max(...row)), `argmax at position ${p.position}`).toBe(p.top_ids[0]);
    });
    expect(worst, `worst at ${at}`).toBeLessThanOrEqual(REFERENCE_LOGIT_TOL);
  });

  it('naive INT4 KV moves the logits well past REFERENCE_LOGIT_TOL (the tolerance is not vacuous)', async () => {
    const prompt = run.reference.prompt.tokenIds;
    const last = run.reference.prompt.positions.filter((p) => p.position < 8);
    const decoder = await ModelDecoder.create(model, { method: methodSpec('int4'), batch: 1, maxSteps: 8, captureSteps: last.map((p) => p.position) });
    let logits: Float32Array;
    try {
      for (let t = 0; t < 8; t++) await decoder.step({ ids: [prompt[t]] });
      logits = await decoder.readLogits();
    } finally {
      decoder.destroy();
    }
    const v = run.config.vocabSize;
    const worst = Math.max(...last.flatMap((p, c) => p.top_ids.map((id, i) => Math.abs(logits[c * v + id] - p.top_logits[i]))));
    expect(worst).toBeGreaterThan(4 * REFERENCE_LOGIT_TOL);
  });

});
