/**
 * Real KV data for the accuracy lab: K and V (and optionally q) of one attention layer, from a
 * `.safetensors` file or a set of `.npy` files. Takes bytes (no file system), so the page and the CLI
 * share it. Every problem raises TensorFileError naming the file, the tensor and what was expected.
 *
 * Tensors (safetensors names; .npy: one file each, k.npy, v.npy, q.npy, context_lens.npy):
 *   k, v           float (F32, F16, BF16 or F64; .npy '<f4', '<f2', '<f8') of shape
 *                    [T, Hkv, D]   layout t_hkv_d (default)
 *                    [Hkv, T, D]   layout hkv_t_d (transformers' past_key_values of one layer, batch
 *                                  axis squeezed): safetensors __metadata__ {"layout": "hkv_t_d"} or the
 *                                  `layout` option (which wins)
 *                  T = Σ context_lens tokens: sequence 0's, then sequence 1's, …
 *   context_lens   optional, integer [S], each ≥ 1, summing to T (default: one sequence of T tokens)
 *   q              optional, float [S, Hq, D], one decode query per sequence, Hq a multiple of Hkv.
 *                  Without it, queries are sampled (seeded) for Hq = Hkv × queryGroup (default 4) by the
 *                  query model of src/workloads/synthetic.ts (sampleQueries): each query leans towards
 *                  a few centred keys of its sequence plus noise, scaled so the softmax entropy is 0.6 of
 *                  ln(length) — attention neither uniform nor one-hot, whatever the keys' norms.
 * Values must be finite and within the float16 range (|x| ≤ 65504), since the fp16 baseline stores
 * them as halves. The softmax scale is 1/√D.
 */
import { parseNpy, type NpyArray } from '../io/npy';
import { parseSafetensors, requireTensor, TensorFileError, type SafetensorsFile } from '../io/safetensors';
import { sampleQueries } from '../workloads/synthetic';
import type { AccuracyWorkload } from './accuracy-lab';

export const KV_FILE_LAYOUTS = ['t_hkv_d', 'hkv_t_d'] as const;
export type KvFileLayout = (typeof KV_FILE_LAYOUTS)[number];

/** Query heads per kv head of sampled queries when the file has no q. */
export const DEFAULT_QUERY_GROUP = 4;
/** Largest magnitude an fp16 cache can store. */
const F16_MAX = 65504;

export interface KvFileOptions {
  /** Axis order of k and v (overrides the safetensors metadata 'layout'; default t_hkv_d). */
  layout?: KvFileLayout;
  /** Hq / Hkv of sampled queries when there is no q (default 4). */
  queryGroup?: number;
  /** Seed of sampled queries (default 0). */
  querySeed?: number;
  /** File (or folder) name for messages and the description. */
  source?: string;
}

export interface KvData extends AccuracyWorkload {
  contextLens: number[];
  /** 'file': q came with the data; 'sampled': made by sampleQueries. */
  querySource: 'file' | 'sampled';
  /** The stored dtype of k, as the file names it ('F16', '<f4', …). */
  kvDtype: string;
  /** The layout k and v were read in. */
  layout: KvFileLayout;
}

/** One tensor as both readers give it. */
interface RawTensor {
  name: string;
  source: string;
  kind: 'float' | 'int';
  dtype: string;
  shape: number[];
  data: Float32Array | Int32Array;
}

function isLayout(text: string): text is KvFileLayout {
  return (KV_FILE_LAYOUTS as readonly string[]).includes(text);
}

/** A plain Uint8Array view (a Node Buffer's slice() would not copy). */
function plainBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function checkFloat(t: RawTensor, expected: string): Float32Array {
  if (t.kind !== 'float') {
    throw new TensorFileError(`tensor '${t.name}' dtype`, `is ${t.dtype}; expected a float dtype (F32, F16, BF16 or F64; .npy '<f4', '<f2', '<f8') holding ${expected}`, t.source);
  }
  return t.data as Float32Array;
}

function checkRank(t: RawTensor, rank: number, expected: string): void {
  if (t.shape.length !== rank) {
    throw new TensorFileError(`tensor '${t.name}' shape`, `is ${shapeText(t.shape)} (rank ${t.shape.length}); expected ${expected}`, t.source);
  }
}

