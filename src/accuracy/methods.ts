/**
 * The method zoo of the accuracy lab: named, selectable KV-cache methods, each mapping to one
 * PagedKvCache configuration (so every method runs the real kernels), with a display name and its
 * cache footprint.
 *
 * Ids (case-sensitive):
 *   fp16                          K and V as IEEE half (the baseline)
 *   int4                          token-wise INT4, no rotation (naive)
 *   int4-hadamard-b{B}[-kv][-signs]
 *                                 INT4 after a block-diagonal Hadamard rotation of K with block B in
 *                                 16 | 32 | 64 | 128; `-kv`: V rotated as well (rotateV); `-signs`:
 *                                 random ±1 signs before H (hadamardSignSeed = DEFAULT_SIGN_SEED)
 *   int4-hadamard                 alias of int4-hadamard-b128 (the paper's recommended setting)
 *   int4-q8, int4-hadamard-b{B}[-kv][-signs]-q8
 *                                 the same caches, scored with the query quantized to int8 per head
 *                                 (queryInt8: faster INT4 decode where f32 arithmetic bounds it);
 *                                 int4-hadamard-q8 is int4-hadamard-b128-q8
 *   int8                          token-wise INT8 (codes 0..255, f16 scale/min per row), beyond the paper
 *   int4-g32                      INT4 with one f16 scale/min per 32 channels (5 bits/element), beyond
 *                                 the paper
 *
 * Groups (expand to several ids, for `--methods`): see METHOD_GROUPS.
 *
 * @example
 *   const spec = methodSpec('int4-hadamard-b64-kv');
 *   const config = cacheConfigFor(spec, { headDim: 128, numQueryHeads: 32, numKvHeads: 8, numPages: 64 });
 *   bytesPerToken(spec, { headDim: 128, numKvHeads: 8 }); // 2 × 8 × (16 + 1) × 4 = 1088
 */
import type { KvCacheConfig } from '../cache/paged-kv-cache';
import { cacheLayout, HADAMARD_BLOCKS, type KvMethod } from '../layout';
import { randomSigns } from '../reference/hadamard';
import type { MethodConfig } from '../reference/kv-methods';

/** Seed of the random ±1 signs of every `-signs` method (any fixed value; the paper's code uses none). */
export const DEFAULT_SIGN_SEED = 0x51a7;

export interface MethodSpec {
  /** Canonical id, e.g. 'int4-hadamard-b128-kv-signs'. */
  readonly id: string;
  /** For tables and plots, e.g. 'INT4 + Hadamard B=128 (K+V, signs)'. */
  readonly displayName: string;
  /** The cache-write/decode kernels it runs. */
  readonly kvMethod: KvMethod;
  /** Hadamard block B (rotating methods), else null. */
  readonly hadamardBlock: number | null;
  /** V rotated as well as K. */
  readonly rotateV: boolean;
  /** Seed of the random signs before the rotation, or null for none. */
  readonly signSeed: number | null;
  /** K is scored with the query quantized to int8 per head (the `-q8` methods). */
  readonly queryInt8: boolean;
}

/** The shape facts that decide a method's footprint. */
export interface FootprintShape {
  headDim: number;
  numKvHeads: number;
}

const FIXED: Record<string, MethodSpec> = {
  fp16: { id: 'fp16', displayName: 'FP16', kvMethod: 'fp16', hadamardBlock: null, rotateV: false, signSeed: null, queryInt8: false },
  int4: { id: 'int4', displayName: 'INT4 (naive)', kvMethod: 'int4', hadamardBlock: null, rotateV: false, signSeed: null, queryInt8: false },
  'int4-q8': { id: 'int4-q8', displayName: 'INT4 (naive), int8 query', kvMethod: 'int4', hadamardBlock: null, rotateV: false, signSeed: null, queryInt8: true },
  int8: { id: 'int8', displayName: 'INT8', kvMethod: 'int8', hadamardBlock: null, rotateV: false, signSeed: null, queryInt8: false },
  'int4-g32': { id: 'int4-g32', displayName: 'INT4, scale per 32 channels', kvMethod: 'int4-g32', hadamardBlock: null, rotateV: false, signSeed: null, queryInt8: false },
};

const HADAMARD_ID = /^int4-hadamard-b(\d+)(-kv)?(-signs)?(-q8)?$/;

function hadamardSpec(block: number, rotateV: boolean, signs: boolean, queryInt8 = false): MethodSpec {
  const extras = [rotateV ? 'K+V' : '', signs ? 'signs' : '', queryInt8 ? 'int8 query' : ''].filter(Boolean).join(', ');
  return {
    id: `int4-hadamard-b${block}${rotateV ? '-kv' : ''}${signs ? '-signs' : ''}${queryInt8 ? '-q8' : ''}`,
    displayName: `INT4 + Hadamard B=${block}${extras ? ` (${extras})` : ''}`,
    kvMethod: 'int4-hadamard',
    hadamardBlock: block,
    rotateV,
    signSeed: signs ? DEFAULT_SIGN_SEED : null,
    queryInt8,
  };
}

/** Every method of the zoo, in display order (fp16, int4, then Hadamard by block, variants last). */
export const METHOD_IDS: readonly string[] = [
  'fp16',
  'int4',
  ...HADAMARD_BLOCKS.map((b) => `int4-hadamard-b${b}`),
  ...HADAMARD_BLOCKS.map((b) => `int4-hadamard-b${b}-kv`),
  ...HADAMARD_BLOCKS.map((b) => `int4-hadamard-b${b}-signs`),
  ...HADAMARD_BLOCKS.map((b) => `int4-hadamard-b${b}-kv-signs`),
  'int8',
  'int4-g32',
  'int4-q8',
  'int4-hadamard-b128-q8',
];

