/**
 * Seeded synthetic KV-cache workloads that imitate the statistics of real LLM keys and values.
 *
 * Pure TypeScript (no WebGPU): the page, the CLI and the tests call `generateWorkload` and feed the
 * result to the CPU reference and the GPU kernels alike. Same spec (seed included) → bit-identical
 * output on every platform (only +, ×, sqrt, exp, log, sin, cos in float64, then one f32 rounding).
 *
 * Layouts (row-major, f32):
 *   q  // [num_seqs, num_query_heads, head_dim]  one decode query per sequence
 *   k  // [total_tokens, num_kv_heads, head_dim]  tokens of seq 0, then seq 1, …
 *   v  // [total_tokens, num_kv_heads, head_dim]
 *
 * Kinds (see WORKLOAD_KINDS for the published statistics each one imitates):
 *   gaussian        i.i.d. N(0, 1) keys and values — the easy case for token-wise INT4.
 *   outlier-keys    a few fixed large-magnitude key channels per kv head (10–20× the median channel
 *                   RMS) plus per-channel offsets and scales; values Gaussian with mild per-token scale.
 *   rope-outliers   outlier-keys with the outliers placed in low-frequency RoPE pairs, then RoPE
 *                   (rotate-half, base 10000) applied at each token's position.
 *   attention-sink  outlier-keys plus a large-norm token 0 in every sequence that queries attend to.
 *
 * Query model (all kinds). For each (sequence, query head) the query direction is
 *   dir = normalize(ρ · d̂ + √(1 − ρ²) · n̂),
 * where d̂ is the normalized, weighted sum of a few ("anchor") mean-centred keys of that sequence's kv
 * head and n̂ an isotropic random unit vector; ρ = queryKeyCorrelation (default 0.7). The query is then
 * q = α · dir with α found by bisection so that the entropy of softmax(q·kⱼ/√D) over the sequence is
 * queryEntropyFraction (default 0.6) of the uniform maximum ln(L): attention is neither uniform nor
 * one-hot (at L = 1024 that is e^4.2 ≈ 60 effectively attended tokens), and the anchor tokens stand out
 * the way retrieved tokens do. Queries are in the same (post-RoPE) space as the stored keys: they are
 * what the decode kernel multiplies with K, so no RoPE is applied to them. For attention-sink the
 * entropy is calibrated on tokens 1…L−1, then a component along the sink direction is added so that
 * token 0 receives sinkAttentionShare (default 0.5) of the attention.
 *
 * Measured with the defaults (Hq 8, Hkv 2, D 128, ~800 tokens, 10 seeds; test/workloads.test.ts):
 * naive per-token INT4 keys lose 0.10 (relative L2) on gaussian, 0.18–0.24 on outlier-keys and
 * rope-outliers, and 0.52–0.70 on their ordinary (non-outlier) channels; a full-head Hadamard rotation
 * brings that to ~0.08 / ~0.22, and cuts the attention-output error 2–4×. On attention-sink the rotation
 * helps the ordinary tokens but not the sink itself: its large vector has no outlier channel to spread,
 * and its single logit error moves 50 % of the attention (KVQuant keeps such a token in higher precision).
 */
import { SeededRandom } from '../reference/random';

export type WorkloadKind = 'gaussian' | 'outlier-keys' | 'rope-outliers' | 'attention-sink';

export interface WorkloadKindInfo {
  readonly id: WorkloadKind;
  readonly title: string;
  /** One paragraph: the statistics imitated and where they were published. */
  readonly description: string;
  /** Short citations of the published sources. */
  readonly sources: readonly string[];
}

