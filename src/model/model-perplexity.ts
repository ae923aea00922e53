/**
 * Teacher-forced perplexity of a token stream through the WGSL forward pass and the paged KV cache of
 * one KV method, over the windows model/train.py scores: non-overlapping windows of the context
 * length, window i with inputs stream[L·i, L·i + L) and the next token of each as its target (the last
 * window shorter), or the `--quick` window, inputs stream[0, 256). Windows of equal length are decoded
 * together as one batch (one sequence each), every token through append + attention of every layer.
 *
 * @example
 *   const r = await runPerplexity(model, stream, [{ start: 0, length: 256 }], methodSpec('int4'));
 *   r.perplexity; // exp(nllSum / targets)
 */
import type { MethodSpec } from '../accuracy/methods';
import type { GpuModel } from './gpu-model';
import { ModelDecoder } from './model-forward';

/** One scored window: inputs stream[start, start + length), targets stream[start + 1, start + length + 1). */
export interface PerplexityWindow {
  start: number;
  length: number;
}

/** Windows sequences decoded together by default (each window is one sequence of the batch). */
export const DEFAULT_PERPLEXITY_BATCH = 32;

/** model/train.py eval_windows: non-overlapping windows of `length` covering every target 1..nTokens-1 once. */
export function evalWindows(nTokens: number, length: number): PerplexityWindow[] {
  const out: PerplexityWindow[] = [];
  for (let s = 0; s < nTokens - 1; s += length) out.push({ start: s, length: Math.min(length, nTokens - 1 - s) });
  return out;
}

export interface PerplexityResult {
  /** The accuracy-lab method id. */
  method: string;
  /** Σ −log p(target), in nats (summed in float64 from the GPU's f32 per-token values). */
  nllSum: number;
  /** Targets scored. */
  targets: number;
  /** nllSum / targets. */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  /** Wall-clock seconds of the run (device work included). */
  seconds: number;
  /** Tokens through the forward pass per second (targets / seconds). */
  tokensPerSecond: number;
}

export interface PerplexityOptions {
  /** Windows per batch (default DEFAULT_PERPLEXITY_BATCH). */
  batch?: number;
  pageSize?: number;
  /** After each batch: targets scored so far of `total`. */
  onProgress?: (done: number, total: number) => void;
  /** After each step of a batch is submitted: its steps so far of `length` (a finer progress for one long window). */
  onStep?: (done: number, length: number) => void;
  /** Checked before every step: an aborted signal stops the run with its reason (an AbortError). */
  signal?: AbortSignal;
}

/** The perplexity of `stream` over `windows` with the KV cache of `method`. */
export async function runPerplexity(model: GpuModel, stream: Int32Array, windows: readonly PerplexityWindow[], method: MethodSpec, options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const maxBatch = options.batch ?? DEFAULT_PERPLEXITY_BATCH;
  for (const w of windows) {
    if (!(w.length >= 1 && w.start >= 0 && w.start + w.length + 1 <= stream.length)) {
      throw new RangeError(`window [${w.start}, ${w.start + w.length}) and its targets do not fit in the stream of ${stream.length} tokens`);
    }
  }
  const total = windows.reduce((n, w) => n + w.length, 0);
  // equal lengths batch together, shortest first (as train.py groups them)
  const byLength = new Map<number, number[]>();
  for (const w of windows) byLength.set(w.length, [...(byLength.get(w.length) ?? []), w.start]);
  const t0 = performance.now();
  let nllSum = 0;
  let done = 0;
  for (const [length, starts] of [...byLength].sort((a, b) => a[0] - b[0])) {
    for (let i = 0; i < starts.length; i += maxBatch) {
      const group = starts.slice(i, i + maxBatch);
      const decoder = await ModelDecoder.create(model, { method, batch: group.length, maxSteps: length, pageSize: options.pageSize });
      try {
        for (let t = 0; t < length; t++) {
          options.signal?.throwIfAborted();
          await decoder.step({ ids: group.map((s) => stream[s + t]), targets: group.map((s) => stream[s + t + 1]) });
          options.onStep?.(t + 1, length);
        }
        for (const x of await decoder.readNll()) nllSum += x;
      } finally {
        decoder.destroy();
      }
      done += group.length * length;
      options.onProgress?.(done, total);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const loss = nllSum / total;
  return { method: method.id, nllSum, targets: total, loss, perplexity: Math.exp(loss), seconds, tokensPerSecond: total / seconds };
}