/** Named groups of ids, accepted wherever a list of methods is. */
export const METHOD_GROUPS: Readonly<Record<string, readonly string[]>> = {
  /** The paper's table: BF16 stand-in, naive INT4, BDR-16/64/128 (K only). */
  paper: ['fp16', 'int4', 'int4-hadamard-b16', 'int4-hadamard-b64', 'int4-hadamard-b128'],
  /** Error vs Hadamard block size, K only. */
  blocks: ['fp16', 'int4', ...HADAMARD_BLOCKS.map((b) => `int4-hadamard-b${b}`)],
  /** The rotation variants at B=128: K only vs K+V, with and without random signs. */
  variants: ['fp16', 'int4', 'int4-hadamard-b128', 'int4-hadamard-b128-kv', 'int4-hadamard-b128-signs', 'int4-hadamard-b128-kv-signs'],
  /** Beyond the paper: more bits (INT8) or finer scales (INT4 per 32 channels) vs the rotation. */
  extra: ['fp16', 'int8', 'int4', 'int4-g32', 'int4-hadamard-b128'],
  /** What the int8 query (faster INT4 decode) costs: each INT4 method with and without it. */
  q8: ['fp16', 'int4', 'int4-q8', 'int4-hadamard-b128', 'int4-hadamard-b128-q8'],
  all: METHOD_IDS,
};

/** A list of ids or groups that names nothing the zoo knows. */
export class UnknownMethodError extends Error {
  override readonly name = 'UnknownMethodError';
}

/** The spec of one id (or the alias 'int4-hadamard'); throws UnknownMethodError listing what exists. */
export function methodSpec(id: string): MethodSpec {
  if (Object.hasOwn(FIXED, id)) return FIXED[id];
  if (id === 'int4-hadamard') return hadamardSpec(128, false, false);
  if (id === 'int4-hadamard-q8') return hadamardSpec(128, false, false, true);
  const match = HADAMARD_ID.exec(id);
  if (match) {
    const block = Number(match[1]);
    if ((HADAMARD_BLOCKS as readonly number[]).includes(block)) return hadamardSpec(block, match[2] !== undefined, match[3] !== undefined, match[4] !== undefined);
    throw new UnknownMethodError(`method '${id}': Hadamard block ${block} is not offered; use one of ${HADAMARD_BLOCKS.join(', ')}`);
  }
  throw new UnknownMethodError(
    `unknown method '${id}'; known: fp16, int4, int4-q8, int8, int4-g32, int4-hadamard-b{${HADAMARD_BLOCKS.join(',')}}[-kv][-signs][-q8] ` +
      `(e.g. int4-hadamard-b128-kv), or a group: ${Object.keys(METHOD_GROUPS).join(', ')}`,
  );
}

/**
 * Expands a list of ids and group names (e.g. ['paper', 'int4-hadamard-b32-kv']) into specs, in
 * order, without duplicates. Throws UnknownMethodError for an unknown entry or an empty list.
 */
export function resolveMethods(entries: readonly string[]): MethodSpec[] {
  const ids = entries.flatMap((entry) => (Object.hasOwn(METHOD_GROUPS, entry) ? METHOD_GROUPS[entry] : [entry]));
  if (ids.length === 0) throw new UnknownMethodError(`no methods given; use ids or a group (${Object.keys(METHOD_GROUPS).join(', ')})`);
  const specs = new Map<string, MethodSpec>();
  for (const id of ids) {
    const spec = methodSpec(id);
    if (!specs.has(spec.id)) specs.set(spec.id, spec);
  }
  return [...specs.values()];
}

/** Whether the method can run at this head_dim (its Hadamard block must divide it). */
export function methodFitsHeadDim(spec: MethodSpec, headDim: number): boolean {
  return spec.hadamardBlock === null || (spec.hadamardBlock <= headDim && headDim % spec.hadamardBlock === 0);
}

/** The PagedKvCache configuration that runs `spec` (the caller chooses pool and page size). */
export function cacheConfigFor(
  spec: MethodSpec,
  shape: Omit<KvCacheConfig, 'method' | 'hadamardBlock' | 'rotateV' | 'hadamardSignSeed'>,
): KvCacheConfig {
  const config: KvCacheConfig = { ...shape, method: spec.kvMethod, ...(spec.queryInt8 ? { queryInt8: true } : {}) };
  if (spec.hadamardBlock !== null) {
    config.hadamardBlock = spec.hadamardBlock;
    config.rotateV = spec.rotateV;
    config.hadamardSignSeed = spec.signSeed;
  }
  return config;
}

/** The float64 reference's view of the method (src/reference/kv-methods.ts). */
export function referenceConfigFor(spec: MethodSpec, headDim: number): MethodConfig {
  return {
    method: spec.kvMethod,
    hadamardBlock: spec.hadamardBlock ?? headDim,
    rotateV: spec.rotateV,
    signs: spec.signSeed === null ? null : randomSigns(headDim, spec.signSeed),
    queryInt8: spec.queryInt8,
  };
}

/** Cache bytes of one token: K and V, all kv heads, scale/min included (from src/layout.ts). */
export function bytesPerToken(spec: MethodSpec, shape: FootprintShape): number {
  return cacheLayout({ method: spec.kvMethod, headDim: shape.headDim, numKvHeads: shape.numKvHeads, pageSize: 1, numPages: 1 }).bytesPerToken;
}

/** Stored bits per K or V element, scale/min included (4.25 for INT4 at D = 128, 16 for FP16). */
export function bitsPerElement(spec: MethodSpec, headDim: number): number {
  return (bytesPerToken(spec, { headDim, numKvHeads: 1 }) * 8) / (2 * headDim);
}