export const WORKLOAD_KINDS: readonly WorkloadKindInfo[] = [
  {
    id: 'gaussian',
    title: 'Gaussian (easy case)',
    description:
      'Keys and values are i.i.d. N(0, 1). No channel carries more energy than another, so a ' +
      'per-token min/max INT4 grid fits every element about equally well. This is the control: ' +
      'naive INT4 and INT4 with a Hadamard rotation should be nearly equally accurate here, unlike ' +
      'on real KV caches.',
    sources: [],
  },
  {
    id: 'outlier-keys',
    title: 'Outlier key channels',
    description:
      'Keys carry a few fixed outlier channels per kv head (default 4 of 128, scaling with head_dim) ' +
      'whose RMS is 10–20× the median channel RMS, with a consistent sign (large channel mean), plus ' +
      'per-channel offsets and log-normal per-channel scales. This is the channel-wise outlier ' +
      'structure reported for keys by KIVI (Liu et al., 2024) and KVQuant (Hooper et al., 2024). ' +
      'Values are close to Gaussian with a mild per-token scale: KIVI finds values lack channel ' +
      'outliers. A per-token INT4 grid must stretch over the outliers, so the ordinary channels fall ' +
      'into one or two levels; this is where naive INT4 breaks and a Hadamard rotation helps.',
    sources: [
      'Liu et al., 2024, KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache',
      'Hooper et al., 2024, KVQuant: Towards 10 Million Context Length LLM Inference with KV Cache Quantization',
    ],
  },
  {
    id: 'rope-outliers',
    title: 'Outlier keys after RoPE',
    description:
      'As outlier-keys, but the outlier channels are whole rotate-half pairs (i, i + D/2) in the ' +
      'lowest-frequency quarter of RoPE frequencies, and RoPE (base 10000, Llama rotate-half pairing) ' +
      "is applied at each token's position. KVQuant observes that keys have consistent outlier " +
      'channels before RoPE and that RoPE mixes each pair, so after RoPE the outlier energy sits in ' +
      'low-frequency pairs that rotate slowly with position. QuaRot (Ashkboos et al., 2024) motivates ' +
      'orthogonal (Hadamard) rotations precisely to spread such outliers before quantization.',
    sources: [
      'Hooper et al., 2024, KVQuant',
      'Ashkboos et al., 2024, QuaRot: Outlier-Free 4-Bit Inference in Rotated LLMs',
      'Su et al., 2021, RoFormer (RoPE); Touvron et al., 2023, Llama (rotate-half pairing)',
    ],
  },
  {
    id: 'attention-sink',
    title: 'Attention sink',
    description:
      'As outlier-keys, plus token 0 of every sequence has a much larger norm (default 4× the RMS ' +
      'key norm of its head) along a direction that queries share, so it receives a large share of ' +
      'attention (default 50 %) whatever the query asks for. These are the attention sinks of ' +
      'StreamingLLM (Xiao et al., 2024); KVQuant also notes the first token is an outlier that ' +
      'deserves special care. Quantizing the sink token badly shifts every attention distribution.',
    sources: [
      'Xiao et al., 2024, Efficient Streaming Language Models with Attention Sinks (StreamingLLM)',
      'Hooper et al., 2024, KVQuant',
    ],
  },
];

/** Kind-specific knobs; every one has a default (see resolveWorkloadOptions). */
export interface WorkloadOptions {
  /** Outlier key channels per kv head (outlier-keys, rope-outliers, attention-sink). Default
   * max(2, round(D/32)): 4 at D = 128. rope-outliers rounds it up to whole pairs (an even count). */
  outlierChannels?: number;
  /** Outlier channel RMS as a multiple of the median ordinary-channel RMS, drawn uniformly per
   * channel from [lo, hi]. Default [10, 20]. */
  outlierScaleRange?: readonly [number, number];
  /** σ of the log-normal per-channel key scale (ordinary channels). Default 0.3. */
  channelScaleSpread?: number;
  /** σ of the per-channel key offset, in units of that channel's scale. Default 0.5. */
  channelOffsetStd?: number;
  /** σ of the log-normal per-(token, kv head) value scale. Default 0.2 (gaussian kind: none). */
  valueTokenScaleSpread?: number;
  /** RoPE base (rope-outliers). Default 10000. */
  ropeBase?: number;
  /** rope-outliers: also return the keys before RoPE as `kPreRope`. Default false (doubles memory). */
  keepPreRopeKeys?: boolean;
  /** attention-sink: norm of token 0 as a multiple of the RMS key norm of its head. Default 4. */
  sinkNormFactor?: number;
  /** attention-sink: attention probability token 0 receives from every query head. Default 0.5. */
  sinkAttentionShare?: number;
  /** Target softmax entropy as a fraction of ln(L). Default 0.6. */
  queryEntropyFraction?: number;
  /** Weight ρ of the anchor-key direction in the query direction (0 = random query). Default 0.7. */
  queryKeyCorrelation?: number;
  /** Number of anchor keys each query is built from. Default 4. */
  queryAnchorTokens?: number;
}

