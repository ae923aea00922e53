/**
 * The trained model's small files parsed from their JSON or text, with no file system (the CLI reads
 * them through model-files.ts, the page fetches them): the model's config and quick-slice length
 * (model/config.json), the tokenizer (model/tokenizer.json) and PyTorch's numbers for the run
 * (model/run/reference.json), checked against each other. Every problem is one ModelFileError that
 * names the file (`source`) and what is wrong.
 *
 * @example
 *   const { config, quickTokens } = parseModelConfigFile(JSON.parse(configText), 'model/config.json');
 *   const reference = parseReference(JSON.parse(referenceText), 'model/run/reference.json', config, sha256);
 *   reference.quick.perplexity; // PyTorch's fp32 perplexity of the 256-token quick slice
 */
import { configDifference, ModelFileError, parseModelConfig, type ModelConfig } from './model-config';
import type { ModelWeights } from './model-weights';
import { BpeTokenizer, TokenizerError, type TokenizerSpec } from './tokenizer';

/** One prompt position of reference.json: PyTorch's top logits (and at one position the whole row). */
export interface ReferencePosition {
  position: number;
  top_ids: number[];
  top_logits: number[];
  logits?: number[];
}

/** The parts of reference.json the WGSL forward pass is checked against. */
export interface ModelReference {
  config: ModelConfig;
  tokenizerSha256: string;
  weightFiles: string[];
  /** The full held-out stream in windows of the context length. */
  heldout: { tokens: number; targets: number; windowTokens: number; nllSum: number; perplexity: number };
  /** The --quick slice: inputs stream[0, targets), targets shifted by one. */
  quick: { targets: number; nllSum: number; perplexity: number };
  prompt: { tokenIds: number[]; positions: ReferencePosition[] };
}

/** Everything a perplexity or generate run reads: config, tokenizer, reference and weights, cross-checked. */
export interface ModelRun {
  config: ModelConfig;
  quickTokens: number;
  tokenizer: BpeTokenizer;
  reference: ModelReference;
  weights: ModelWeights;
}

/** `text` as JSON, or a ModelFileError naming `source`. */
export function parseJsonFile(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFileError(`${source}: not valid JSON (${(e as Error).message})`);
  }
}

function field(obj: unknown, path: string, source: string): unknown {
  let at = obj;
  for (const key of path.split('.')) {
    if (at === null || typeof at !== 'object' || !(key in at)) throw new ModelFileError(`${source}: lacks ${path}`);
    at = (at as Record<string, unknown>)[key];
  }
  return at;
}

function num(obj: unknown, path: string, source: string): number {
  const v = field(obj, path, source);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelFileError(`${source}: ${path} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/** The model's config (config.json → "model") and its quick-slice length ("reference.quick_tokens"). */
export function parseModelConfigFile(json: unknown, source: string): { config: ModelConfig; quickTokens: number } {
  return { config: parseModelConfig(field(json, 'model', source), source), quickTokens: num(json, 'reference.quick_tokens', source) };
}

/** The tokenizer of tokenizer.json's text; a bad spec is a ModelFileError naming `source`. */
export function parseTokenizerFile(text: string, source: string): BpeTokenizer {
  try {
    return new BpeTokenizer(JSON.parse(text) as TokenizerSpec);
  } catch (e) {
    if (e instanceof TokenizerError || e instanceof SyntaxError) throw new ModelFileError(`${source}: ${e.message}`);
    throw e;
  }
}

/**
 * reference.json of a run, checked against the model's config and tokenizer (the sha256 of
 * tokenizer.json's bytes; null skips that check, where no hash function is at hand).
 */
export function parseReference(
  json: unknown, source: string, config: ModelConfig, tokenizerSha256: string | null,
  configSource = 'model/config.json', tokenizerSource = 'model/tokenizer.json',
): ModelReference {
  const path = source;
  const runConfig = parseModelConfig(field(json, 'config', path), `${path} config`);
  const diff = configDifference(runConfig, config);
  if (diff) throw new ModelFileError(`${path} was made for another model than ${configSource} describes (${diff}); re-train (model/README.md) or restore the matching config`);
  const sha = field(json, 'tokenizer_sha256', path);
  if (tokenizerSha256 !== null && sha !== tokenizerSha256) {
    throw new ModelFileError(`${path}: the run's tokenizer (sha256 ${String(sha).slice(0, 16)}…) is not ${tokenizerSource} (${tokenizerSha256.slice(0, 16)}…)`);
  }
  const files = field(json, 'weights.files', path);
  if (!Array.isArray(files) || files.length === 0 || !files.every((f) => typeof f === 'string' && /^[\w.-]+\.safetensors$/.test(f))) {
    throw new ModelFileError(`${path}: weights.files must list the run's .safetensors files`);
  }
  const ids = field(json, 'prompt.token_ids', path);
  const positions = field(json, 'prompt.positions', path);
  if (!Array.isArray(ids) || !ids.every((i) => Number.isInteger(i) && i >= 0 && i < config.vocabSize)) throw new ModelFileError(`${path}: prompt.token_ids must be token ids`);
  if (!Array.isArray(positions) || !positions.every((p) => Number.isInteger(p?.position) && p.position < ids.length && Array.isArray(p.top_ids) && Array.isArray(p.top_logits))) {
    throw new ModelFileError(`${path}: prompt.positions must be {position, top_ids, top_logits} entries within the prompt`);
  }
  return {
    config: runConfig,
    tokenizerSha256: typeof sha === 'string' ? sha : String(sha),
    weightFiles: files as string[],
    heldout: {
      tokens: num(json, 'heldout.tokens', path),
      targets: num(json, 'heldout.targets', path),
      windowTokens: num(json, 'heldout.window_tokens', path),
      nllSum: num(json, 'heldout.nll_sum', path),
      perplexity: num(json, 'heldout.perplexity', path),
    },
    quick: { targets: num(json, 'quick.targets', path), nllSum: num(json, 'quick.nll_sum', path), perplexity: num(json, 'quick.perplexity', path) },
    prompt: { tokenIds: ids as number[], positions: positions as ReferencePosition[] },
  };
}

/** A tokenizer whose vocabulary is not the config's. */
export function checkTokenizerFits(tokenizer: BpeTokenizer, config: ModelConfig, source: string): void {
  if (tokenizer.vocabSize !== config.vocabSize) throw new ModelFileError(`${source}: vocab_size ${tokenizer.vocabSize} is not the config's ${config.vocabSize}`);
}
