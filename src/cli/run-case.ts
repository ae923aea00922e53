/**
 * `run-case`: one decode-attention case file through the real kernels, for outside checks such as
 * `tools/saw_int4_reference.py compare`. The contract (input, output, exit codes) is in RUN_CASE_USAGE.
 *
 * The work is split so the checks can be tested without a GPU:
 *   parseRunCase(bytes, source)  pure: parses and validates everything, returns a typed RunCase
 *   runCase(ctx, runCase)        GPU: paged cache with shuffled pages, one append per sequence, then
 *                                one attention call over all sequences → out [S, Hq, D] f32
 */
import { readFileSync } from 'node:fs';
import { checkOutputFile, CliInputError, writeFileAtomic } from './output-file';
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { KvConfigError, PagedKvCache, resolveKvCacheConfig, type KvCacheConfig } from '../cache/paged-kv-cache';
import { describeGpu, GpuError, type GpuContext } from '../gpu/gpu-context';
import { parseSafetensors, requireTensor, TensorFileError, writeSafetensors, type SafetensorsFile } from '../io/safetensors';
import { isKvMethod, KV_METHODS, MAX_PAGE_SIZE, MIN_PAGE_SIZE, type KvMethod } from '../layout';
import { roundToF16 } from '../reference/f16';
import { randomSigns, rotate } from '../reference/hadamard';
import { DECODE_KERNEL_KINDS, isDecodeKernelKind, type DecodeKernelKind } from '../kernels/decode-tuning';
import type { CliCommand } from './commands';

/** Seed of the physical page order: pages are always shuffled, as docs/design.md, "Paged layout" asks of tests. */
export const RUN_CASE_PAGE_SHUFFLE_SEED = 0x5eed;

/** Sign seeds are taken modulo 2^32 by SeededRandom, so only [0, 2^32) names distinct signs. */
const MAX_SIGN_SEED = 2 ** 32 - 1;

export const RUN_CASE_USAGE = `Usage: run-case --in CASE.safetensors --out OUT.safetensors [--kernel K] [--disable-feature subgroups]

Runs one decode-attention case through the real kernels: K and V go through the cache-write kernel
into a paged cache with shuffled pages (one append per sequence), then one attention call covers all
sequences, with the default decode plan or the kernel --kernel names (${DECODE_KERNEL_KINDS.join(', ')};
matrix runs on tensor cores where the adapter has subgroup matrices, else its software step). Check the output with: tools/saw_int4_reference.py compare --case CASE --got OUT

Input (little-endian safetensors; tools/saw_int4_reference.py make-case writes them):
  q              F32 [S, Hq, D]      one query token per sequence
  k, v           F32 [T, Hkv, D]     the tokens of sequence 0, then of sequence 1, ...
  context_lens   I32 or I64 [S]      lengths >= 1 summing to T; Hq a multiple of Hkv
  __metadata__ (string values):
    method               ${KV_METHODS.join(' | ')}
    hadamard_block       integer, a power of two dividing D (used by int4-hadamard)
    rotate_v             true | false (used by int4-hadamard; the other methods ignore it)
    page_size            integer in [${MIN_PAGE_SIZE}, ${MAX_PAGE_SIZE}], tokens per page
    scale                optional softmax scale, a finite number (default 1/sqrt(D))
    hadamard_sign_seed   optional integer in [0, ${MAX_SIGN_SEED}]: random +-1 signs before the
                         rotation (int4-hadamard only)
Output: out F32 [S, Hq, D]; __metadata__ method and adapter.
Exit codes: 0 written; 2 bad flags, input or metadata; 1 GPU failure. On failure --out is not written.`;

/** A validated case: everything runCase needs, and nothing it has to check again. */
export interface RunCase {
  /** The file name, for messages. */
  source: string;
  method: KvMethod;
  numSeqs: number;
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
  /** [S] tokens per sequence, each ≥ 1. */
  contextLens: number[];
  /** Σ contextLens. */
  totalTokens: number;
  /** [S, Hq, D] f32 */
  q: Float32Array;
  /** [T, Hkv, D] f32, sequence 0's tokens first */
  k: Float32Array;
  /** [T, Hkv, D] f32 */
  v: Float32Array;
  /** Softmax scale. */
  scale: number;
  /** The cache to build (validated by resolveKvCacheConfig): pool sized for the case, pages shuffled. */
  cacheConfig: KvCacheConfig;
}

// ------------------------------------------------------------------------------------------------
// parsing and validation (no GPU)