export interface WorkloadSpec extends WorkloadOptions {
  kind: WorkloadKind;
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Tokens per sequence, each ≥ 1. */
  contextLens: readonly number[];
  /** Used as an unsigned 32-bit integer (seed >>> 0). */
  seed: number;
}

export interface Workload {
  kind: WorkloadKind;
  seed: number;
  q: Float32Array; // [num_seqs, num_query_heads, head_dim] f32
  k: Float32Array; // [total_tokens, num_kv_heads, head_dim] f32, seq 0's tokens then seq 1's …
  v: Float32Array; // [total_tokens, num_kv_heads, head_dim] f32
  contextLens: number[];
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Softmax scale the queries were calibrated with: 1/√D. */
  attentionScale: number;
  /** [num_kv_heads][n] sorted outlier key channels of each head; empty lists for gaussian. */
  keyOutlierChannels: number[][];
  /** rope-outliers with keepPreRopeKeys only: // [total_tokens, num_kv_heads, head_dim] keys before RoPE. */
  kPreRope?: Float32Array;
  /** One line for logs and the page: kind, shape, main parameters, seed. */
  description: string;
}

export function isWorkloadKind(id: string): id is WorkloadKind {
  return WORKLOAD_KINDS.some((info) => info.id === id);
}

/** The options of `spec` with every default filled in (rope-outliers' count rounded up to even). */
export function resolveWorkloadOptions(spec: WorkloadSpec): Required<WorkloadOptions> {
  const defaultOutliers = Math.max(2, Math.round(spec.headDim / 32));
  let outlierChannels = spec.outlierChannels ?? defaultOutliers;
  if (spec.kind === 'rope-outliers') outlierChannels = 2 * Math.ceil(outlierChannels / 2);
  return {
    outlierChannels,
    outlierScaleRange: spec.outlierScaleRange ?? [10, 20],
    channelScaleSpread: spec.channelScaleSpread ?? 0.3,
    channelOffsetStd: spec.channelOffsetStd ?? 0.5,
    valueTokenScaleSpread: spec.valueTokenScaleSpread ?? 0.2,
    ropeBase: spec.ropeBase ?? 10000,
    keepPreRopeKeys: spec.keepPreRopeKeys ?? false,
    sinkNormFactor: spec.sinkNormFactor ?? 4,
    sinkAttentionShare: spec.sinkAttentionShare ?? 0.5,
    queryEntropyFraction: spec.queryEntropyFraction ?? 0.6,
    queryKeyCorrelation: spec.queryKeyCorrelation ?? 0.7,
    queryAnchorTokens: spec.queryAnchorTokens ?? 4,
  };
}

/**
 * Generate a workload.
 * @example
 *   const w = generateWorkload({ kind: 'outlier-keys', numQueryHeads: 8, numKvHeads: 2, headDim: 128,
 *                                contextLens: [1000, 37], seed: 1 });
 *   // w.k: Float32Array of 1037 * 2 * 128 keys, 4 outlier channels per kv head
 */
