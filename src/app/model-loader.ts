/**
 * The trained model's files for the page, fetched from the page's own server only when the model
 * section first runs (never on page load): model/config.json, model/tokenizer.json,
 * model/run/reference.json and the F16 weights model/run/model.safetensors, and for the perplexity
 * the held-out text model/corpus/heldout.txt.gz (gunzipped in the browser with DecompressionStream).
 * They are `?url` imports, so `vite build` copies them into dist/assets and `vite dev` serves them.
 *
 * The files are checked as the CLI checks them (src/model/model-run.ts, model-weights.ts): every
 * problem is one ModelFileError naming the file: not on the server (an HTTP error, or the server's
 * fallback web page instead of the file), larger than the page reads, not valid, or made for another
 * model than the others.
 */
import { TensorFileError } from '../io/safetensors';
import { formatBytes } from '../kernels/gpu-buffers';
import { ModelFileError } from '../model/model-config';
import { checkTokenizerFits, parseJsonFile, parseModelConfigFile, parseReference, parseTokenizerFile, type ModelRun } from '../model/model-run';
import { loadModelWeights } from '../model/model-weights';
import { DOC_SEPARATOR, tokenStreamPrefix } from '../model/tokenizer';
import configUrl from '../../model/config.json?url';
import tokenizerUrl from '../../model/tokenizer.json?url';
import referenceUrl from '../../model/run/reference.json?url';
import weightsUrl from '../../model/run/model.safetensors?url';
import heldoutUrl from '../../model/corpus/heldout.txt.gz?url';

/** A model file the page fetches: its path in the repository (for messages), its URL in the build, what it is and the most bytes the page reads. */
export interface ModelAsset {
  path: string;
  url: string;
  what: string;
  maxBytes: number;
}

const MIB = 2 ** 20;

/** The weights the page reads at most: model/config.json allows 45 MB of outputs; a tab holds this twice (bytes, then words). */
export const MAX_WEIGHTS_BYTES = 64 * MIB;
/** JSON and the gzipped held-out text (each well under 1 MiB today). */
export const MAX_TEXT_FILE_BYTES = 8 * MIB;

export const MODEL_ASSETS = {
  config: { path: 'model/config.json', url: configUrl, what: "the model's config", maxBytes: MAX_TEXT_FILE_BYTES },
  tokenizer: { path: 'model/tokenizer.json', url: tokenizerUrl, what: 'the tokenizer', maxBytes: MAX_TEXT_FILE_BYTES },
  reference: { path: 'model/run/reference.json', url: referenceUrl, what: "PyTorch's reference numbers of the run", maxBytes: MAX_TEXT_FILE_BYTES },
  weights: { path: 'model/run/model.safetensors', url: weightsUrl, what: 'the F16 weights', maxBytes: MAX_WEIGHTS_BYTES },
  heldout: { path: 'model/corpus/heldout.txt.gz', url: heldoutUrl, what: 'the held-out text', maxBytes: MAX_TEXT_FILE_BYTES },
} as const satisfies Record<string, ModelAsset>;

/** Bytes so far of an asset's download (total: from Content-Length, null when the server does not say). */
export type FetchProgress = (asset: ModelAsset, bytes: number, total: number | null) => void;


/** The file a refused size names: its size (`atLeast`: read so far, when the server did not say), the limit, and why there is one. */
export function tooBigMessage(asset: ModelAsset, bytes: number, atLeast = false): string {
  return `${asset.path} (${asset.what}) is ${atLeast ? 'more than ' : ''}${formatBytes(bytes)}; the page reads at most ${formatBytes(asset.maxBytes)} of it. ` +
    'A file this size is not the one this build was made with; for a larger model use the CLI (npm run cli -- generate).';
}

/**
 * The bytes of `asset`, read in chunks (progress after each) and refused by size before or while
 * they arrive. An aborted `signal` stops the download with an AbortError.
 */
