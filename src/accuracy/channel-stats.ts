/**
 * Per-channel statistics of K: the RMS over tokens of each channel of one kv head, before and after
 * the block-diagonal Hadamard rotation (src/reference/hadamard.ts), and how far the largest channel
 * stands above the median one. Outlier channels stretch a token's INT4 range; the rotation spreads
 * them over the block (H is orthogonal: the total energy is unchanged). Shown by the page's K channel
 * figure and reported by `accuracy` (text and JSON).
 */
import type { AccuracyWorkload } from './accuracy-lab';
import { rotate } from '../reference/hadamard';

/** The kv head whose channels are shown and reported (every head has its own outlier channels). */
export const CHANNEL_FIGURE_KV_HEAD = 0;

export interface ChannelStats {
  kvHead: number;
  block: number;
  tokens: number;
  /** RMS over tokens of each channel, before the rotation. */
  before: number[];
  /** The same after rotating every row (x·H, blocks of `block`). */
  after: number[];
}

/** RMS per channel of K[:, kvHead, :] before and after the rotation (the total energy is the same: H is orthogonal). */
export function channelStats(w: AccuracyWorkload, block: number, kvHead = CHANNEL_FIGURE_KV_HEAD): ChannelStats {
  const { numKvHeads: hkv, headDim: d } = w;
  const tokens = w.k.length / (hkv * d);
  const before = new Float64Array(d);
  const after = new Float64Array(d);
  for (let t = 0; t < tokens; t++) {
    const row = w.k.subarray((t * hkv + kvHead) * d, (t * hkv + kvHead + 1) * d);
    const rotated = rotate(row, block);
    for (let c = 0; c < d; c++) {
      before[c] += row[c] * row[c];
      after[c] += rotated[c] * rotated[c];
    }
  }
  const rms = (sums: Float64Array) => Array.from(sums, (s) => Math.sqrt(s / tokens));
  return { kvHead, block, tokens, before: rms(before), after: rms(after) };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Largest channel RMS over the median one: how far the per-token INT4 range must stretch. */
export function spread(values: readonly number[]): number {
  return Math.max(...values) / median(values);
}