export function generateWorkload(spec: WorkloadSpec): Workload {
  validateSpec(spec);
  const opts = resolveWorkloadOptions(spec);
  validateOptions(spec, opts);
  const { kind, numQueryHeads, numKvHeads, headDim } = spec;
  const contextLens = [...spec.contextLens];
  const totalTokens = contextLens.reduce((a, b) => a + b, 0);
  const shape: KvShape = { numKvHeads, headDim, totalTokens };

  // Independent streams, so that e.g. a query knob does not change the keys.
  const keyRng = new SeededRandom(streamSeed(spec.seed, 1));
  const valueRng = new SeededRandom(streamSeed(spec.seed, 2));
  const queryRng = new SeededRandom(streamSeed(spec.seed, 3));
  const sinkRng = new SeededRandom(streamSeed(spec.seed, 4));

  let k: Float32Array;
  let keyOutlierChannels: number[][];
  let kPreRope: Float32Array | undefined;
  if (kind === 'gaussian') {
    k = keyRng.normalArray(totalTokens * numKvHeads * headDim);
    keyOutlierChannels = Array.from({ length: numKvHeads }, () => []);
  } else {
    const placement = kind === 'rope-outliers' ? 'low-frequency-pairs' : 'anywhere';
    ({ k, keyOutlierChannels } = outlierKeys(keyRng, shape, opts, placement));
    if (kind === 'rope-outliers') {
      if (opts.keepPreRopeKeys) kPreRope = k.slice();
      applyRope(k, contextLens, numKvHeads, headDim, opts.ropeBase);
    }
  }
  const v = kind === 'gaussian' ? valueRng.normalArray(k.length) : nearGaussianValues(valueRng, shape, opts);

  const attentionScale = 1 / Math.sqrt(headDim);
  const sinkDirs = kind === 'attention-sink' ? addSinkTokens(sinkRng, k, contextLens, shape, opts, keyOutlierChannels) : null;
  const q = calibratedQueries(queryRng, k, contextLens, numQueryHeads, shape, attentionScale, opts, sinkDirs);

  const lensText = contextLens.length <= 4 ? contextLens.join(', ') : `${contextLens.slice(0, 4).join(', ')}, …`;
  let details = '';
  if (kind !== 'gaussian') {
    const [lo, hi] = opts.outlierScaleRange;
    details = `; ${keyOutlierChannels[0].length} key outlier channels/head at ${lo}–${hi}× median RMS`;
    if (kind === 'rope-outliers') details += `, RoPE base ${opts.ropeBase}`;
    if (kind === 'attention-sink') details += `; sink token 0 at ${opts.sinkNormFactor}× norm, ${opts.sinkAttentionShare} of attention`;
  }
  const description =
    `${kind}: ${contextLens.length} seq (lens ${lensText}; ${totalTokens} tokens), Hq=${numQueryHeads}, ` +
    `Hkv=${numKvHeads}, D=${headDim}${details}; query entropy ${opts.queryEntropyFraction}·ln L; seed ${spec.seed >>> 0}`;

  const workload: Workload = {
    kind, seed: spec.seed >>> 0, q, k, v, contextLens, numQueryHeads, numKvHeads, headDim,
    attentionScale, keyOutlierChannels, description,
  };
  if (kPreRope) workload.kPreRope = kPreRope;
  return workload;
}

/** The query knobs of {@link WorkloadOptions}, for {@link sampleQueries}. */
export type QueryOptions = Pick<WorkloadOptions, 'queryEntropyFraction' | 'queryKeyCorrelation' | 'queryAnchorTokens'>;

/**
 * Decode queries for keys that came without them (e.g. a KV cache dumped from a model), built by the
 * query model above (anchor keys + noise, entropy calibrated; no sink component), so the attention is
 * neither uniform nor one-hot whatever the keys' norms. Same arguments → same queries.
 * @param k // [Σ contextLens, numKvHeads, headDim] f32
 * @returns // [contextLens.length, numQueryHeads, headDim] f32, softmax scale 1/√headDim
 */
export function sampleQueries(
  k: Float32Array, contextLens: readonly number[], numQueryHeads: number, numKvHeads: number, headDim: number,
  seed: number, options: QueryOptions = {},
): Float32Array {
  const totalTokens = contextLens.reduce((a, b) => a + b, 0);
  validateSpec({ kind: 'gaussian', numQueryHeads, numKvHeads, headDim, contextLens, seed });
  if (k.length !== totalTokens * numKvHeads * headDim) {
    throw new RangeError(`k has ${k.length} values; [${totalTokens}, ${numKvHeads}, ${headDim}] needs ${totalTokens * numKvHeads * headDim}`);
  }
  const spec: WorkloadSpec = { kind: 'gaussian', numQueryHeads, numKvHeads, headDim, contextLens, seed, ...options };
  const opts = resolveWorkloadOptions(spec);
  validateOptions(spec, opts);
  const rng = new SeededRandom(streamSeed(seed, 3));
  return calibratedQueries(rng, k, contextLens, numQueryHeads, { numKvHeads, headDim, totalTokens }, 1 / Math.sqrt(headDim), opts, null);
}

