/**
 * The page's configuration: its defaults, its URL query form (so a result can be shared and rerun),
 * and what it asks the library to run (accuracy method ids, bench points). No DOM here.
 *
 * URL keys (all optional; a bad value falls back to the default with a warning):
 *   preset=llama-3.1-8b  workload=outlier-keys  seqs=4  ctx=512  page=16  block=128  rotv=0|1
 *   methods=int4,hadamard,blocks,signs  seed=1  quick=0|1
 */
import { benchMethodSpec, MODEL_PRESETS, PRESET_NAMES, type BenchMethod, type DecodeStepPoint, type PresetName } from '../bench/decode-step-bench';
import { MAX_HEAD_DIM } from '../cache/paged-kv-cache';
import { HADAMARD_BLOCKS } from '../layout';
import { isWorkloadKind, type WorkloadKind } from '../workloads/synthetic';

/** Method choices of the page; FP16 always runs (the baseline of both runs). */
export const METHOD_CHOICES = ['int4', 'hadamard', 'blocks', 'signs'] as const;
export type MethodChoice = (typeof METHOD_CHOICES)[number];

export const PAGE_SIZES = [8, 16, 32, 64, 128] as const;
/** Bounds of the numeric inputs (the accuracy lab holds K and V in float64 on the CPU). */
export const MAX_SEQS = 256;
export const MAX_CONTEXT = 65536;
export const MAX_SEED = 2 ** 32 - 1;
/** head_dims the kernels take: multiples of HEAD_DIM_STEP up to MAX_HEAD_DIM (PagedKvCache checks the same). */
export const HEAD_DIM_STEP = 32;
/**
 * K (or V) elements of an accuracy run on the page, at most: the lab keeps f32 inputs and several
 * float64 copies (stored, un-rotated) of K and V on the CPU, ACCURACY_HOST_BYTES_PER_ELEMENT (48) per
 * element of each, so 16 M elements peak near 1.5 GiB — what a browser tab can be asked for.
 */
export const MAX_ACCURACY_ELEMENTS = 2 ** 24;

export interface AppConfig {
  /** Attention shape: a key of the bench's MODEL_PRESETS. */
  preset: PresetName;
  /** Synthetic workload of the accuracy run (a loaded file replaces it; files are not in the URL). */
  workload: WorkloadKind;
  /** Concurrency: sequences decoded together. */
  seqs: number;
  /** Tokens per sequence. */
  context: number;
  pageSize: number;
  /** Hadamard block B of the 'hadamard' method (a divisor of head_dim). */
  block: number;
  /** Rotate V as well as K. */
  rotateV: boolean;
  methods: MethodChoice[];
  /** Seed of the synthetic workload (and of sampled queries for files). */
  seed: number;
  /** Short timing (seconds on a laptop; minutes are for the CLI). */
  quick: boolean;
}

export const DEFAULT_CONFIG: Readonly<AppConfig> = Object.freeze<AppConfig>({
  preset: 'llama-3.1-8b',
  workload: 'outlier-keys',
  seqs: 4,
  context: 512,
  pageSize: 16,
  block: 128,
  rotateV: false,
  methods: ['int4', 'hadamard', 'blocks'],
  seed: 1,
  quick: true,
});

/** Why the kernels cannot take `headDim` (null: they can). */
export function headDimProblem(headDim: number): string | null {
  if (Number.isInteger(headDim) && headDim >= HEAD_DIM_STEP && headDim <= MAX_HEAD_DIM && headDim % HEAD_DIM_STEP === 0) return null;
  return `head_dim ${headDim} is not supported: the kernels take a head_dim that is a multiple of ${HEAD_DIM_STEP}, from ${HEAD_DIM_STEP} to ${MAX_HEAD_DIM}`;
}

/** Hadamard blocks that divide `headDim`. */
export function blocksForHeadDim(headDim: number): number[] {
  return HADAMARD_BLOCKS.filter((b) => b <= headDim && headDim % b === 0);
}

/** Hadamard blocks that divide the preset's head_dim. */
export function blocksFor(preset: PresetName): number[] {
  return blocksForHeadDim(MODEL_PRESETS[preset].headDim);
}

/** The block to use at `headDim`: `block` when it divides it, else the largest that does. */
export function fitBlockToHeadDim(headDim: number, block: number): number {
  const blocks = blocksForHeadDim(headDim);
  return blocks.includes(block) ? block : blocks[blocks.length - 1];
}

/** The block to use on `preset`: `block` when it fits, else the largest that does. */
export function fitBlock(preset: PresetName, block: number): number {
  return fitBlockToHeadDim(MODEL_PRESETS[preset].headDim, block);
}

