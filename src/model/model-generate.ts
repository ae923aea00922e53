/**
 * Greedy continuation of a prompt through the WGSL forward pass and the paged KV cache of one KV
 * method: the prompt's tokens go through the same steps as generated ones (append + attention of every
 * layer, one token per step), and each step's argmax feeds the next on the GPU, so nothing returns to
 * the CPU until the end.
 *
 * @example
 *   const r = await generateGreedy(model, [bos, ...tok.encode('NAME\n\n')], 32, methodSpec('int4-hadamard'));
 *   tok.decode(r.tokens);
 */
import type { MethodSpec } from '../accuracy/methods';
import { KvConfigError } from '../cache/paged-kv-cache';
import type { GpuModel } from './gpu-model';
import { ModelDecoder } from './model-forward';

export interface GenerationResult {
  method: string;
  /** The generated token ids (numTokens of them). */
  tokens: number[];
  /** Seconds of the prompt's steps (its last step yields the first generated token). */
  prefillSeconds: number;
  /** Seconds of the remaining numTokens − 1 steps. */
  decodeSeconds: number;
  /** (numTokens − 1) / decodeSeconds: generated tokens per second after the prompt (0 for one token). */
  tokensPerSecond: number;
  /** prompt tokens / prefillSeconds. */
  prefillTokensPerSecond: number;
}

/** Steps of a short untimed run that compiles every pipeline of the method first (so no timed step compiles). */
const WARMUP_STEPS = 2;

export interface GenerateOptions {
  /** Tokens per cache page. */
  pageSize?: number;
  /** Run the untimed warm-up first (default true). */
  warmup?: boolean;
  /** Checked before every step: an aborted signal stops the run with its reason (an AbortError). */
  signal?: AbortSignal;
  /** After each timed step is submitted: steps so far of `total` (prompt tokens + numTokens − 1). */
  onStep?: (done: number, total: number) => void;
}

export async function generateGreedy(model: GpuModel, promptIds: readonly number[], numTokens: number, method: MethodSpec, options: GenerateOptions = {}): Promise<GenerationResult> {
  const c = model.config;
  if (promptIds.length < 1) throw new KvConfigError('generate: the prompt needs at least one token');
  if (!Number.isInteger(numTokens) || numTokens < 1) throw new KvConfigError(`generate: the number of tokens must be an integer ≥ 1, got ${numTokens}`);
  const steps = promptIds.length + numTokens - 1;
  if (steps > c.contextLength) {
    throw new KvConfigError(`generate: ${promptIds.length} prompt tokens + ${numTokens} generated need ${steps} positions; the model's context is ${c.contextLength} (at most ${c.contextLength - promptIds.length + 1} tokens after this prompt)`);
  }
  options.signal?.throwIfAborted();
  if (options.warmup ?? true) {
    const warm = await ModelDecoder.create(model, { method, batch: 1, maxSteps: WARMUP_STEPS, pageSize: options.pageSize });
    try {
      await warm.step({ ids: [promptIds[0]] });
      await warm.step();
      await warm.finish();
    } finally {
      warm.destroy();
    }
  }
  const decoder = await ModelDecoder.create(model, { method, batch: 1, maxSteps: steps, pageSize: options.pageSize });
  try {
    const { signal, onStep } = options;
    const t0 = performance.now();
    for (const id of promptIds) {
      signal?.throwIfAborted();
      await decoder.step({ ids: [id] });
      onStep?.(decoder.stepsDone, steps);
    }
    await decoder.finish();
    const t1 = performance.now();
    while (decoder.stepsDone < steps) {
      signal?.throwIfAborted();
      await decoder.step();
      onStep?.(decoder.stepsDone, steps);
    }
    await decoder.finish();
    const t2 = performance.now();
    const argmax = await decoder.readArgmax();
    const tokens = Array.from(argmax.subarray(promptIds.length - 1));
    const decodeSeconds = (t2 - t1) / 1000;
    const prefillSeconds = (t1 - t0) / 1000;
    return {
      method: method.id,
      tokens,
      prefillSeconds,
      decodeSeconds,
      tokensPerSecond: numTokens > 1 ? (numTokens - 1) / decodeSeconds : 0,
      prefillTokensPerSecond: promptIds.length / prefillSeconds,
    };
  } finally {
    decoder.destroy();
  }
}

/** The first index where `b` differs from `a` (comparing their common length, then the lengths), or null when they are equal. */
export function firstDivergence(a: readonly number[], b: readonly number[]): number | null {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? null : n;
}