/**
 * Apply RoPE in place, rotate-half pairing as in Llama: channel i pairs with i + D/2 (i < D/2),
 * angle = position · base^(−2i/D), position = the token's index within its own sequence.
 * x: // [Σ contextLens, numHeads, headDim] f32.
 */
export function applyRope(
  x: Float32Array, contextLens: readonly number[], numHeads: number, headDim: number, base = 10000,
): void {
  const half = headDim / 2;
  const invFreq = Array.from({ length: half }, (_, i) => Math.pow(base, (-2 * i) / headDim));
  let token = 0;
  for (const len of contextLens) {
    for (let pos = 0; pos < len; pos++, token++) {
      for (let i = 0; i < half; i++) {
        const angle = pos * invFreq[i];
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        for (let h = 0; h < numHeads; h++) {
          const row = (token * numHeads + h) * headDim;
          const a = x[row + i];
          const b = x[row + i + half];
          x[row + i] = a * c - b * s;
          x[row + i + half] = b * c + a * s;
        }
      }
    }
  }
}

interface KvShape { numKvHeads: number; headDim: number; totalTokens: number }

// Outlier channels carry a consistent sign: value = R·(sign·OUTLIER_MEAN_FRACTION + OUTLIER_STD_FRACTION·z),
// mean square R²(0.8² + 0.6²) = R², so R is the channel's RMS.
const OUTLIER_MEAN_FRACTION = 0.8;
const OUTLIER_STD_FRACTION = 0.6;
// σ of the log-normal per-channel value scale: mild, far from an outlier.
const VALUE_CHANNEL_SCALE_SPREAD = 0.1;

function outlierKeys(
  rng: SeededRandom, shape: KvShape, opts: Required<WorkloadOptions>, placement: 'anywhere' | 'low-frequency-pairs',
): { k: Float32Array; keyOutlierChannels: number[][] } {
  const { numKvHeads, headDim: D, totalTokens } = shape;
  const [lo, hi] = opts.outlierScaleRange;
  // Per (kv head, channel): value = mean[c] + std[c]·z.
  const mean = new Float64Array(numKvHeads * D);
  const std = new Float64Array(numKvHeads * D);
  const keyOutlierChannels: number[][] = [];
  for (let g = 0; g < numKvHeads; g++) {
    const outliers = pickOutlierChannels(rng, D, opts.outlierChannels, placement);
    keyOutlierChannels.push(outliers);
    const isOutlier = new Uint8Array(D);
    for (const c of outliers) isOutlier[c] = 1;
    const ordinaryRms: number[] = [];
    for (let c = 0; c < D; c++) {
      const scale = Math.exp(opts.channelScaleSpread * rng.normal());
      const offset = opts.channelOffsetStd * rng.normal();
      mean[g * D + c] = scale * offset;
      std[g * D + c] = scale;
      if (!isOutlier[c]) ordinaryRms.push(scale * Math.sqrt(1 + offset * offset));
    }
    const medianRms = median(ordinaryRms);
    for (const c of outliers) {
      const rms = medianRms * (lo + (hi - lo) * rng.uniform());
      mean[g * D + c] = rng.sign() * OUTLIER_MEAN_FRACTION * rms;
      std[g * D + c] = OUTLIER_STD_FRACTION * rms;
    }
  }
  const k = new Float32Array(totalTokens * numKvHeads * D);
  for (let t = 0; t < totalTokens; t++) {
    for (let i = 0; i < numKvHeads * D; i++) k[t * numKvHeads * D + i] = mean[i] + std[i] * rng.normal();
  }
  return { k, keyOutlierChannels };
}

function pickOutlierChannels(
  rng: SeededRandom, D: number, count: number, placement: 'anywhere' | 'low-frequency-pairs',
): number[] {
  if (placement === 'anywhere') {
    const all = Array.from({ length: D }, (_, c) => c);
    return rng.shuffle(all).slice(0, count).sort((a, b) => a - b);
  }
  // Pairs (i, i + D/2) with i in the lowest-frequency quarter of RoPE frequencies (largest i).
  const half = D / 2;
  const pairs = count / 2;
  const candidates = Math.max(pairs, Math.floor(half / 4));
  const pairIds = Array.from({ length: candidates }, (_, j) => half - candidates + j);
  const chosen = rng.shuffle(pairIds).slice(0, pairs);
  return chosen.flatMap((i) => [i, i + half]).sort((a, b) => a - b);
}