const INTEGER_TEXT = /^[+-]?\d+$/;
const DECIMAL_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function metadataField(file: SafetensorsFile, key: string, expected: string, source: string): string {
  const text = file.metadata[key];
  if (text === undefined) {
    const keys = Object.keys(file.metadata);
    throw new TensorFileError(
      `__metadata__['${key}']`,
      `missing; expected ${expected}. The metadata has: ${keys.length === 0 ? '(nothing)' : keys.join(', ')}`,
      source,
    );
  }
  return text;
}

function integerField(file: SafetensorsFile, key: string, expected: string, source: string, text = metadataField(file, key, expected, source)): number {
  const value = Number(text);
  if (!INTEGER_TEXT.test(text) || !Number.isSafeInteger(value)) {
    throw new TensorFileError(`__metadata__['${key}']`, `is ${JSON.stringify(text)}; expected ${expected}`, source);
  }
  return value;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Multi-index of flat element `i` of a row-major tensor, e.g. "[2, 0, 17]". */
function indexText(i: number, shape: readonly number[]): string {
  const index: number[] = [];
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    index.unshift(i % shape[axis]);
    i = Math.floor(i / shape[axis]);
  }
  return shapeText(index);
}

function requireFinite(name: string, data: Float32Array, shape: readonly number[], source: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new TensorFileError(`tensor '${name}' data`, `element ${indexText(i, shape)} is ${data[i]}; expected finite values`, source);
    }
  }
}

/**
 * The cache stores fp16 values, or an INT4 row's scale and min as f16: a value beyond the f16 range
 * (±65504) would become ±Infinity in the cache and NaN in the output (docs/numeric-contract.md, "Float16 range"). Checked in the
 * domain the cache stores (after the rotation, for rotated rows).
 */
function requireStorable(name: 'k' | 'v', data: Float32Array, c: { method: KvMethod; numKvHeads: number; headDim: number; rotated: boolean; hadamardBlock: number; signs: Int8Array | null }, source: string): void {
  const d = c.headDim;
  const rows = data.length / d;
  for (let row = 0; row < rows; row++) {
    const where = `token ${Math.floor(row / c.numKvHeads)}, kv head ${row % c.numKvHeads}`;
    const x = data.subarray(row * d, (row + 1) * d);
    if (c.method === 'fp16') {
      for (let j = 0; j < d; j++) {
        if (!Number.isFinite(roundToF16(x[j]))) {
          throw new TensorFileError(`tensor '${name}' data`, `${where}, element ${j} is ${x[j]}: beyond the float16 range (|x| <= 65504) the fp16 cache stores`, source);
        }
      }
      continue;
    }
    const stored = c.rotated ? rotate(x, c.hadamardBlock, c.signs) : x;
    let mn = Infinity;
    let mx = -Infinity;
    for (let j = 0; j < d; j++) {
      mn = Math.min(mn, stored[j]);
      mx = Math.max(mx, stored[j]);
    }
    if (!Number.isFinite(roundToF16(mn)) || !Number.isFinite(roundToF16((mx - mn) / 15))) {
      throw new TensorFileError(
        `tensor '${name}' data`,
        `${where}: min ${mn} and max ${mx}${c.rotated ? ' (after the Hadamard rotation)' : ''} give an INT4 min or scale (max - min)/15 ` +
          'beyond the float16 range (|x| <= 65504) the cache stores them in',
        source,
      );
    }
  }
}

/**
 * Parses and validates a run-case file (see RUN_CASE_USAGE) without touching a GPU. Throws
 * TensorFileError (the file: a tensor, shape, dtype, value or metadata field) or KvConfigError (a
 * combination the paged cache does not support), both prefixed with `source`.
 */
