/**
 * `simulate`: the serving simulator (src/serving) from the command line: continuous batching of a
 * request stream over one paged KV cache per method, sized by one memory budget, swept over
 * concurrency caps; prints the tables of src/serving/simulate-report.ts, optionally writes the JSON.
 *
 * Every input is checked before any work (planSimulate, no GPU): each number is an integer or number
 * in its range, the --json file can be written, the trace is bounded and parsed, and the sweep's
 * host memory (request state, step records, JSON text, K/V values per step; simulate-limits.ts) is
 * estimated against the V8 heap and the free memory, refused with "needs X, limit Y, try Z". Once the
 * device is open, the pools are planned against its bindings (src/serving/serving-cache.ts; a software
 * adapter's also against half the free host memory, its buffers being host memory). Any bad input
 * exits 2 with one line.
 */
import { readFileSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { MAX_POOL_PAGES } from '../cache/page-allocator';
import { KvConfigError, MAX_HEAD_DIM } from '../cache/paged-kv-cache';
import { DEFAULT_HADAMARD_BLOCK, DEFAULT_PAGE_SIZE, isKvMethod, KV_METHODS, MAX_PAGE_SIZE, MIN_PAGE_SIZE, type KvMethod } from '../layout';
import {
  clipText, generateRequests, isRegimeName, MAX_REQUEST_TOKENS, MAX_REQUESTS, parseLengthDistribution, parseTrace, printable, quoteName, quoteText, REGIMES, RequestSpecError, scaledRegime,
  TraceParseError, type ArrivalProcess, type LengthDistribution, type RegimeName, type ServingRequest,
} from '../serving/requests';
import { SchedulerError } from '../serving/scheduler';
import { DEFAULT_SIMULATE_REPEATS, MAX_SIMULATE_REPEATS } from '../serving/repeat-spread';
import {
  formatSize, MAX_STRING_CHARS, maxRequestsFor, maxStepRecordsFor, REQUEST_HEAP_BYTES, SimulateLimitError, STEP_RECORD_JSON_CHARS, stepBufferBytesFor,
  stepRecordBytes, summaryBytesFor, summaryJsonCharsFor, type HostLimits, type SweepSize,
} from '../serving/simulate-limits';
import { formatSimulateReport, simulateReportJson } from '../serving/simulate-report';
import { runSimulateSweep, sweepSize, type SimulateSweepOptions } from '../serving/simulate-sweep';
import { checkServingBudget, DEFAULT_PREFILL_CHUNK_TOKENS, LLAMA_3_1_8B, type ModelShape } from '../serving/simulator';
import { findPreset, MODEL_PRESETS, PRESET_NAMES } from '../models';
import type { CliCommand } from './commands';
import { hostLimits } from './size-limits';

export { hostLimits };
import { checkOutputFile, CliInputError, writeFileAtomic } from './output-file';

const DEFAULTS = {
  regime: 'short' as RegimeName,
  budgetMib: 256,
  caps: [1, 2, 4, 8, 16, 32, 64, 128],
  steps: 256,
  chunk: DEFAULT_PREFILL_CHUNK_TOKENS,
  pageSize: DEFAULT_PAGE_SIZE,
  hadamardBlock: DEFAULT_HADAMARD_BLOCK,
  seed: 1,
  repeats: DEFAULT_SIMULATE_REPEATS,
};

export const SIMULATE_USAGE = `Usage: simulate [--regime short|long] [--budget-mib N] [--methods fp16,int4,int4-hadamard]
                [--max-concurrency 1,2,4,...] [--steps N] [--repeats N] [--json out.json] [more flags below]

Continuous batching over the paged KV cache, through the real kernels: for each method ONE paged
cache of one attention layer, as many pages as --budget-mib buys; for each concurrency cap a run that
admits waiting requests while pages suffice, prefills prompts in chunks through the fused write
kernel, decodes every running sequence each step (append one token + paged attention), preempts the
youngest request when decoding runs out of pages (recomputed later) and frees finished requests.
Every (method, cap) runs --repeats times over the same schedule and K/V/q values; the report gives
the median repeat's figures with their min–max over the repeats (every repeat's totals in the JSON).
Reports decode output tokens/s against the cap for each method, how many requests fit the budget,
and page utilisation over time.

What is scaled: a step is ONE layer's KV append + decode attention of the model (default
${LLAMA_3_1_8B.name}: Hq ${LLAMA_3_1_8B.numQueryHeads}, Hkv ${LLAMA_3_1_8B.numKvHeads}, D ${LLAMA_3_1_8B.headDim}, ${LLAMA_3_1_8B.numLayers} layers); the budget is that layer's, the model
needs ×layers the memory and gets ÷layers the tokens/s. K/V/q values are random.

Workload (one of):
  --regime short|long        the paper's regimes: short = ${REGIMES.short.description}, long = ${REGIMES.long.description}
                             (default ${DEFAULTS.regime}); fixed lengths
  --prompt-len DIST --output-len DIST
                             N | fixed:N | uniform:MIN-MAX | lognormal:MEDIAN,SIGMA[,MIN-MAX]
                             (either one alone replaces that length of the regime)
  --trace FILE               JSON lines {"prompt_len":N,"output_len":N,"arrival_step":N} or CSV
                             prompt_len,output_len[,arrival_step] (header optional)
  --scale X                  multiply prompt and output lengths by X (e.g. 0.0625 to fit a small
                             device; default 1; applies to regimes and distributions, not traces)
  --requests N               requests in a generated stream (default 2 × the largest cap)
  --arrival-rate R           Poisson arrivals, R requests per step (default: all at step 0)
  --seed N                   seed of lengths, arrivals and K/V/q values (default ${DEFAULTS.seed})

Memory and scheduling:
  --budget-mib N             KV-cache MiB of the simulated layer, K+V+scales (default ${DEFAULTS.budgetMib}); tens of
                             GiB fit where the device binds them: a pool larger than one storage binding
                             is spread over as many buffers as the decode kernel can bind (subgroups
                             feature needed); past that, or past the device's memory, it is refused
                             with the budget that fits
  --max-pages-per-buffer N   at most N pages per storage buffer of a pool (default: one binding's worth;
                             a small N spreads the pools over several buffers, as a large budget does)
  --methods LIST             comma list of ${KV_METHODS.join(', ')} (default all)
  --max-concurrency LIST     comma list of concurrency caps (default ${DEFAULTS.caps.join(',')})
  --steps N                  steps per run; 0 = until every request finished (default ${DEFAULTS.steps});
                             an idle gap (nothing running or waiting) is skipped in one step
  --repeats N                runs of every (method, cap), 1 to ${MAX_SIMULATE_REPEATS} (default ${DEFAULTS.repeats}): the spread of
                             the timed figures over them is reported
  --chunk N                  prefill chunk: prompt tokens per sequence per step (default ${DEFAULTS.chunk})
  --prefill-tokens-per-step N  prompt tokens per step over all sequences (default: no limit)
  --reserve-pages N          free pages a new request must leave for the running ones (default 0)
  --page-size N              tokens per page (default ${DEFAULTS.pageSize})
  --hadamard-block B         Hadamard block of int4-hadamard (default ${DEFAULTS.hadamardBlock})

Model (one layer):
  --preset NAME              a model of the shared table: ${PRESET_NAMES.join(', ')} (default llama-3.1-8b)
  --head-dim N --query-heads N --kv-heads N --layers N   override the preset's shape

Output:
  --json FILE                write the result, every step record included
  --timing auto|timestamp|wall-clock   GPU timing (default auto: timestamp-query when present)
  --quiet                    no progress lines on stderr

Limits: every number is checked against its range, and the sweep's host memory (request state, step
records of every repeat, the JSON text, K/V values per step) is estimated before any work; too much is
refused with what it needs, the limit (half the V8 heap, half the free memory) and a value that fits.
Once the device is open, every method's pools are planned against its storage bindings (and, on a
software adapter, half the free host memory) before anything is allocated, refused the same way.

Exit codes: 0 done; 2 bad flags, trace, a budget that holds no page or does not fit the device, or a
sweep too large; 1 GPU failure.`;

/** A problem with the command line, reported with exit code 2. */
export class SimulateUsageError extends Error {}

/** Characters of a numeric flag's value at most (the largest bound has 13 digits). */
const MAX_NUMBER_CHARS = 32;
/** Characters of a comma list (--methods, --max-concurrency) at most. */
const MAX_LIST_CHARS = 1024;
/** Concurrency caps (runs per method) of one sweep at most. */
const MAX_CAPS = 32;
/** Largest concurrency cap: WebGPU's default maxComputeWorkgroupsPerDimension, the most sequences one attention call takes (the device check refines it). */
const MAX_CONCURRENCY = 65535;
/** Steps per run at most; the step-record estimate usually binds first. */
const MAX_STEPS = 10 ** 9;
/** Prompt tokens per step over all sequences at most; the per-step memory estimate binds first. */
const MAX_PREFILL_TOKENS_PER_STEP = 2 ** 40;
/** KV budget of the simulated layer at most: 1 TiB, past any device (the device check refines it). */
const MAX_BUDGET_MIB = 2 ** 20;
/** Query or kv heads at most (the cache refines: kv heads ≤ 1024, query heads ≤ 4096, a multiple). */
const MAX_HEADS = 4096;
/** Layers of the model at most (they scale the report's per-model figures only). */
const MAX_LAYERS = 1024;
/** Seeds are 32-bit (SeededRandom takes seed >>> 0): larger ones would repeat streams silently. */
const MAX_SEED = 2 ** 32 - 1;
/** Length scale at most: 1024 × the long regime's 16k prompt is MAX_REQUEST_TOKENS. */
const MAX_SCALE = 1024;
/** Poisson arrival rate at most (requests per step): past it every request arrives at step 0 anyway. */
const MAX_ARRIVAL_RATE = MAX_REQUESTS;
/** Trace file size at most; also at most a quarter of the heap limit (its text is held while parsed). */
const MAX_TRACE_BYTES = 256 * 2 ** 20;
/** Longest line of an error message. */
const MAX_MESSAGE_CHARS = 2000;

const quote = quoteText;

function intFlag(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const t = text.trim();
  const value = Number(t);
  if (t.length > MAX_NUMBER_CHARS || !/^\d+$/.test(t) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new SimulateUsageError(`${flag} ${quote(text)}: expected an integer ≥ ${min}${max < Number.MAX_SAFE_INTEGER ? ` and ≤ ${max}` : ''}`);
  }
  return value;
}

function numberFlag(flag: string, text: string | undefined, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || text.length > MAX_NUMBER_CHARS || !Number.isFinite(value) || value <= 0 || value > max) {
    throw new SimulateUsageError(`${flag} ${quote(text)}: expected a positive number ≤ ${max}`);
  }
  return value;
}