/** Values: Gaussian × a mild log-normal per-(token, head) scale × a mild per-channel scale. */
function nearGaussianValues(rng: SeededRandom, shape: KvShape, opts: Required<WorkloadOptions>): Float32Array {
  const { numKvHeads, headDim: D, totalTokens } = shape;
  const channelScale = new Float64Array(numKvHeads * D);
  for (let i = 0; i < channelScale.length; i++) channelScale[i] = Math.exp(VALUE_CHANNEL_SCALE_SPREAD * rng.normal());
  const v = new Float32Array(totalTokens * numKvHeads * D);
  for (let t = 0; t < totalTokens; t++) {
    for (let g = 0; g < numKvHeads; g++) {
      const tokenScale = Math.exp(opts.valueTokenScaleSpread * rng.normal());
      const row = (t * numKvHeads + g) * D;
      for (let c = 0; c < D; c++) v[row + c] = tokenScale * channelScale[g * D + c] * rng.normal();
    }
  }
  return v;
}

/**
 * Give token 0 of every sequence a large component along a per-kv-head sink direction u (a random unit
 * vector over the ordinary channels), so that its norm is sinkNormFactor × the head's RMS key norm.
 * Returns the sink directions // [num_kv_heads][head_dim].
 */
function addSinkTokens(
  rng: SeededRandom, k: Float32Array, contextLens: readonly number[], shape: KvShape,
  opts: Required<WorkloadOptions>, keyOutlierChannels: number[][],
): Float64Array[] {
  const { numKvHeads, headDim: D, totalTokens } = shape;
  const dirs: Float64Array[] = [];
  for (let g = 0; g < numKvHeads; g++) {
    const u = new Float64Array(D);
    for (let c = 0; c < D; c++) u[c] = rng.normal();
    for (const c of keyOutlierChannels[g]) u[c] = 0;
    scaleInPlace(u, 1 / norm(u));
    dirs.push(u);
    let sumSquares = 0;
    for (let t = 0; t < totalTokens; t++) sumSquares += normSquared(k, (t * numKvHeads + g) * D, D);
    const targetNorm = opts.sinkNormFactor * Math.sqrt(sumSquares / totalTokens);
    let token = 0;
    for (const len of contextLens) {
      const row = (token * numKvHeads + g) * D;
      let bu = 0;
      for (let c = 0; c < D; c++) bu += k[row + c] * u[c];
      const b2 = normSquared(k, row, D);
      const n2 = Math.max(targetNorm * targetNorm, 4 * b2);
      // ||b + γu|| = n  ⇔  γ² + 2γ(b·u) + |b|² − n² = 0, positive root.
      const gamma = -bu + Math.sqrt(bu * bu - b2 + n2);
      for (let c = 0; c < D; c++) k[row + c] += gamma * u[c];
      token += len;
    }
  }
  return dirs;
}