export function parseRunCase(bytes: Uint8Array, source: string): RunCase {
  // A plain Uint8Array view: parseSafetensors copies tensor bytes with slice(), which on a Node
  // Buffer (readFileSync) returns a view of the whole underlying pool, not a copy.
  const file = parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), source);
  const q = requireTensor(file, 'q', 'F32', 3, source);
  const k = requireTensor(file, 'k', 'F32', 3, source);
  const v = requireTensor(file, 'v', 'F32', 3, source);
  const lens = requireTensor(file, 'context_lens', ['I32', 'I64'], 1, source);
  const [numSeqs, numQueryHeads, headDim] = q.shape;
  const [totalTokens, numKvHeads, kHeadDim] = k.shape;
  const fail = (part: string, problem: string): never => {
    throw new TensorFileError(part, problem, source);
  };

  if (numSeqs < 1 || numQueryHeads < 1 || headDim < 1) {
    fail("tensor 'q' shape", `is ${shapeText(q.shape)}; expected [S, Hq, D] with S, Hq, D >= 1`);
  }
  if (numKvHeads < 1 || kHeadDim < 1) fail("tensor 'k' shape", `is ${shapeText(k.shape)}; expected [T, Hkv, D] with Hkv, D >= 1`);
  if (kHeadDim !== headDim) {
    fail("tensor 'k' shape", `is ${shapeText(k.shape)}: head dim (last axis) ${kHeadDim} differs from q's ${headDim}; expected [T, Hkv, ${headDim}]`);
  }
  if (v.shape.some((n, axis) => n !== k.shape[axis])) {
    fail("tensor 'v' shape", `is ${shapeText(v.shape)}; expected ${shapeText(k.shape)}, the shape of k ([T, Hkv, D])`);
  }
  if (numQueryHeads % numKvHeads !== 0) {
    fail("tensor 'q' shape", `has Hq = ${numQueryHeads} query heads, not a multiple of Hkv = ${numKvHeads} kv heads (tensor 'k' axis 1); expected Hq % Hkv = 0`);
  }
  if (lens.shape[0] !== numSeqs) {
    fail("tensor 'context_lens' shape", `is ${shapeText(lens.shape)}; expected [${numSeqs}], one length per sequence of q`);
  }
  const contextLens = Array.from(lens.data);
  contextLens.forEach((len, i) => {
    if (len < 1) fail("tensor 'context_lens' data", `element ${i} (sequence ${i}) is ${len}; expected every length >= 1`);
  });
  const sum = contextLens.reduce((a, b) => a + b, 0);
  if (sum !== totalTokens) {
    fail("tensor 'context_lens' data", `sums to ${sum} but k and v hold T = ${totalTokens} tokens; expected the lengths to sum to T`);
  }

  const methodText = metadataField(file, 'method', `one of ${KV_METHODS.join(', ')}`, source);
  if (!isKvMethod(methodText)) {
    fail("__metadata__['method']", `is ${JSON.stringify(methodText)}; expected one of ${KV_METHODS.join(', ')}`);
  }
  const method = methodText as KvMethod;
  const hadamardBlock = integerField(file, 'hadamard_block', 'an integer string such as "128"', source);
  const rotateText = metadataField(file, 'rotate_v', '"true" or "false"', source);
  if (rotateText !== 'true' && rotateText !== 'false') fail("__metadata__['rotate_v']", `is ${JSON.stringify(rotateText)}; expected "true" or "false"`);
  const pageSize = integerField(file, 'page_size', `an integer string in [${MIN_PAGE_SIZE}, ${MAX_PAGE_SIZE}] such as "16"`, source);
  let scale = 1 / Math.sqrt(headDim);
  const scaleText = file.metadata.scale;
  if (scaleText !== undefined) {
    scale = Number(scaleText);
    if (!DECIMAL_TEXT.test(scaleText.trim()) || !Number.isFinite(scale)) {
      fail("__metadata__['scale']", `is ${JSON.stringify(scaleText)}; expected a finite number such as "0.125" (or no scale: 1/sqrt(D))`);
    }
  }
  let hadamardSignSeed: number | null = null;
  const seedText = file.metadata.hadamard_sign_seed;
  if (seedText !== undefined) {
    const expected = `an integer string in [0, ${MAX_SIGN_SEED}]`;
    hadamardSignSeed = integerField(file, 'hadamard_sign_seed', expected, source, seedText);
    if (hadamardSignSeed < 0 || hadamardSignSeed > MAX_SIGN_SEED) fail("__metadata__['hadamard_sign_seed']", `is ${JSON.stringify(seedText)}; expected ${expected}`);
  }

  const rotating = method === 'int4-hadamard';
  const cacheConfig: KvCacheConfig = {
    method,
    headDim,
    numQueryHeads,
    numKvHeads,
    // A spare page per sequence, so the shuffled pages are not just a permutation of the used ones.
    numPages: contextLens.reduce((n, len) => n + Math.ceil(len / pageSize), 0) + numSeqs,
    pageSize,
    // hadamard_block and rotate_v only matter to int4-hadamard (as in tools/saw_int4_reference.py).
    hadamardBlock: rotating ? hadamardBlock : undefined,
    rotateV: rotating && rotateText === 'true',
    hadamardSignSeed,
    pageShuffleSeed: RUN_CASE_PAGE_SHUFFLE_SEED,
  };
  let resolved;
  try {
    resolved = resolveKvCacheConfig(cacheConfig);
  } catch (err) {
    if (err instanceof KvConfigError) throw new KvConfigError(`${source}: the paged KV cache does not take this case: ${err.message}`);
    throw err;
  }

  requireFinite('q', q.data, q.shape, source);
  requireFinite('k', k.data, k.shape, source);
  requireFinite('v', v.data, v.shape, source);
  const signs = hadamardSignSeed === null ? null : randomSigns(headDim, hadamardSignSeed);
  const storage = { method, numKvHeads, headDim, hadamardBlock: resolved.hadamardBlock, signs };
  requireStorable('k', k.data, { ...storage, rotated: rotating }, source);
  requireStorable('v', v.data, { ...storage, rotated: rotating && resolved.rotateV }, source);

  return { source, method, numSeqs, numQueryHeads, numKvHeads, headDim, contextLens, totalTokens, q: q.data, k: k.data, v: v.data, scale, cacheConfig };
}

