/**
 * The trained model's files from disk (Node only: node:fs, node:zlib, node:crypto; the CLI and the
 * tests use it, the rest of src/model/ takes bytes and text):
 *
 *   model/config.json               the model's shape ("model") and the quick slice ("reference.quick_tokens")
 *   model/tokenizer.json            the tokenizer (its sha256 must be the run's tokenizer_sha256)
 *   model/corpus/heldout.txt.gz     the held-out documents, joined by form feeds
 *   model/run/reference.json        PyTorch's numbers for the weights (config, perplexities, prompt logits)
 *   model/run/model*.safetensors    the F16 weights (reference.json → weights.files)
 *
 * Every problem is one ModelFileError (or a TensorFileError for the weights) that names the file and
 * says what to do.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { configDifference, ModelFileError, parseModelConfig, type ModelConfig } from './model-config';
import { loadModelWeights, type ModelWeights } from './model-weights';
import { BpeTokenizer, DOC_SEPARATOR, tokenStream, TokenizerError, type TokenizerSpec } from './tokenizer';

/** The model folder and its run folder, relative to the repository root (where `npm run cli` runs). */
export const DEFAULT_MODEL_DIR = 'model';
export const DEFAULT_RUN_DIR = 'model/run';

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

function readJson(path: string, what: string): unknown {
  if (!existsSync(path)) throw new ModelFileError(`${path} not found (${what}); run from the repository root or pass --model/--run`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ModelFileError(`${path}: not valid JSON (${(e as Error).message})`);
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

/** The model's config (model/config.json → "model") and its quick-slice length. */
export function readModelConfig(modelDir = DEFAULT_MODEL_DIR): { config: ModelConfig; quickTokens: number } {
  const path = join(modelDir, 'config.json');
  const json = readJson(path, 'the model config');
  return { config: parseModelConfig(field(json, 'model', path), path), quickTokens: num(json, 'reference.quick_tokens', path) };
}

/** The tokenizer (model/tokenizer.json) and the sha256 of its bytes. */
export function readTokenizer(modelDir = DEFAULT_MODEL_DIR): { tokenizer: BpeTokenizer; sha256: string } {
  const path = join(modelDir, 'tokenizer.json');
  if (!existsSync(path)) throw new ModelFileError(`${path} not found (the tokenizer); run from the repository root or pass --model`);
  const raw = readFileSync(path);
  try {
    return { tokenizer: new BpeTokenizer(JSON.parse(raw.toString('utf8')) as TokenizerSpec), sha256: createHash('sha256').update(raw).digest('hex') };
  } catch (e) {
    if (e instanceof TokenizerError || e instanceof SyntaxError) throw new ModelFileError(`${path}: ${e.message}`);
    throw e;
  }
}

/** The held-out documents (model/corpus/heldout.txt.gz, split at form feeds). */
export function readHeldoutDocs(modelDir = DEFAULT_MODEL_DIR): string[] {
  const path = join(modelDir, 'corpus', 'heldout.txt.gz');
  if (!existsSync(path)) throw new ModelFileError(`${path} not found (the held-out text); run from the repository root or pass --model`);
  return gunzipSync(readFileSync(path)).toString('utf8').split(DOC_SEPARATOR);
}

/** The held-out token stream: `<bos> doc <eos>` per held-out document (model/train.py token_stream). */
export function readHeldoutStream(tokenizer: BpeTokenizer, modelDir = DEFAULT_MODEL_DIR): Int32Array {
  return tokenStream(tokenizer, readHeldoutDocs(modelDir));
}

/** reference.json of a run, checked against the model's config and tokenizer. */
export function readReference(runDir: string, config: ModelConfig, tokenizerSha256: string, configSource = 'model/config.json', tokenizerSource = 'model/tokenizer.json'): ModelReference {
  const path = join(runDir, 'reference.json');
  const json = readJson(path, "the run's PyTorch reference");
  const runConfig = parseModelConfig(field(json, 'config', path), `${path} config`);
  const diff = configDifference(runConfig, config);
  if (diff) throw new ModelFileError(`${path} was made for another model than ${configSource} describes (${diff}); re-train (model/README.md) or restore the matching config`);
  const sha = field(json, 'tokenizer_sha256', path);
  if (sha !== tokenizerSha256) throw new ModelFileError(`${path}: the run's tokenizer (sha256 ${String(sha).slice(0, 16)}…) is not ${tokenizerSource} (${tokenizerSha256.slice(0, 16)}…)`);
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
    tokenizerSha256: tokenizerSha256,
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

/** The run's weights (reference.json → weights.files in `runDir`), checked against `config`. */
export function readWeights(runDir: string, files: readonly string[], config: ModelConfig): ModelWeights {
  const missing = files.filter((f) => !existsSync(join(runDir, f)));
  if (missing.length) {
    throw new ModelFileError(`${missing.map((f) => join(runDir, f)).join(', ')} not found: the trained weights (${files.length === 1 ? 'one F16 file' : `${files.length} F16 shards`}); python3 model/train.py --out ${runDir} re-creates them (model/README.md)`);
  }
  return loadModelWeights(config, files.map((f) => ({ name: join(runDir, f), bytes: new Uint8Array(readFileSync(join(runDir, f))) })));
}

/** Everything a perplexity or generate run reads: config, tokenizer, reference and weights, cross-checked. */
export interface ModelRun {
  config: ModelConfig;
  quickTokens: number;
  tokenizer: BpeTokenizer;
  reference: ModelReference;
  weights: ModelWeights;
}

export function readModelRun(modelDir = DEFAULT_MODEL_DIR, runDir = DEFAULT_RUN_DIR): ModelRun {
  const { config, quickTokens } = readModelConfig(modelDir);
  const { tokenizer, sha256 } = readTokenizer(modelDir);
  if (tokenizer.vocabSize !== config.vocabSize) throw new ModelFileError(`${join(modelDir, 'tokenizer.json')}: vocab_size ${tokenizer.vocabSize} is not the config's ${config.vocabSize}`);
  const reference = readReference(runDir, config, sha256, join(modelDir, 'config.json'), join(modelDir, 'tokenizer.json'));
  const weights = readWeights(runDir, reference.weightFiles, config);
  return { config, quickTokens, tokenizer, reference, weights };
}
