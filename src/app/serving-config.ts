/**
 * The serving section's configuration: its defaults, its URL query form (next to the run section's,
 * so one link reproduces both), and the library sweep it asks for (the same SimulateSweepOptions the
 * `simulate` CLI builds). No DOM here.
 *
 * URL keys (all optional; a bad value falls back to the default with a warning):
 *   sim-regime=short|long  sim-scale=1/64  sim-budget=0.25 (MiB per layer)  sim-caps=1,2,4,8
 *   sim-steps=20 (0: until every request is done)  sim-repeats=3 (runs of every method × cap)
 *   sim-methods=fp16,int4,int4-hadamard
 * The model shape, page size and seed are the run section's (preset, page, seed).
 */
import { MODEL_PRESETS } from '../bench/decode-step-bench';
import { defaultHadamardBlock, KV_METHODS, type KvMethod } from '../layout';
import { DEFAULT_SIMULATE_REPEATS, MAX_SIMULATE_REPEATS } from '../serving/repeat-spread';
import { isRegimeName, REGIMES, regimeRequests, scaledRegime, type RegimeName } from '../serving/requests';
import type { SimulateSweepOptions } from '../serving/simulate-sweep';
import { concurrencyThatFits, DEFAULT_PREFILL_CHUNK_TOKENS, pagesForServingBudget, type ModelShape } from '../serving/simulator';
import { quoteQueryValue, type AppConfig } from './config';

/** Methods of the serving run: the paper's three (int4-hadamard with the default block for the head_dim, K only). */
export const SERVING_METHODS: readonly KvMethod[] = KV_METHODS;
/** Length scales offered: 1, 1/2, …, 1/256 (both lengths of a regime are multiplied by it). */
export const SERVING_SCALES: readonly number[] = Array.from({ length: 9 }, (_, i) => 2 ** -i);
/**
 * Bounds of the inputs: these stop typos; a budget past what this GPU binds (its pools spread over as
 * many storage buffers as it allows) is refused before the run with the budget that fits.
 */
export const MAX_BUDGET_MIB = 2 ** 20;
export const MAX_CAP = 4096;
export const MAX_CAPS = 16;
export const MAX_SERVING_STEPS = 100_000;
/** Runs of every (method, cap) at most on the page (the CLI allows MAX_SIMULATE_REPEATS). */
export const MAX_SERVING_REPEATS = Math.min(20, MAX_SIMULATE_REPEATS);
export interface ServingConfig {
  regime: RegimeName;
  /** Multiplies the regime's prompt and output lengths (one of SERVING_SCALES). */
  scale: number;
  /** KV-cache MiB of the simulated layer (K + V + scales), the same for every method. */
  budgetMib: number;
  /** Concurrency caps, ascending, one run each per method. */
  caps: number[];
  /** Steps per run (0: until every request finished or was refused). */
  steps: number;
  /** Runs of every (method, cap): the plots show the spread over them. */
  repeats: number;
  methods: KvMethod[];
}

/**
 * Small enough for SwiftShader (a software GPU) in seconds, and still the point of the paper: at
 * 1/64 of the short regime (4 in / 16 out) a quarter MiB per layer holds 2 FP16 requests of
 * Llama-3.1-8B's shape and 7 INT4 ones. A real GPU wants scale 1 and hundreds of MiB.
 */
export const DEFAULT_SERVING_CONFIG: Readonly<ServingConfig> = Object.freeze<ServingConfig>({
  regime: 'short',
  scale: 1 / 64,
  budgetMib: 0.25,
  caps: [1, 2, 4, 8],
  steps: 20,
  repeats: DEFAULT_SIMULATE_REPEATS,
  methods: [...SERVING_METHODS],
});

/** '1', '1/64'. */
export function scaleText(scale: number): string {
  return scale === 1 ? '1' : `1/${Math.round(1 / scale)}`;
}

function parseScale(text: string): number | null {
  const match = /^1\/(\d+)$/.exec(text);
  const value = match ? 1 / Number(match[1]) : /^\d*\.?\d+$/.test(text) ? Number(text) : NaN;
  return SERVING_SCALES.includes(value) ? value : null;
}

/** A budget in MiB: a positive decimal up to MAX_BUDGET_MIB, or null. */
export function parseBudgetMib(text: string): number | null {
  if (!/^\d*\.?\d+$/.test(text.trim())) return null;
  const value = Number(text);
  return value > 0 && value <= MAX_BUDGET_MIB ? value : null;
}

/** A comma list of caps (each 1…MAX_CAP, at most MAX_CAPS), sorted and deduplicated, or null. */
export function parseCaps(text: string): number[] | null {
  const parts = text.split(',').map((t) => t.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) return null;
  const caps = [...new Set(parts.map(Number))].sort((a, b) => a - b);
  return caps.length <= MAX_CAPS && caps.every((c) => c >= 1 && c <= MAX_CAP) ? caps : null;
}

/** Steps per run: an integer 0…MAX_SERVING_STEPS, or null. */
export function parseSteps(text: string): number | null {
  if (!/^\d+$/.test(text.trim())) return null;
  const value = Number(text);
  return value <= MAX_SERVING_STEPS ? value : null;
}

/** Repeats of every run: an integer 1…MAX_SERVING_REPEATS, or null. */
export function parseRepeats(text: string): number | null {
  if (!/^\d+$/.test(text.trim())) return null;
  const value = Number(text);
  return value >= 1 && value <= MAX_SERVING_REPEATS ? value : null;
}

export interface ParsedServingConfig {
  config: ServingConfig;
  /** One line per ignored parameter. */
  warnings: string[];
}