function checkValues(t: RawTensor, data: Float32Array, limit: number): void {
  for (let i = 0; i < data.length; i++) {
    if (!(Math.abs(data[i]) <= limit)) {
      const index: number[] = [];
      let rest = i;
      for (let axis = t.shape.length - 1; axis >= 0; axis--) {
        index.unshift(rest % t.shape[axis]);
        rest = Math.floor(rest / t.shape[axis]);
      }
      const why = Number.isFinite(data[i]) ? `beyond the float16 range (|x| ≤ ${F16_MAX}) the fp16 cache stores` : 'not finite';
      throw new TensorFileError(`tensor '${t.name}' data`, `element ${shapeText(index)} is ${data[i]}: ${why}`, t.source);
    }
  }
}

/** [Hkv, T, D] → [T, Hkv, D]. */
function toTokenMajor(x: Float32Array, hkv: number, tokens: number, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let h = 0; h < hkv; h++) {
    for (let t = 0; t < tokens; t++) out.set(x.subarray((h * tokens + t) * d, (h * tokens + t + 1) * d), (t * hkv + h) * d);
  }
  return out;
}

function buildKvData(k: RawTensor, v: RawTensor, q: RawTensor | undefined, lens: RawTensor | undefined, layout: KvFileLayout, options: KvFileOptions): KvData {
  const axes = layout === 't_hkv_d' ? '[T, Hkv, D]' : '[Hkv, T, D] (layout hkv_t_d)';
  const kData = checkFloat(k, `keys ${axes}`);
  const vData = checkFloat(v, `values ${axes}`);
  checkRank(k, 3, `${axes}; for transformers' past_key_values [batch, Hkv, T, D] take one batch element and layout hkv_t_d`);
  checkRank(v, 3, `${axes}, the shape of k`);
  if (v.shape.some((n, axis) => n !== k.shape[axis])) {
    throw new TensorFileError(`tensor '${v.name}' shape`, `is ${shapeText(v.shape)}; expected ${shapeText(k.shape)}, the shape of k`, v.source);
  }
  const [tokens, hkv, d] = layout === 't_hkv_d' ? k.shape : [k.shape[1], k.shape[0], k.shape[2]];
  if (tokens < 1 || hkv < 1 || d < 1) throw new TensorFileError(`tensor '${k.name}' shape`, `is ${shapeText(k.shape)}; expected ${axes} with every axis ≥ 1`, k.source);
  checkValues(k, kData, F16_MAX);
  checkValues(v, vData, F16_MAX);

  let contextLens = [tokens];
  if (lens) {
    if (lens.kind !== 'int') throw new TensorFileError(`tensor '${lens.name}' dtype`, `is ${lens.dtype}; expected an integer dtype (I32 or I64)`, lens.source);
    checkRank(lens, 1, '[S], one length per sequence');
    contextLens = Array.from(lens.data);
    const bad = contextLens.findIndex((len) => len < 1);
    if (bad >= 0) throw new TensorFileError(`tensor '${lens.name}' data`, `element ${bad} is ${contextLens[bad]}; expected every length ≥ 1`, lens.source);
    const sum = contextLens.reduce((a, b) => a + b, 0);
    if (sum !== tokens) {
      throw new TensorFileError(`tensor '${lens.name}' data`, `sums to ${sum} but k holds T = ${tokens} tokens (shape ${shapeText(k.shape)}, ${layout}); expected the lengths to sum to T`, lens.source);
    }
  }
  const numSeqs = contextLens.length;
  const kRows = layout === 't_hkv_d' ? kData : toTokenMajor(kData, hkv, tokens, d);
  const vRows = layout === 't_hkv_d' ? vData : toTokenMajor(vData, hkv, tokens, d);

  let qData: Float32Array;
  let numQueryHeads: number;
  if (q) {
    qData = checkFloat(q, `queries [S, Hq, D]`);
    checkRank(q, 3, `[S, Hq, D] = [${numSeqs}, Hq, ${d}], one query per sequence`);
    const [s, hq, qd] = q.shape;
    if (s !== numSeqs || qd !== d || hq < 1 || hq % hkv !== 0) {
      throw new TensorFileError(
        `tensor '${q.name}' shape`,
        `is ${shapeText(q.shape)}; expected [${numSeqs}, Hq, ${d}] (S = ${numSeqs} sequences, D = ${d} from k) with Hq a multiple of Hkv = ${hkv}`,
        q.source,
      );
    }
    checkValues(q, qData, Number.MAX_VALUE);
    numQueryHeads = hq;
  } else {
    const group = options.queryGroup ?? DEFAULT_QUERY_GROUP;
    if (!Number.isInteger(group) || group < 1) throw new RangeError(`queryGroup must be an integer ≥ 1, got ${group}`);
    numQueryHeads = hkv * group;
    qData = sampleQueries(kRows, contextLens, numQueryHeads, hkv, d, options.querySeed ?? 0);
  }
  const source = options.source ?? k.source;
  const querySource = q ? 'file' : 'sampled';
  const lensText = numSeqs <= 4 ? contextLens.join(', ') : `${contextLens.slice(0, 4).join(', ')}, …`;
  const qText = q ? 'q from the file' : `q sampled (${numQueryHeads / hkv} per kv head, seed ${options.querySeed ?? 0})`;
  return {
    description: `${source || 'KV data'}: ${numSeqs} seq (lens ${lensText}; ${tokens} tokens), Hq=${numQueryHeads}, Hkv=${hkv}, D=${d}, ${k.dtype}, ${qText}`,
    q: qData,
    k: kRows,
    v: vRows,
    contextLens,
    numQueryHeads,
    numKvHeads: hkv,
    headDim: d,
    attentionScale: 1 / Math.sqrt(d),
    querySource,
    kvDtype: k.dtype,
    layout,
  };
}