function listFlag(flag: string, text: string, maxItems: number): string[] {
  if (text.length > MAX_LIST_CHARS) throw new SimulateUsageError(`${flag}: a list of ${text.length} characters; at most ${MAX_LIST_CHARS}`);
  const items = text.split(',').map((t) => t.trim());
  if (items.length > maxItems) throw new SimulateUsageError(`${flag}: ${items.length} items; at most ${maxItems}`);
  return items;
}

function capList(text: string | undefined): number[] {
  if (text === undefined) return DEFAULTS.caps;
  const values = listFlag('--max-concurrency', text, MAX_CAPS).map((t) => intFlag('--max-concurrency', t, 0, 1, MAX_CONCURRENCY));
  return [...new Set(values)].sort((a, b) => a - b);
}

function methodList(text: string | undefined): KvMethod[] {
  if (text === undefined) return [...KV_METHODS];
  const names = listFlag('--methods', text, MAX_CAPS);
  for (const name of names) if (!isKvMethod(name)) throw new SimulateUsageError(`--methods: unknown method ${quoteName(name)}; expected a comma list of ${KV_METHODS.join(', ')}`);
  return [...new Set(names)] as KvMethod[];
}


/** Everything `simulate` will do, checked: the sweep, where its JSON goes, and its sizes. */
export interface SimulatePlan {
  sweep: SimulateSweepOptions;
  json?: string;
  quiet: boolean;
  size: SweepSize;
}

