/**
 * The model table: attention shapes of common models (one layer's query heads, kv heads and
 * head_dim, and the layer count for memory budgets). One table for the page, `bench`, `accuracy`,
 * `simulate` and the reports: a preset is named by its key everywhere.
 */

export interface ModelPreset {
  /** Display name. */
  name: string;
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Attention layers (for "tokens that fit in a memory budget"; benchmarks time one layer). */
  numLayers: number;
  /** What the shape stands for. */
  note: string;
}

export const MODEL_PRESETS = {
  'llama-3.1-8b': { name: 'Llama-3.1-8B', numQueryHeads: 32, numKvHeads: 8, headDim: 128, numLayers: 32, note: 'GQA 4:1, head_dim 128 (also Mistral 7B)' },
  'qwen3-8b': { name: 'Qwen3-8B', numQueryHeads: 32, numKvHeads: 8, headDim: 128, numLayers: 36, note: 'GQA 4:1, head_dim 128' },
  'qwen3-4b': { name: 'Qwen3-4B', numQueryHeads: 32, numKvHeads: 8, headDim: 128, numLayers: 36, note: "the paper's model" },
  'llama-2-7b': { name: 'Llama-2-7B', numQueryHeads: 32, numKvHeads: 32, headDim: 128, numLayers: 32, note: 'multi-head attention (one query head per kv head)' },
  'llama-3.2-1b': { name: 'Llama-3.2-1B', numQueryHeads: 32, numKvHeads: 8, headDim: 64, numLayers: 16, note: 'head_dim 64: Hadamard blocks up to 64' },
  'gemma-2-2b': { name: 'Gemma-2-2B', numQueryHeads: 8, numKvHeads: 4, headDim: 256, numLayers: 26, note: 'head_dim 256' },
  'tiny-d64': { name: 'tiny-d64', numQueryHeads: 16, numKvHeads: 4, headDim: 64, numLayers: 12, note: 'a small head_dim-64 shape' },
  small: { name: 'small', numQueryHeads: 8, numKvHeads: 2, headDim: 128, numLayers: 1, note: 'a small GQA shape for quick runs' },
} as const satisfies Record<string, ModelPreset>;
export type PresetName = keyof typeof MODEL_PRESETS;
export const PRESET_NAMES = Object.keys(MODEL_PRESETS) as PresetName[];

/** Earlier names some commands took, still accepted. */
const PRESET_ALIASES: Readonly<Record<string, PresetName>> = {
  'llama3-8b': 'llama-3.1-8b',
  'llama3.2-1b': 'llama-3.2-1b',
  'gemma2-2b': 'gemma-2-2b',
};

/** The preset key for a name: a key, a display name (any case) or an earlier alias; null if none. */
export function findPreset(name: string): PresetName | null {
  const want = name.trim().toLowerCase();
  if (Object.hasOwn(PRESET_ALIASES, want)) return PRESET_ALIASES[want];
  return PRESET_NAMES.find((key) => key === want || MODEL_PRESETS[key].name.toLowerCase() === want) ?? null;
}

/** "key (Hq 32, Hkv 8, D 128)" for every preset, for help texts. */
export function describePresets(): string {
  return PRESET_NAMES.map((n) => `${n} (Hq ${MODEL_PRESETS[n].numQueryHeads}, Hkv ${MODEL_PRESETS[n].numKvHeads}, D ${MODEL_PRESETS[n].headDim})`).join(', ');
}