function calibratedQueries(
  rng: SeededRandom, k: Float32Array, contextLens: readonly number[], numQueryHeads: number, shape: KvShape,
  scale: number, opts: Required<WorkloadOptions>, sinkDirs: Float64Array[] | null,
): Float32Array {
  const { numKvHeads, headDim: D } = shape;
  const group = numQueryHeads / numKvHeads;
  const rho = opts.queryKeyCorrelation;
  const q = new Float32Array(contextLens.length * numQueryHeads * D);
  let seqStart = 0;
  for (let s = 0; s < contextLens.length; s++) {
    const len = contextLens[s];
    for (let h = 0; h < numQueryHeads; h++) {
      const g = Math.floor(h / group);
      const rowOf = (j: number): number => ((seqStart + j) * numKvHeads + g) * D;
      // Calibration tokens: all of them, or all but the sink.
      const first = sinkDirs ? 1 : 0;
      const calib = len - first;
      const noise = new Float64Array(D);
      for (let c = 0; c < D; c++) noise[c] = rng.normal();
      scaleInPlace(noise, 1 / norm(noise));
      const dir = new Float64Array(D);
      if (calib >= 2) {
        const mean = new Float64Array(D);
        for (let j = first; j < len; j++) for (let c = 0; c < D; c++) mean[c] += k[rowOf(j) + c] / calib;
        const anchors = rng.shuffle(Array.from({ length: calib }, (_, j) => first + j)).slice(0, opts.queryAnchorTokens);
        const anchorSum = new Float64Array(D);
        for (const j of anchors) {
          const centred = new Float64Array(D);
          for (let c = 0; c < D; c++) centred[c] = k[rowOf(j) + c] - mean[c];
          const n = norm(centred);
          if (n > 0) addScaled(anchorSum, centred, (0.5 + rng.uniform()) / n);
        }
        const anchorNorm = norm(anchorSum);
        if (anchorNorm > 0) addScaled(dir, anchorSum, rho / anchorNorm);
        addScaled(dir, noise, anchorNorm > 0 ? Math.sqrt(1 - rho * rho) : 1);
        scaleInPlace(dir, 1 / norm(dir));
      } else {
        dir.set(noise);
      }
      // Unit-direction logits over the calibration tokens; α sets the entropy.
      const base = new Float64Array(calib);
      for (let j = 0; j < calib; j++) base[j] = scale * dotRow(dir, k, rowOf(first + j), D);
      const alpha = calib >= 2 ? solveScaleForEntropy(base, opts.queryEntropyFraction * Math.log(calib)) : Math.sqrt(D);
      const qh = new Float64Array(D);
      addScaled(qh, dir, alpha);
      if (sinkDirs && len >= 2) {
        const u = sinkDirs[g];
        const l0 = new Float64Array(len);
        const lu = new Float64Array(len);
        for (let j = 0; j < len; j++) {
          l0[j] = scale * dotRow(qh, k, rowOf(j), D);
          lu[j] = scale * dotRow(u, k, rowOf(j), D);
        }
        addScaled(qh, u, solveSinkComponent(l0, lu, opts.sinkAttentionShare));
      }
      const out = (s * numQueryHeads + h) * D;
      for (let c = 0; c < D; c++) q[out + c] = qh[c];
    }
    seqStart += len;
  }
  return q;
}