/** Scales a distribution's lengths by `scale`. */
function scaleDistribution(d: LengthDistribution, scale: number): LengthDistribution {
  if (scale === 1) return d;
  if (d.kind === 'fixed') return { ...d, value: d.value * scale };
  if (d.kind === 'uniform') return { ...d, min: d.min * scale, max: d.max * scale };
  return { ...d, median: d.median * scale, min: d.min === undefined ? undefined : d.min * scale, max: d.max === undefined ? undefined : d.max * scale };
}

/** Reads and parses --trace, bounded by file size and by the requests the heap holds. */
function readTrace(path: string, limits: HostLimits): ServingRequest[] {
  const name = printable(clipText(path, 200));
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new SimulateUsageError(`--trace ${name}: not a file`);
    size = stat.size;
  } catch (err) {
    if (err instanceof SimulateUsageError) throw err;
    throw new SimulateUsageError(`cannot read --trace ${name}: ${clipText((err as Error).message, 200)}`);
  }
  const maxBytes = Math.min(MAX_TRACE_BYTES, Math.floor(limits.heapBytes / 4));
  if (size > maxBytes) {
    throw new SimulateLimitError(`--trace ${name} is ${formatSize(size)}; limit ${formatSize(maxBytes)} (${maxBytes === MAX_TRACE_BYTES ? 'the largest trace read' : `a quarter of the ${formatSize(limits.heapBytes)} heap share`}); try a trace ≤ ${formatSize(maxBytes)}`);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SimulateUsageError(`cannot read --trace ${name}: ${clipText((err as Error).message, 200)}`);
  }
  const maxRequests = Math.min(MAX_REQUESTS, maxRequestsFor(limits));
  return parseTrace(text, path, {
    maxRequests,
    maxRequestsReason: maxRequests === MAX_REQUESTS ? 'the most of one stream' : `~${REQUEST_HEAP_BYTES} B of host memory each within ${formatSize(limits.heapBytes)}, ${limits.heapSource}`,
  });
}