/** A whole number typed in a field: the value, or why it cannot be used (`label` starts the message). */
export function parseIntegerField(text: string, label: string, min: number, max: number, emptyReason = 'it is empty'): { value: number } | { problem: string } {
  const value = parseInteger(text.trim(), min, max);
  if (value !== null) return { value };
  const got = text.trim() === '' ? emptyReason : `got ${JSON.stringify(text.trim())}`;
  return { problem: `${label} must be a whole number from ${min} to ${max.toLocaleString('en')} (${got}).` };
}

/** Why the accuracy run of `config` on synthetic data is too big for a tab (null: it fits). */
export function accuracySizeProblem(config: AppConfig): string | null {
  const p = MODEL_PRESETS[config.preset];
  const elements = config.seqs * config.context * p.numKvHeads * p.headDim;
  if (elements <= MAX_ACCURACY_ELEMENTS) return null;
  return (
    `The accuracy run keeps K and V in float64 on the CPU: ${config.seqs} × ${config.context} tokens × ${p.numKvHeads} kv heads × ${p.headDim} ` +
    `is ${elements.toLocaleString('en')} elements, over the page's ${MAX_ACCURACY_ELEMENTS.toLocaleString('en')}. ` +
    `Lower the concurrency or the context (throughput runs are not limited by this; the CLI has no such cap).`
  );
}

function parseInteger(text: string, min: number, max: number): number | null {
  if (!/^\d+$/.test(text)) return null;
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= min && value <= max ? value : null;
}

/** Characters of a bad query value a warning quotes (a link may carry 100 kB in one key). */
const MAX_QUOTED_CHARS = 40;