/** α ≥ 0 with entropy(softmax(α·z)) = target; entropy falls monotonically in α (dH/dα = −α·Var_p(z)). */
function solveScaleForEntropy(z: Float64Array, target: number): number {
  let hi = 1;
  while (softmaxEntropy(z, hi) > target && hi < 1e12) hi *= 2;
  let lo = 0;
  for (let iter = 0; iter < 64; iter++) {
    const mid = 0.5 * (lo + hi);
    if (softmaxEntropy(z, mid) > target) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/** β with softmax(l0 + β·lu)[0] = share; increasing in β because lu[0] (the sink) dominates lu. */
function solveSinkComponent(l0: Float64Array, lu: Float64Array, share: number): number {
  const shareAt = (beta: number): number => {
    let max = -Infinity;
    for (let j = 0; j < l0.length; j++) max = Math.max(max, l0[j] + beta * lu[j]);
    let sum = 0;
    for (let j = 0; j < l0.length; j++) sum += Math.exp(l0[j] + beta * lu[j] - max);
    return Math.exp(l0[0] + beta * lu[0] - max) / sum;
  };
  let lo = -1;
  let hi = 1;
  while (shareAt(lo) > share && lo > -1e12) lo *= 2;
  while (shareAt(hi) < share && hi < 1e12) hi *= 2;
  for (let iter = 0; iter < 64; iter++) {
    const mid = 0.5 * (lo + hi);
    if (shareAt(mid) < share) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

function softmaxEntropy(z: Float64Array, alpha: number): number {
  let max = -Infinity;
  for (let j = 0; j < z.length; j++) max = Math.max(max, alpha * z[j]);
  let sum = 0;
  let weighted = 0;
  for (let j = 0; j < z.length; j++) {
    const x = alpha * z[j] - max;
    const e = Math.exp(x);
    sum += e;
    weighted += e * x;
  }
  return Math.log(sum) - weighted / sum;
}

function validateSpec(spec: WorkloadSpec): void {
  const { kind, numQueryHeads, numKvHeads, headDim, contextLens } = spec;
  if (!isWorkloadKind(kind)) {
    throw new RangeError(`unknown workload kind '${String(kind)}'; expected one of ${WORKLOAD_KINDS.map((i) => i.id).join(', ')}`);
  }
  for (const [name, value] of [['numQueryHeads', numQueryHeads], ['numKvHeads', numKvHeads], ['headDim', headDim]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  if (numQueryHeads % numKvHeads !== 0) {
    throw new RangeError(`numQueryHeads (${numQueryHeads}) must be a multiple of numKvHeads (${numKvHeads})`);
  }
  if (contextLens.length === 0) throw new RangeError('contextLens must list at least one sequence');
  for (const len of contextLens) {
    if (!Number.isInteger(len) || len < 1) throw new RangeError(`every context length must be an integer ≥ 1, got ${len}`);
  }
  if (!Number.isFinite(spec.seed)) throw new RangeError(`seed must be a finite number, got ${spec.seed}`);
  if (kind === 'rope-outliers' && headDim % 2 !== 0) throw new RangeError(`rope-outliers needs an even headDim, got ${headDim}`);
}

function validateOptions(spec: WorkloadSpec, opts: Required<WorkloadOptions>): void {
  const n = opts.outlierChannels;
  if (spec.kind !== 'gaussian' && (!Number.isInteger(n) || n < 1 || n > spec.headDim / 2)) {
    throw new RangeError(`outlierChannels must be an integer in [1, headDim/2 = ${spec.headDim / 2}], got ${n}`);
  }
  const [lo, hi] = opts.outlierScaleRange;
  if (!(lo > 0 && hi >= lo)) throw new RangeError(`outlierScaleRange must satisfy 0 < lo ≤ hi, got [${lo}, ${hi}]`);
  if (!(opts.queryEntropyFraction > 0 && opts.queryEntropyFraction < 1)) {
    throw new RangeError(`queryEntropyFraction must be in (0, 1), got ${opts.queryEntropyFraction}`);
  }
  if (!(opts.queryKeyCorrelation >= 0 && opts.queryKeyCorrelation <= 1)) {
    throw new RangeError(`queryKeyCorrelation must be in [0, 1], got ${opts.queryKeyCorrelation}`);
  }
  if (!(opts.sinkAttentionShare > 0 && opts.sinkAttentionShare < 1)) {
    throw new RangeError(`sinkAttentionShare must be in (0, 1), got ${opts.sinkAttentionShare}`);
  }
  if (!(opts.sinkNormFactor >= 1)) throw new RangeError(`sinkNormFactor must be ≥ 1, got ${opts.sinkNormFactor}`);
  if (!Number.isInteger(opts.queryAnchorTokens) || opts.queryAnchorTokens < 1) {
    throw new RangeError(`queryAnchorTokens must be a positive integer, got ${opts.queryAnchorTokens}`);
  }
  if (!(opts.ropeBase > 1)) throw new RangeError(`ropeBase must be > 1, got ${opts.ropeBase}`);
}

/** Decorrelated 32-bit seed for one stream of a workload (MurmurHash3 finalizer of seed and stream). */
function streamSeed(seed: number, stream: number): number {
  let h = (seed >>> 0) ^ Math.imul(stream, 0x9e3779b9);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
}

function norm(x: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

function normSquared(x: Float32Array, offset: number, length: number): number {
  let s = 0;
  for (let i = 0; i < length; i++) s += x[offset + i] * x[offset + i];
  return s;
}

function dotRow(a: Float64Array, x: Float32Array, offset: number, length: number): number {
  let s = 0;
  for (let i = 0; i < length; i++) s += a[i] * x[offset + i];
  return s;
}

function addScaled(target: Float64Array, x: Float64Array, factor: number): void {
  for (let i = 0; i < target.length; i++) target[i] += factor * x[i];
}

function scaleInPlace(x: Float64Array, factor: number): void {
  for (let i = 0; i < x.length; i++) x[i] *= factor;
}