/**
 * Refuses a generated stream of `count` requests before it is drawn, when its state would not fit.
 * The suggestion leaves room for the runs' summaries and the step records when the steps are limited
 * (then known exactly: (`runs` + `repeats` − 1) × `maxSteps` records held at once).
 */
function checkRequestCount(count: number, flag: string, limits: HostLimits, records: { runs: number; repeats: number; maxSteps: number; json: boolean }): void {
  const byMemory = maxRequestsFor(limits);
  if (count <= Math.min(MAX_REQUESTS, byMemory)) return;
  if (count > byMemory) {
    // Records held at once per step of --steps: every run's, and the other repeats' of the run in progress.
    const perStep = (records.runs + records.repeats - 1) * stepRecordBytes(records.json);
    limits = { ...limits, heapBytes: limits.heapBytes - summaryBytesFor(records.runs, records.repeats, records.json) };
    const fits = Math.min(MAX_REQUESTS, maxRequestsFor({ ...limits, heapBytes: limits.heapBytes - records.maxSteps * perStep }));
    throw new SimulateLimitError(
      `${flag} needs ~${formatSize(count * REQUEST_HEAP_BYTES)} of host memory for request state; limit ${formatSize(limits.heapBytes)} (${limits.heapSource}); ` +
        `try ${fits >= 1 ? `--requests ≤ ${fits}` : `--steps ≤ ${Math.floor(limits.heapBytes / 2 / perStep)} and --requests ≤ ${maxRequestsFor({ ...limits, heapBytes: limits.heapBytes / 2 })}`}`,
    );
  }
  throw new SimulateLimitError(`${flag} needs more than the ${MAX_REQUESTS} requests a stream may have; limit ${MAX_REQUESTS}; try --requests ≤ ${MAX_REQUESTS}`);
}