export async function fetchAsset(asset: ModelAsset, signal: AbortSignal, onProgress?: FetchProgress): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(asset.url, { signal });
  } catch (e) {
    if (signal.aborted) throw e;
    throw new ModelFileError(`${asset.path} (${asset.what}) could not be fetched from this page's server: ${(e as Error).message}`);
  }
  if (!response.ok) {
    throw new ModelFileError(`${asset.path} (${asset.what}) is not on this page's server (HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''} for ${response.url || asset.url})`);
  }
  // A server that does not have a file may answer with its index page (a single-page-app fallback).
  if (/text\/html/i.test(response.headers.get('content-type') ?? '') && !asset.url.startsWith('data:')) {
    throw new ModelFileError(`${asset.path} (${asset.what}) is not on this page's server: it answered ${asset.url} with a web page instead of the file`);
  }
  const length = Number(response.headers.get('content-length'));
  const total = Number.isFinite(length) && length > 0 ? length : null;
  if (total !== null && total > asset.maxBytes) throw new ModelFileError(tooBigMessage(asset, total));
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.byteLength > asset.maxBytes) throw new ModelFileError(tooBigMessage(asset, bytes.byteLength));
    return bytes;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  onProgress?.(asset, 0, total);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    received += value.byteLength;
    if (received > asset.maxBytes) {
      await reader.cancel();
      throw new ModelFileError(tooBigMessage(asset, received, true));
    }
    chunks.push(value);
    onProgress?.(asset, received, total);
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return bytes;
}

/** The lower-case hex sha256 of `bytes`, or null where the browser offers no digest (pages served over plain http from another host). */
async function sha256Hex(bytes: Uint8Array): Promise<string | null> {
  if (typeof crypto === 'undefined' || !crypto.subtle) return null;
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

const utf8 = (bytes: Uint8Array) => new TextDecoder('utf-8').decode(bytes);

/**
 * Fetches and checks the model (config, tokenizer, reference, weights), as model-files.ts
 * readModelRun does on disk. The page ships one weights file: a reference naming others is refused.
 */
export async function fetchModelRun(signal: AbortSignal, onProgress?: FetchProgress): Promise<ModelRun> {
  const a = MODEL_ASSETS;
  const [configBytes, tokenizerBytes, referenceBytes] = await Promise.all([a.config, a.tokenizer, a.reference].map((asset) => fetchAsset(asset, signal)));
  const { config, quickTokens } = parseModelConfigFile(parseJsonFile(utf8(configBytes), a.config.path), a.config.path);
  const tokenizer = parseTokenizerFile(utf8(tokenizerBytes), a.tokenizer.path);
  checkTokenizerFits(tokenizer, config, a.tokenizer.path);
  const reference = parseReference(parseJsonFile(utf8(referenceBytes), a.reference.path), a.reference.path, config, await sha256Hex(tokenizerBytes), a.config.path, a.tokenizer.path);
  const shipped = a.weights.path.split('/').pop()!;
  if (reference.weightFiles.length !== 1 || reference.weightFiles[0] !== shipped) {
    throw new ModelFileError(`${a.reference.path}: the run's weights are ${reference.weightFiles.join(', ')}; the page ships ${shipped} only (use the CLI for a sharded run)`);
  }
  const weightBytes = await fetchAsset(a.weights, signal, onProgress);
  try {
    const weights = loadModelWeights(config, [{ name: a.weights.path, bytes: weightBytes }]);
    return { config, quickTokens, tokenizer, reference, weights };
  } catch (e) {
    // The message names the file and tensor; the K/V-file help of a TensorFileError does not apply.
    if (e instanceof TensorFileError) throw new ModelFileError(e.message);
    throw e;
  }
}

/** `bytes` gunzipped (DecompressionStream); bytes that are not gzip (a server that already decoded them) as they are. */
export async function gunzip(bytes: Uint8Array, source: string): Promise<Uint8Array> {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  if (typeof DecompressionStream === 'undefined') throw new ModelFileError(`${source}: this browser has no DecompressionStream to unpack it (Chrome 80+, Safari 16.4+, Firefox 113+)`);
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new ModelFileError(`${source}: not a valid gzip file (${(e as Error).message})`);
  }
}

/**
 * The start of the held-out token stream (`<bos> doc <eos>` per document, as model/train.py builds
 * it) long enough for the quick slice: `quickTokens` inputs and their next tokens.
 */
export async function fetchQuickStream(run: ModelRun, signal: AbortSignal): Promise<Int32Array> {
  const asset = MODEL_ASSETS.heldout;
  const text = utf8(await gunzip(await fetchAsset(asset, signal), asset.path));
  const stream = tokenStreamPrefix(run.tokenizer, text.split(DOC_SEPARATOR), run.quickTokens + 1);
  if (stream.length < run.quickTokens + 1) {
    throw new ModelFileError(`${asset.path}: its ${stream.length} tokens are fewer than the quick slice's ${run.quickTokens} inputs and their targets`);
  }
  if (run.reference.quick.targets !== run.quickTokens) {
    throw new ModelFileError(`${MODEL_ASSETS.reference.path}: its quick slice has ${run.reference.quick.targets} targets; ${MODEL_ASSETS.config.path} says ${run.quickTokens}`);
  }
  return stream;
}