function fromSafetensors(file: SafetensorsFile, name: string, source: string): RawTensor | undefined {
  const t = file.tensors.get(name);
  return t && { name, source, kind: t.kind, dtype: t.dtype, shape: t.shape, data: t.data };
}

/**
 * K/V (and optionally q, context_lens) from one safetensors file; see the module comment.
 * @example const data = loadKvSafetensors(readFileSync('layer0.safetensors'), { source: 'layer0.safetensors' });
 */
export function loadKvSafetensors(bytes: Uint8Array, options: KvFileOptions = {}): KvData {
  const source = options.source ?? '';
  const file = parseSafetensors(plainBytes(bytes), source);
  requireTensor(file, 'k', 'float', undefined, source);
  requireTensor(file, 'v', 'float', undefined, source);
  const metaLayout = file.metadata.layout;
  if (metaLayout !== undefined && !isLayout(metaLayout)) {
    throw new TensorFileError("__metadata__['layout']", `is ${JSON.stringify(metaLayout)}; expected ${KV_FILE_LAYOUTS.join(' or ')}`, source);
  }
  const layout = options.layout ?? metaLayout ?? 't_hkv_d';
  return buildKvData(
    fromSafetensors(file, 'k', source)!,
    fromSafetensors(file, 'v', source)!,
    fromSafetensors(file, 'q', source),
    fromSafetensors(file, 'context_lens', source),
    layout,
    options,
  );
}

/** The bytes of each .npy file; k and v are required. */
export interface NpyKvFiles {
  k: Uint8Array;
  v: Uint8Array;
  q?: Uint8Array;
  contextLens?: Uint8Array;
}

/**
 * K/V (and optionally q, context_lens) from .npy files; see the module comment. Messages name the
 * files `<source>/k.npy` etc.
 */
export function loadKvNpy(files: NpyKvFiles, options: KvFileOptions = {}): KvData {
  const prefix = options.source ? `${options.source}/` : '';
  const read = (name: string, fileName: string, bytes: Uint8Array | undefined): RawTensor | undefined => {
    if (bytes === undefined) return undefined;
    const source = `${prefix}${fileName}`;
    const array: NpyArray = parseNpy(plainBytes(bytes), source);
    return { name, source, kind: array.kind, dtype: array.dtype, shape: array.shape, data: array.data };
  };
  return buildKvData(
    read('k', 'k.npy', files.k)!,
    read('v', 'v.npy', files.v)!,
    read('q', 'q.npy', files.q),
    read('context_lens', 'context_lens.npy', files.contextLens),
    options.layout ?? 't_hkv_d',
    { ...options, source: options.source ?? 'npy files' },
  );
}