/** Refuses a sweep whose estimated host memory (simulate-limits.ts) exceeds the limits, naming a setting that fits. */
function checkSweepFits(size: SweepSize, o: SimulateSweepOptions, limits: HostLimits, json: boolean): void {
  const maxCap = o.caps.reduce((m, c) => Math.max(m, c), 0);
  if (size.stepBufferBytes > limits.bufferBytes) {
    const perSequence = stepBufferBytesFor(o.model, 0, 1);
    const perToken = stepBufferBytesFor(o.model, 1, 0);
    const fits = Math.floor((limits.bufferBytes - size.maxDecodeBatch * perSequence) / perToken);
    const writer = o.prefillTokensPerStep !== undefined ? `--prefill-tokens-per-step ${o.prefillTokensPerStep}` : `cap ${maxCap} × --chunk ${o.prefillChunkTokens}`;
    const fix = fits >= 1 ? `--prefill-tokens-per-step ≤ ${fits}` : `--max-concurrency ≤ ${Math.max(1, Math.floor(limits.bufferBytes / (perSequence + perToken)))} and --prefill-tokens-per-step 1`;
    throw new SimulateLimitError(
      `${writer} writes up to ${size.maxPrefillTokensPerStep} prompt tokens per step: needs ~${formatSize(size.stepBufferBytes)} of host memory for their K/V values; ` +
        `limit ${formatSize(limits.bufferBytes)} (${limits.bufferSource}); try ${fix}`,
    );
  }
  const stepsNow = o.maxSteps > 0 ? `--steps ${o.maxSteps}` : '--steps 0 (until done)';
  const repeats = o.repeats ?? DEFAULT_SIMULATE_REPEATS;
  // Records held at once per step of --steps: every run's, and the other repeats' of the run in progress.
  const heldPerStep = size.runs + repeats - 1;
  const records = `~${size.heldRecords} step records over ${size.runs} runs${repeats > 1 ? ` × ${repeats} repeats` : ''}`;
  if (json && size.jsonChars > MAX_STRING_CHARS) {
    const fits = Math.max(1, Math.floor((MAX_STRING_CHARS - summaryJsonCharsFor(size.runs, repeats)) / STEP_RECORD_JSON_CHARS / heldPerStep));
    throw new SimulateLimitError(
      `--json with ${stepsNow}: ${records} need ~${size.jsonChars} characters of JSON; limit ${MAX_STRING_CHARS} (the longest string V8 makes); ` +
        `try --steps ≤ ${fits}, fewer --max-concurrency caps, --methods or --repeats, or no --json`,
    );
  }
  if (size.heapBytes > limits.heapBytes) {
    const fits = Math.floor((limits.heapBytes - size.requestHeapBytes - size.summaryHeapBytes) / stepRecordBytes(json) / heldPerStep);
    throw new SimulateLimitError(
      `${stepsNow}: ${records}${json ? ' and their JSON' : ''} with ${o.requests.length} requests need ~${formatSize(size.heapBytes)} of host memory; ` +
        `limit ${formatSize(limits.heapBytes)} (${limits.heapSource}); try ${fits >= 1 ? `--steps ≤ ${fits}` : `--requests ≤ ${Math.floor(limits.heapBytes / 2 / REQUEST_HEAP_BYTES)}`}`,
    );
  }
}

/**
 * Parses and checks the whole command line, reads the trace or draws the stream, and sizes the sweep
 * against `limits`; touches no GPU. Everything the run will do is known (and bounded) afterwards.
 * @throws SimulateUsageError, RequestSpecError, TraceParseError, SimulateLimitError, KvConfigError,
 *   CliInputError (all exit 2); node:util parseArgs errors (exit 2 in the CLI)
 */