/** `c` as JSON escapes a character: \uXXXX per UTF-16 unit. */
const escapeUnits = (c: string) => Array.from({ length: c.length }, (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join('');

/**
 * A query value as a warning quotes it: JSON-quoted, with the control and format characters JSON
 * leaves as they are (DEL, C1, bidi overrides) escaped too, so the notice shows what is there;
 * a long value cut, with its length.
 */
export function quoteQueryValue(text: string): string {
  const quote = (t: string) => JSON.stringify(t).replace(/[\p{Cc}\p{Cf}]/gu, escapeUnits);
  if (text.length <= MAX_QUOTED_CHARS) return quote(text);
  return `${quote(text.slice(0, MAX_QUOTED_CHARS))}… (${text.length.toLocaleString('en')} characters)`;
}

export interface ParsedConfig {
  config: AppConfig;
  /** One line per ignored parameter. */
  warnings: string[];
}

/** Reads a configuration from a query string ('?preset=…&ctx=…'); unknown keys are ignored. */
export function configFromQuery(query: string): ParsedConfig {
  const params = new URLSearchParams(query);
  const config: AppConfig = { ...DEFAULT_CONFIG, methods: [...DEFAULT_CONFIG.methods] };
  const warnings: string[] = [];
  const take = (key: string, apply: (text: string) => boolean, expected: string) => {
    const text = params.get(key);
    if (text !== null && !apply(text)) warnings.push(`Ignored ${key}=${quoteQueryValue(text)}: expected ${expected}.`);
  };
  const int = (key: keyof AppConfig & ('seqs' | 'context' | 'seed'), min: number, max: number) => (text: string) => {
    const value = parseInteger(text, min, max);
    if (value !== null) config[key] = value;
    return value !== null;
  };
  take('preset', (t) => (PRESET_NAMES as string[]).includes(t) && ((config.preset = t as PresetName), true), `one of ${PRESET_NAMES.join(', ')}`);
  take('workload', (t) => isWorkloadKind(t) && ((config.workload = t), true), 'a synthetic workload kind');
  take('seqs', int('seqs', 1, MAX_SEQS), `an integer in [1, ${MAX_SEQS}]`);
  take('ctx', int('context', 1, MAX_CONTEXT), `an integer in [1, ${MAX_CONTEXT}]`);
  take('seed', int('seed', 0, MAX_SEED), `an integer in [0, ${MAX_SEED}]`);
  take('page', (t) => {
    const value = parseInteger(t, 0, 1e9);
    const ok = value !== null && (PAGE_SIZES as readonly number[]).includes(value);
    if (ok) config.pageSize = value;
    return ok;
  }, `one of ${PAGE_SIZES.join(', ')}`);
  take('block', (t) => {
    const value = parseInteger(t, 0, 1e9);
    const ok = value !== null && (HADAMARD_BLOCKS as readonly number[]).includes(value);
    if (ok) config.block = value;
    return ok;
  }, `one of ${HADAMARD_BLOCKS.join(', ')}`);
  take('rotv', (t) => (t === '0' || t === '1') && ((config.rotateV = t === '1'), true), '0 or 1');
  take('quick', (t) => (t === '0' || t === '1') && ((config.quick = t === '1'), true), '0 or 1');
  take('methods', (t) => {
    const list = t === '' ? [] : t.split(',');
    const ok = list.every((m) => (METHOD_CHOICES as readonly string[]).includes(m));
    if (ok) config.methods = METHOD_CHOICES.filter((m) => list.includes(m));
    return ok;
  }, `a comma-separated list of ${METHOD_CHOICES.join(', ')}`);
  const fitted = fitBlock(config.preset, config.block);
  if (fitted !== config.block) {
    if (params.has('block')) warnings.push(`Hadamard block ${config.block} does not divide head_dim ${MODEL_PRESETS[config.preset].headDim} of ${config.preset}; using ${fitted}.`);
    config.block = fitted;
  }
  return { config, warnings };
}

/** The query string of a configuration (every key, so the link reproduces the run whatever the defaults). */
export function configToQuery(config: AppConfig): string {
  const params = new URLSearchParams({
    preset: config.preset,
    workload: config.workload,
    seqs: String(config.seqs),
    ctx: String(config.context),
    page: String(config.pageSize),
    block: String(config.block),
    rotv: config.rotateV ? '1' : '0',
    methods: config.methods.join(','),
    seed: String(config.seed),
    quick: config.quick ? '1' : '0',
  });
  return `?${params.toString().replaceAll('%2C', ',')}`;
}

/**
 * The accuracy lab's method ids for a configuration (src/accuracy/methods.ts), FP16 first.
 * `headDim`: of the data the run uses (a loaded file's; default the preset's), so every block divides it.
 */
export function accuracyMethodIds(config: AppConfig, headDim: number = MODEL_PRESETS[config.preset].headDim): string[] {
  const kv = config.rotateV ? '-kv' : '';
  const ids = ['fp16'];
  if (config.methods.includes('int4')) ids.push('int4');
  // Every block (ascending, the chosen one among them) or just the chosen one.
  const block = fitBlockToHeadDim(headDim, config.block);
  if (config.methods.includes('blocks')) ids.push(...blocksForHeadDim(headDim).map((b) => `int4-hadamard-b${b}${kv}`));
  else if (config.methods.includes('hadamard')) ids.push(`int4-hadamard-b${block}${kv}`);
  if (config.methods.includes('signs')) ids.push(`int4-hadamard-b${block}${kv}-signs`);
  return [...new Set(ids)];
}

/** The bench variants of a configuration: FP16, plus INT4 and INT4 + Hadamard when chosen. */
export function benchMethods(config: AppConfig): BenchMethod[] {
  const methods: BenchMethod[] = ['fp16'];
  if (config.methods.includes('int4')) methods.push('int4');
  if (config.methods.includes('hadamard') || config.methods.includes('blocks') || config.methods.includes('signs')) {
    methods.push(config.rotateV ? 'int4-hadamard-kv' : 'int4-hadamard');
  }
  return methods;
}

/** Up to 3 values, ascending: `top`, top/4, top/16 while ≥ `floor`, then `floor` itself if there is room. */
export function sweepValues(top: number, floor: number): number[] {
  const values = [top];
  for (let v = Math.floor(top / 4); v >= floor && values.length < 3; v = Math.floor(v / 4)) values.unshift(v);
  if (values[0] > floor && values.length < 3) values.unshift(floor);
  return values;
}

/** Concurrency values the bench sweeps (at the chosen context). */
export function benchBatches(config: AppConfig): number[] {
  return sweepValues(config.seqs, 1);
}

/** Context lengths the bench sweeps (at the chosen concurrency). */
export function benchContexts(config: AppConfig): number[] {
  return sweepValues(config.context, Math.min(config.context, 32));
}

/**
 * The bench points: every method over the concurrency sweep at the chosen context, and over the
 * context sweep at the chosen concurrency (the shared point once).
 */
export function benchPoints(config: AppConfig): DecodeStepPoint[] {
  const shapes = [
    ...benchBatches(config).map((batch) => ({ batch, context: config.context })),
    ...benchContexts(config).filter((c) => c !== config.context).map((context) => ({ batch: config.seqs, context })),
  ];
  return shapes.flatMap(({ batch, context }) =>
    benchMethods(config).map((m): DecodeStepPoint => {
      const spec = benchMethodSpec(m);
      const point: DecodeStepPoint = { preset: config.preset, ...spec, batch, context, pageSize: config.pageSize };
      if (spec.method === 'int4-hadamard') point.hadamardBlock = config.block;
      return point;
    }),
  );
}