/** Reads the serving keys of a query string; other keys are ignored. */
export function servingConfigFromQuery(query: string): ParsedServingConfig {
  const params = new URLSearchParams(query);
  const config: ServingConfig = { ...DEFAULT_SERVING_CONFIG, caps: [...DEFAULT_SERVING_CONFIG.caps], methods: [...DEFAULT_SERVING_CONFIG.methods] };
  const warnings: string[] = [];
  const take = <T>(key: string, parse: (text: string) => T | null, apply: (value: T) => void, expected: string) => {
    const text = params.get(key);
    if (text === null) return;
    const value = parse(text);
    if (value === null) warnings.push(`Ignored ${key}=${quoteQueryValue(text)}: expected ${expected}.`);
    else apply(value);
  };
  take('sim-regime', (t) => (isRegimeName(t) ? t : null), (v) => (config.regime = v), Object.keys(REGIMES).join(' or '));
  take('sim-scale', parseScale, (v) => (config.scale = v), `one of ${SERVING_SCALES.map(scaleText).join(', ')}`);
  take('sim-budget', parseBudgetMib, (v) => (config.budgetMib = v), `MiB per layer, a number in (0, ${MAX_BUDGET_MIB}]`);
  take('sim-caps', parseCaps, (v) => (config.caps = v), `a comma-separated list of at most ${MAX_CAPS} integers in [1, ${MAX_CAP}]`);
  take('sim-steps', parseSteps, (v) => (config.steps = v), `an integer in [0, ${MAX_SERVING_STEPS}] (0: until every request is done)`);
  take('sim-repeats', parseRepeats, (v) => (config.repeats = v), `an integer in [1, ${MAX_SERVING_REPEATS}]`);
  take('sim-methods', (t) => {
    const list = t === '' ? [] : t.split(',');
    return list.length > 0 && list.every((m) => (SERVING_METHODS as readonly string[]).includes(m)) ? SERVING_METHODS.filter((m) => list.includes(m)) : null;
  }, (v) => (config.methods = v), `a comma-separated list of ${SERVING_METHODS.join(', ')} (at least one)`);
  return { config, warnings };
}

/** The serving keys of a configuration, to append to the run section's query ('&sim-regime=…'). */
export function servingConfigToQuery(config: ServingConfig): string {
  const params = new URLSearchParams({
    'sim-regime': config.regime,
    'sim-scale': scaleText(config.scale),
    'sim-budget': String(config.budgetMib),
    'sim-caps': config.caps.join(','),
    'sim-steps': String(config.steps),
    'sim-repeats': String(config.repeats),
    'sim-methods': config.methods.join(','),
  });
  return `&${params.toString().replaceAll('%2C', ',').replaceAll('%2F', '/')}`;
}

/** The model of a serving run: the run section's shape preset, with its layer count. */
export function servingModel(app: AppConfig): ModelShape {
  return { ...MODEL_PRESETS[app.preset] };
}

/** Prompt and output tokens of one request. */
export function servingLengths(config: ServingConfig): { promptLen: number; outputLen: number } {
  return scaledRegime(config.regime, config.scale);
}

/** What the stream is, in the CLI's words. */
export function servingWorkload(config: ServingConfig): string {
  const r = REGIMES[config.regime];
  const { promptLen, outputLen } = servingLengths(config);
  return `regime ${r.name} (${r.description})${config.scale !== 1 ? ` scaled ×${scaleText(config.scale)} → ${promptLen} in / ${outputLen} out` : ''}`;
}

/** KV-cache bytes of the simulated layer (as `simulate --budget-mib`). */
export function servingBudgetBytes(config: ServingConfig): number {
  return Math.floor(config.budgetMib * 2 ** 20);
}

/** Hadamard block of int4-hadamard: defaultHadamardBlock(head_dim), as the CLI. */
export function servingHadamardBlock(model: ModelShape): number {
  return defaultHadamardBlock(model.headDim);
}

/**
 * Before a run, without the GPU: the pages each method's pool gets from the budget, and how many
 * requests fit it at full length (the library's own arithmetic, as the sweep reports it afterwards).
 */
export function servingFits(app: AppConfig, config: ServingConfig): { method: KvMethod; pages: number; fits: number }[] {
  const model = servingModel(app);
  const { promptLen, outputLen } = servingLengths(config);
  return config.methods.map((method) => {
    const pages = pagesForServingBudget({ model, method, budgetBytes: servingBudgetBytes(config), pageSize: app.pageSize, hadamardBlock: servingHadamardBlock(model) });
    return { method, pages, fits: concurrencyThatFits(pages, app.pageSize, promptLen, outputLen) };
  });
}

/**
 * The library sweep of a configuration, as `simulate --regime R --scale S --budget-mib B
 * --max-concurrency CAPS --steps N --repeats R --methods M --page-size P --seed X` builds it: 2 × the
 * largest cap identical requests, all arriving at step 0.
 */
export function servingSweepOptions(app: AppConfig, config: ServingConfig): SimulateSweepOptions {
  const model = servingModel(app);
  return {
    model,
    methods: config.methods,
    budgetBytes: servingBudgetBytes(config),
    caps: config.caps,
    maxSteps: config.steps,
    repeats: config.repeats,
    requests: regimeRequests(config.regime, { count: 2 * Math.max(...config.caps), scale: config.scale, seed: app.seed }),
    workload: servingWorkload(config),
    pageSize: app.pageSize,
    hadamardBlock: servingHadamardBlock(model),
    prefillChunkTokens: DEFAULT_PREFILL_CHUNK_TOKENS,
    reservePages: 0,
    dataSeed: app.seed,
  };
}