export function planSimulate(args: string[], limits: HostLimits = hostLimits()): SimulatePlan {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      regime: { type: 'string' },
      'prompt-len': { type: 'string' },
      'output-len': { type: 'string' },
      trace: { type: 'string' },
      scale: { type: 'string' },
      requests: { type: 'string' },
      'arrival-rate': { type: 'string' },
      seed: { type: 'string' },
      'budget-mib': { type: 'string' },
      methods: { type: 'string' },
      'max-concurrency': { type: 'string' },
      steps: { type: 'string' },
      chunk: { type: 'string' },
      'prefill-tokens-per-step': { type: 'string' },
      'reserve-pages': { type: 'string' },
      'page-size': { type: 'string' },
      'hadamard-block': { type: 'string' },
      repeats: { type: 'string' },
      'max-pages-per-buffer': { type: 'string' },
      preset: { type: 'string' },
      'head-dim': { type: 'string' },
      'query-heads': { type: 'string' },
      'kv-heads': { type: 'string' },
      layers: { type: 'string' },
      json: { type: 'string' },
      timing: { type: 'string' },
      quiet: { type: 'boolean' },
    },
  });
  // The output file first: a run of minutes must not end in ENOENT.
  if (values.json !== undefined) checkOutputFile('--json', values.json);
  const caps = capList(values['max-concurrency']);
  const methods = methodList(values.methods);
  const seed = intFlag('--seed', values.seed, DEFAULTS.seed, 0, MAX_SEED);
  const scale = numberFlag('--scale', values.scale, 1, MAX_SCALE);
  const regimeName = values.regime ?? DEFAULTS.regime;
  if (!isRegimeName(regimeName)) throw new SimulateUsageError(`--regime ${quote(regimeName)}: expected ${Object.keys(REGIMES).join(' or ')}`);
  const streamFlags = ['regime', 'prompt-len', 'output-len', 'requests', 'arrival-rate', 'scale'] as const;
  if (values.trace !== undefined && streamFlags.some((f) => values[f] !== undefined)) {
    throw new SimulateUsageError(`--trace gives the whole stream: leave out ${streamFlags.map((f) => `--${f}`).join(', ')}`);
  }
  const timing = values.timing ?? 'auto';
  if (timing !== 'auto' && timing !== 'timestamp' && timing !== 'wall-clock') throw new SimulateUsageError(`--timing ${quote(timing)}: expected auto, timestamp or wall-clock`);
  // --preset (the shared model table, src/models.ts), each field overridable by its own flag
  let base: ModelShape = LLAMA_3_1_8B;
  if (values.preset !== undefined) {
    const key = findPreset(values.preset);
    if (key === null) throw new SimulateUsageError(`--preset ${quote(values.preset)}: expected one of ${PRESET_NAMES.join(', ')}`);
    const p = MODEL_PRESETS[key];
    base = { name: p.name, headDim: p.headDim, numQueryHeads: p.numQueryHeads, numKvHeads: p.numKvHeads, numLayers: p.numLayers };
  }
  const model: ModelShape = {
    name: base.name,
    headDim: intFlag('--head-dim', values['head-dim'], base.headDim, 1, MAX_HEAD_DIM),
    numQueryHeads: intFlag('--query-heads', values['query-heads'], base.numQueryHeads, 1, MAX_HEADS),
    numKvHeads: intFlag('--kv-heads', values['kv-heads'], base.numKvHeads, 1, MAX_HEADS),
    numLayers: intFlag('--layers', values.layers, base.numLayers, 1, MAX_LAYERS),
  };
  if (model.headDim !== base.headDim || model.numQueryHeads !== base.numQueryHeads || model.numKvHeads !== base.numKvHeads || model.numLayers !== base.numLayers) {
    model.name = `a model with Hq ${model.numQueryHeads}, Hkv ${model.numKvHeads}, D ${model.headDim}, ${model.numLayers} layers`;
  }
  const pageSize = intFlag('--page-size', values['page-size'], DEFAULTS.pageSize, MIN_PAGE_SIZE, MAX_PAGE_SIZE);
  const hadamardBlock = intFlag('--hadamard-block', values['hadamard-block'], Math.min(DEFAULTS.hadamardBlock, model.headDim), 1, MAX_HEAD_DIM);
  const budgetBytes = Math.floor(numberFlag('--budget-mib', values['budget-mib'], DEFAULTS.budgetMib, MAX_BUDGET_MIB) * 2 ** 20);
  const maxSteps = intFlag('--steps', values.steps, DEFAULTS.steps, 0, MAX_STEPS);
  const prefillChunkTokens = intFlag('--chunk', values.chunk, DEFAULTS.chunk, 1, MAX_REQUEST_TOKENS);
  const prefillTokensPerStep = values['prefill-tokens-per-step'] === undefined ? undefined : intFlag('--prefill-tokens-per-step', values['prefill-tokens-per-step'], 0, 1, MAX_PREFILL_TOKENS_PER_STEP);
  const reservePages = intFlag('--reserve-pages', values['reserve-pages'], 0, 0, MAX_POOL_PAGES);
  const repeats = intFlag('--repeats', values.repeats, DEFAULTS.repeats, 1, MAX_SIMULATE_REPEATS);
  const maxPagesPerBuffer = values['max-pages-per-buffer'] === undefined ? undefined : intFlag('--max-pages-per-buffer', values['max-pages-per-buffer'], 0, 1, MAX_POOL_PAGES);
  // The cache shape and the pages of each pool, without a device (KvConfigError names what fits; the
  // device's bindings and memory are checked once it is open: runSimulateSweep).
  for (const method of methods) checkServingBudget({ model, method, budgetBytes, pageSize, hadamardBlock });

  let requests: ServingRequest[];
  let workload: string;
  if (values.trace !== undefined) {
    requests = readTrace(values.trace, limits);
    workload = `trace ${printable(clipText(values.trace, 200))}`;
  } else {
    const count = intFlag('--requests', values.requests, 2 * caps[caps.length - 1], 1, Number.MAX_SAFE_INTEGER);
    checkRequestCount(count, values.requests === undefined ? `${count} requests (2 × the largest cap)` : `--requests ${count}`, limits, { runs: methods.length * caps.length, repeats, maxSteps, json: values.json !== undefined });
    const regime = scaledRegime(regimeName, scale);
    const prompt = values['prompt-len'] !== undefined ? scaleDistribution(parseLengthDistribution(values['prompt-len'], '--prompt-len'), scale) : { kind: 'fixed' as const, value: regime.promptLen };
    const output = values['output-len'] !== undefined ? scaleDistribution(parseLengthDistribution(values['output-len'], '--output-len'), scale) : { kind: 'fixed' as const, value: regime.outputLen };
    const arrival: ArrivalProcess = values['arrival-rate'] !== undefined ? { kind: 'poisson', perStep: numberFlag('--arrival-rate', values['arrival-rate'], 1, MAX_ARRIVAL_RATE) } : { kind: 'all-at-once' };
    requests = generateRequests({ count, prompt, output, arrival, seed });
    const r = REGIMES[regimeName];
    const lengths = values['prompt-len'] !== undefined || values['output-len'] !== undefined
      ? `prompt ${clipText(values['prompt-len'] ?? String(regime.promptLen))}, output ${clipText(values['output-len'] ?? String(regime.outputLen))}${scale !== 1 ? ` (×${scale})` : ''}`
      : `regime ${r.name} (${r.description})${scale !== 1 ? ` scaled ×${scale} → ${regime.promptLen} in / ${regime.outputLen} out` : ''}`;
    workload = lengths + (arrival.kind === 'poisson' ? `, Poisson arrivals ${arrival.perStep}/step` : '');
  }

  const json = values.json !== undefined;
  const sweep: SimulateSweepOptions = {
    model,
    methods,
    budgetBytes,
    caps,
    maxSteps,
    requests,
    workload,
    pageSize,
    hadamardBlock,
    prefillChunkTokens,
    ...(prefillTokensPerStep !== undefined ? { prefillTokensPerStep } : {}),
    reservePages,
    dataSeed: seed,
    timing,
    repeats,
    ...(maxPagesPerBuffer !== undefined ? { maxPagesPerBuffer } : {}),
    maxStepRecords: maxStepRecordsFor(limits, requests.length, json, methods.length * caps.length, repeats),
  };
  const size = sweepSize(sweep, json);
  checkSweepFits(size, sweep, limits, json);
  return { sweep, ...(json ? { json: values.json } : {}), quiet: values.quiet ?? false, size };
}

