/**
 * Parsing of the page's K/V files, without the DOM, so that it runs in a worker (src/app/kv-file-worker.ts)
 * off the page's main thread: the library's kv-file loaders (src/accuracy/kv-file.ts), a size limit checked
 * before anything is read, and the head_dim the kernels take.
 */
import { ACCURACY_HOST_BYTES_PER_ELEMENT } from '../accuracy/accuracy-lab';
import { loadKvNpy, loadKvSafetensors, type KvData, type KvFileLayout } from '../accuracy/kv-file';
import { TensorFileError } from '../io/safetensors';
import { headDimProblem } from './config';

export const NPY_NAMES = { 'k.npy': 'k', 'v.npy': 'v', 'q.npy': 'q', 'context_lens.npy': 'contextLens' } as const;

/**
 * Largest K/V file(s) the page reads: 256 MiB. An accuracy run holds HOST_BYTES_PER_FILE_BYTE times
 * the f32 K/V (ACCURACY_HOST_BYTES_PER_ELEMENT per 4-byte element), which is what a browser tab can
 * take; larger layers run through `npm run cli -- accuracy --file`.
 */
export const MAX_KV_FILE_BYTES = 256 * 2 ** 20;
const HOST_BYTES_PER_FILE_BYTE = ACCURACY_HOST_BYTES_PER_ELEMENT / 4;

/** Throws TensorFileError (before anything is read) when the files together exceed `limit` bytes. */
export function refuseLarge(files: readonly Pick<File, 'name' | 'size'>[], limit = MAX_KV_FILE_BYTES): void {
  const total = files.reduce((n, f) => n + f.size, 0);
  if (total > limit) {
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    throw new TensorFileError('files', `need ${mib(total)}, the page reads at most ${mib(limit)} (an accuracy run holds about ${HOST_BYTES_PER_FILE_BYTE}× the K/V); try fewer tokens, or the CLI: npm run cli -- accuracy --file`, files.map((f) => f.name).join(' + '));
  }
}

/** Parses the picked files with the library's loaders; throws TensorFileError for what it cannot use. */
export async function parseKvFiles(files: readonly File[], layout: KvFileLayout | undefined, querySeed: number): Promise<{ data: KvData; name: string }> {
  const parsed = await parseWithLoaders(files, layout, querySeed);
  const problem = headDimProblem(parsed.data.headDim);
  if (problem) throw new TensorFileError("tensor 'k' last axis", problem, parsed.name);
  return parsed;
}

async function parseWithLoaders(files: readonly File[], layout: KvFileLayout | undefined, querySeed: number): Promise<{ data: KvData; name: string }> {
  refuseLarge(files);
  const safetensors = files.find((f) => f.name.endsWith('.safetensors'));
  if (safetensors) {
    const bytes = new Uint8Array(await safetensors.arrayBuffer());
    return { data: loadKvSafetensors(bytes, { layout, querySeed, source: safetensors.name }), name: safetensors.name };
  }
  const npy: Partial<Record<(typeof NPY_NAMES)[keyof typeof NPY_NAMES], Uint8Array>> = {};
  for (const file of files) {
    const key = NPY_NAMES[file.name as keyof typeof NPY_NAMES];
    if (key) npy[key] = new Uint8Array(await file.arrayBuffer());
  }
  if (!npy.k || !npy.v) {
    const names = files.map((f) => f.name).join(', ') || 'no file';
    throw new TensorFileError('files', `got ${names}; expected one .safetensors file, or k.npy and v.npy (optional q.npy, context_lens.npy) picked together`, 'your selection');
  }
  const name = files.filter((f) => f.name in NPY_NAMES).map((f) => f.name).join(' + ');
  return { data: loadKvNpy({ k: npy.k, v: npy.v, q: npy.q, contextLens: npy.contextLens }, { layout, querySeed, source: 'dropped files' }), name };
}