// ------------------------------------------------------------------------------------------------
// the GPU part

/**
 * Builds the case's paged cache (shuffled pages), appends each sequence's K/V in one call (prefill,
 * through the cache-write kernel), runs one attention call over all sequences.
 * @returns out [S, Hq, D] f32
 */
export async function runCase(ctx: GpuContext, c: RunCase, kernel?: DecodeKernelKind): Promise<Float32Array> {
  const cache = await PagedKvCache.create(ctx, c.cacheConfig);
  try {
    const seqIds = c.contextLens.map(() => cache.createSequence());
    const valuesPerToken = c.numKvHeads * c.headDim;
    let first = 0;
    for (let s = 0; s < c.numSeqs; s++) {
      const rows = [first * valuesPerToken, (first + c.contextLens[s]) * valuesPerToken] as const;
      await cache.append([seqIds[s]], [c.contextLens[s]], c.k.subarray(...rows), c.v.subarray(...rows));
      first += c.contextLens[s];
    }
    return await cache.attention(seqIds, c.q, { scale: c.scale, kernel });
  } finally {
    cache.destroy();
  }
}

// ------------------------------------------------------------------------------------------------
// the command

function usageError(problem: string): number {
  process.stderr.write(`run-case: ${problem}\n${RUN_CASE_USAGE.split('\n')[0]}\n(run-case --help describes the input and output)\n`);
  return 2;
}

export const runCaseCommand: CliCommand = {
  summary: 'run one case file (q, k, v, context_lens) through the paged cache; write the attention output',
  usage: RUN_CASE_USAGE,
  async run(args, env) {
    const { values } = parseArgs({ args, options: { in: { type: 'string' }, out: { type: 'string' }, kernel: { type: 'string' } }, strict: true, allowPositionals: false });
    const kernel = values.kernel;
    if (kernel !== undefined && !isDecodeKernelKind(kernel)) return usageError(`--kernel takes one of ${DECODE_KERNEL_KINDS.join(', ')}, got '${kernel}'`);
    if (values.in === undefined || values.in === '') return usageError('--in CASE.safetensors is required');
    if (values.out === undefined || values.out === '') return usageError('--out OUT.safetensors is required');
    const outPath = resolve(values.out);
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(values.in);
    } catch (err) {
      return usageError(`cannot read --in ${values.in}: ${(err as Error).message}`);
    }
    try {
      checkOutputFile('--out', values.out);
    } catch (err) {
      if (err instanceof CliInputError) return usageError(err.message);
      throw err;
    }

    const parsed = parseRunCase(bytes, basename(values.in));
    const ctx = await env.gpu();
    const out = await runCase(ctx, parsed, kernel);
    const bad = out.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) {
      const shape = [parsed.numSeqs, parsed.numQueryHeads, parsed.headDim];
      throw new GpuError(`the GPU output has ${out[bad]} at ${indexText(bad, shape)} (inputs were checked finite and storable): a kernel failure`, 'internal');
    }
    const file = writeSafetensors(
      { out: { shape: [parsed.numSeqs, parsed.numQueryHeads, parsed.headDim], data: out } },
      { method: parsed.method, adapter: describeGpu(ctx), kernel: kernel ?? 'auto' },
    );
    writeFileAtomic(outPath, file);
    process.stderr.write(
      `run-case: ${parsed.method}, ${parsed.numSeqs} sequences, ${parsed.totalTokens} tokens, Hq ${parsed.numQueryHeads}, ` +
        `Hkv ${parsed.numKvHeads}, D ${parsed.headDim}: wrote out [${parsed.numSeqs}, ${parsed.numQueryHeads}, ${parsed.headDim}] to ${values.out}\n`,
    );
    return 0;
  },
};