/** `message` as one printable line, cut to MAX_MESSAGE_CHARS. */
function oneLine(message: string): string {
  return printable(clipText(message, MAX_MESSAGE_CHARS));
}

/** The errors that mean a bad input (exit 2), not a failure. */
function isInputError(err: unknown): err is Error {
  return err instanceof SimulateUsageError || err instanceof RequestSpecError || err instanceof TraceParseError || err instanceof SchedulerError ||
    err instanceof SimulateLimitError || err instanceof KvConfigError || err instanceof CliInputError;
}

export const simulateCommand: CliCommand = {
  summary: 'serving simulator: continuous batching over the paged cache; tokens/s vs concurrency per method',
  usage: SIMULATE_USAGE,
  async run(args, env) {
    try {
      const limits = hostLimits();
      const plan = planSimulate(args, limits);
      const ctx = await env.gpu();
      // A software adapter's buffers are host memory: its pools get the typed arrays' share of it.
      const sweep = ctx.adapterInfo.isFallbackAdapter ? { ...plan.sweep, poolMemory: { bytes: limits.bufferBytes, source: `${limits.bufferSource}: a software adapter's buffers are host memory` } } : plan.sweep;
      const result = await runSimulateSweep(ctx, sweep, plan.quiet ? undefined : (line) => process.stderr.write(`simulate: ${line}\n`));
      process.stdout.write(`${formatSimulateReport(result)}\n`);
      if (plan.json !== undefined) {
        writeFileAtomic(plan.json, simulateReportJson(result));
        process.stderr.write(`simulate: wrote ${plan.json}\n`);
      }
      return 0;
    } catch (err) {
      if (isInputError(err)) {
        process.stderr.write(`simulate: ${oneLine(err.message)}\n${SIMULATE_USAGE.split('\n')[0]}\n(simulate --help describes its flags)\n`);
        return 2;
      }
      throw err;
    }
  },
};
