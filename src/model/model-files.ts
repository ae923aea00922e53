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
import { ModelFileError, type ModelConfig } from './model-config';
import { checkTokenizerFits, parseJsonFile, parseModelConfigFile, parseReference, parseTokenizerFile, type ModelReference, type ModelRun } from './model-run';
import { loadModelWeights, type ModelWeights } from './model-weights';
import { DOC_SEPARATOR, tokenStream, type BpeTokenizer } from './tokenizer';

export type { ModelReference, ModelRun, ReferencePosition } from './model-run';

/** The model folder and its run folder, relative to the repository root (where `npm run cli` runs). */
export const DEFAULT_MODEL_DIR = 'model';
export const DEFAULT_RUN_DIR = 'model/run';

function readJson(path: string, what: string): unknown {
  if (!existsSync(path)) throw new ModelFileError(`${path} not found (${what}); run from the repository root or pass --model/--run`);
  return parseJsonFile(readFileSync(path, 'utf8'), path);
}

/** The model's config (model/config.json → "model") and its quick-slice length. */
export function readModelConfig(modelDir = DEFAULT_MODEL_DIR): { config: ModelConfig; quickTokens: number } {
  const path = join(modelDir, 'config.json');
  return parseModelConfigFile(readJson(path, 'the model config'), path);
}

/** The tokenizer (model/tokenizer.json) and the sha256 of its bytes. */
export function readTokenizer(modelDir = DEFAULT_MODEL_DIR): { tokenizer: BpeTokenizer; sha256: string } {
  const path = join(modelDir, 'tokenizer.json');
  if (!existsSync(path)) throw new ModelFileError(`${path} not found (the tokenizer); run from the repository root or pass --model`);
  const raw = readFileSync(path);
  return { tokenizer: parseTokenizerFile(raw.toString('utf8'), path), sha256: createHash('sha256').update(raw).digest('hex') };
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
  return parseReference(readJson(path, "the run's PyTorch reference"), path, config, tokenizerSha256, configSource, tokenizerSource);
}

/** The run's weights (reference.json → weights.files in `runDir`), checked against `config`. */
export function readWeights(runDir: string, files: readonly string[], config: ModelConfig): ModelWeights {
  const missing = files.filter((f) => !existsSync(join(runDir, f)));
  if (missing.length) {
    throw new ModelFileError(`${missing.map((f) => join(runDir, f)).join(', ')} not found: the trained weights (${files.length === 1 ? 'one F16 file' : `${files.length} F16 shards`}); python3 model/train.py --out ${runDir} re-creates them (model/README.md)`);
  }
  return loadModelWeights(config, files.map((f) => ({ name: join(runDir, f), bytes: new Uint8Array(readFileSync(join(runDir, f))) })));
}

/** Everything a perplexity or generate run reads from `modelDir` and `runDir`, cross-checked. */
export function readModelRun(modelDir = DEFAULT_MODEL_DIR, runDir = DEFAULT_RUN_DIR): ModelRun {
  const { config, quickTokens } = readModelConfig(modelDir);
  const { tokenizer, sha256 } = readTokenizer(modelDir);
  checkTokenizerFits(tokenizer, config, join(modelDir, 'tokenizer.json'));
  const reference = readReference(runDir, config, sha256, join(modelDir, 'config.json'), join(modelDir, 'tokenizer.json'));
  const weights = readWeights(runDir, reference.weightFiles, config);
  return { config, quickTokens, tokenizer, reference, weights };
}
