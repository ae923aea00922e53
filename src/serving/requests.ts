/**
 * Request streams for the serving simulator: prompt and output lengths drawn from seeded
 * distributions, read from a trace file, or taken from the paper's two regimes.
 *
 * Library code for Node and the browser: no Node imports. A trace is parsed from its text; reading the
 * file is the caller's business (the CLI reads it with node:fs).
 *
 * @example
 *   const requests = generateRequests({ count: 64, seed: 1,
 *     prompt: { kind: 'lognormal', median: 512, sigma: 0.8, max: 8192 },
 *     output: { kind: 'uniform', min: 64, max: 1024 } });
 *   const paper = regimeRequests('long', { count: 32, scale: 1 / 16 }); // 1024 in / 64 out
 *   const traced = parseTrace(text, 'trace.csv');                    // prompt_len,output_len[,arrival_step]
 *
 * Every input is bounded before work: lengths, arrival steps and request counts have upper limits
 * (MAX_REQUEST_TOKENS, MAX_ARRIVAL_STEP, MAX_REQUESTS); a trace line is short and flat
 * (MAX_TRACE_LINE_CHARS, MAX_TRACE_JSON_DEPTH); messages quote values cut short (describeValue).
 */
import { SeededRandom } from '../reference/random';

/**
 * Prompt or output tokens of one request at most: 2^24, far past any model's context; keeps token sums
 * exact and the step estimates of simulate-limits.ts finite.
 */
export const MAX_REQUEST_TOKENS = 2 ** 24;
/**
 * Latest arrival step: 2^40. The simulator skips idle gaps in one step, so a late arrival costs
 * nothing; the bound keeps step arithmetic exact.
 */
export const MAX_ARRIVAL_STEP = 2 ** 40;
/** Requests of one stream at most (generated or traced); the host-memory estimate usually binds first. */
export const MAX_REQUESTS = 10_000_000;
/** Characters of one trace line at most: a record is one short line ({"prompt_len":…} is ~60). */
export const MAX_TRACE_LINE_CHARS = 4096;
/**
 * Deepest JSON nesting a trace line may have, checked before JSON.parse. A record is one flat object
 * (depth 1); a little deeper still gets a message naming the field.
 */
export const MAX_TRACE_JSON_DEPTH = 16;
/** Characters of an input value quoted in a message: hostile inputs can be megabytes long. */
export const MAX_QUOTED_CHARS = 40;
/** Items of a list named in a message; the rest are counted ("… and N more"). */
export const MAX_LISTED_ITEMS = 5;

/** `text` cut to `max` characters, marked with "…" when cut. */
export function clipText(text: string, max = MAX_QUOTED_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

/** The first `max` items joined with ", ", then "… and N more". */
export function listSome(items: readonly string[], max = MAX_LISTED_ITEMS): string {
  const shown = items.slice(0, max).join(', ');
  return items.length > max ? `${shown}, … and ${items.length - max} more` : shown;
}

/** `text` with control and line-separator characters escaped (\u000a), so a message stays one line. */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A name from the input (field, column, method) for a message: single-quoted, escaped, cut short. */
export function quoteName(name: string): string {
  return `'${printable(JSON.stringify(clipText(name)).slice(1, -1))}'`;
}

/** A text from the input for a message: double-quoted, escaped, cut short. */
export function quoteText(text: string): string {
  return printable(JSON.stringify(clipText(text)));
}

/** A value for a message: bounded, and never a serialisation of a nested value (no recursion). */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return quoteText(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return `an array of ${value.length} items`;
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** One request of a stream. */
export interface ServingRequest {
  /** Position in the stream, 0-based; unique. */
  id: number;
  /** Prompt tokens (≥ 1): written to the cache by prefill. */
  promptLen: number;
  /** Output tokens to generate (≥ 1): one decode step each. */
  outputLen: number;
  /** Scheduler step at which the request arrives (≥ 0). */
  arrivalStep: number;
}

/** A distribution of token counts; every draw is rounded to an integer and clamped to ≥ 1. */
export type LengthDistribution =
  | { kind: 'fixed'; value: number }
  /** Integers in [min, max], both included, equally likely. */
  | { kind: 'uniform'; min: number; max: number }
  /** exp(N(ln median, sigma²)), clamped to [min, max] (defaults 1 and unbounded). */
  | { kind: 'lognormal'; median: number; sigma: number; min?: number; max?: number };

/** When requests arrive. */
export type ArrivalProcess =
  /** Every request is there at step 0 (a saturated, closed-loop benchmark). */
  | { kind: 'all-at-once' }
  /** Poisson arrivals with `perStep` requests per scheduler step on average. */
  | { kind: 'poisson'; perStep: number };

export interface RequestStreamSpec {
  count: number;
  prompt: LengthDistribution;
  output: LengthDistribution;
  /** Default all-at-once. */
  arrival?: ArrivalProcess;
  seed: number;
}

/** A bad distribution, regime or stream specification. */
export class RequestSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestSpecError';
  }
}

/** A trace that cannot be read: names the source, the 1-based line and what was expected. */
export class TraceParseError extends Error {
  constructor(
    readonly source: string,
    readonly line: number,
    readonly detail: string,
  ) {
    super(`${source}:${line}: ${detail}`);
    this.name = 'TraceParseError';
  }
}

function requirePositive(name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) throw new RequestSpecError(`${name} must be a positive number, got ${describeValue(value)}`);
}

/** A positive token count of a distribution, at most MAX_REQUEST_TOKENS. */
function requireLength(name: string, value: number): void {
  requirePositive(name, value);
  if (value > MAX_REQUEST_TOKENS) throw new RequestSpecError(`${name} must be at most ${MAX_REQUEST_TOKENS} tokens, got ${value}`);
}

/** Checks a distribution; throws RequestSpecError naming the bad field. */
export function validateDistribution(d: LengthDistribution, what = 'length'): void {
  switch (d.kind) {
    case 'fixed':
      requireLength(`${what} value`, d.value);
      return;
    case 'uniform':
      requireLength(`${what} min`, d.min);
      requireLength(`${what} max`, d.max);
      if (d.max < d.min) throw new RequestSpecError(`${what} uniform range is empty: min ${d.min} > max ${d.max}`);
      return;
    case 'lognormal':
      requireLength(`${what} median`, d.median);
      if (!Number.isFinite(d.sigma) || d.sigma < 0) throw new RequestSpecError(`${what} sigma must be a number ≥ 0, got ${describeValue(d.sigma)}`);
      if (d.min !== undefined) requireLength(`${what} min`, d.min);
      if (d.max !== undefined) requireLength(`${what} max`, d.max);
      if (d.min !== undefined && d.max !== undefined && d.max < d.min) throw new RequestSpecError(`${what} range is empty: min ${d.min} > max ${d.max}`);
      return;
    default:
      throw new RequestSpecError(`unknown ${what} distribution kind ${describeValue((d as { kind: unknown }).kind)}; use fixed, uniform or lognormal`);
  }
}

/** One integer draw (≥ 1) from `d`. */
export function sampleLength(d: LengthDistribution, rng: SeededRandom): number {
  let x: number;
  switch (d.kind) {
    case 'fixed':
      x = d.value;
      break;
    case 'uniform': {
      const lo = Math.ceil(d.min);
      const hi = Math.floor(d.max);
      x = lo + rng.int(Math.max(1, hi - lo + 1));
      break;
    }
    case 'lognormal':
      x = Math.exp(Math.log(d.median) + d.sigma * rng.normal());
      x = Math.min(d.max ?? Infinity, Math.max(d.min ?? 1, x));
      break;
  }
  return Math.max(1, Math.round(x));
}

/** Characters of a distribution's text at most ("lognormal:512,0.8,16-8192" is 26). */
const MAX_DISTRIBUTION_CHARS = 200;

/**
 * Parses a distribution from text (CLI flags): `256` or `fixed:256`; `uniform:128-512`;
 * `lognormal:512,0.8` or `lognormal:512,0.8,16-8192` (median, sigma, optional clamp range).
 */
export function parseLengthDistribution(text: string, what = 'length'): LengthDistribution {
  const quoted = quoteText(text);
  if (text.length > MAX_DISTRIBUTION_CHARS) throw new RequestSpecError(`${what}: ${quoted} is ${text.length} characters long; a distribution is at most ${MAX_DISTRIBUTION_CHARS}`);
  const number = (s: string, field: string): number => {
    const v = Number(s);
    if (s.trim() === '' || !Number.isFinite(v)) throw new RequestSpecError(`${what}: ${field} ${quoteText(s)} is not a number (in ${quoted})`);
    return v;
  };
  const range = (s: string): [number, number] => {
    const parts = s.split('-');
    if (parts.length !== 2) throw new RequestSpecError(`${what}: expected a range MIN-MAX, got ${quoteText(s)} (in ${quoted})`);
    return [number(parts[0], 'min'), number(parts[1], 'max')];
  };
  const [kind, args = ''] = text.includes(':') ? [text.slice(0, text.indexOf(':')), text.slice(text.indexOf(':') + 1)] : ['fixed', text];
  let d: LengthDistribution;
  if (kind === 'fixed') d = { kind, value: number(args, 'value') };
  else if (kind === 'uniform') {
    const [min, max] = range(args);
    d = { kind, min, max };
  } else if (kind === 'lognormal') {
    const parts = args.split(',');
    if (parts.length < 2 || parts.length > 3) throw new RequestSpecError(`${what}: expected lognormal:MEDIAN,SIGMA[,MIN-MAX], got ${quoted}`);
    d = { kind, median: number(parts[0], 'median'), sigma: number(parts[1], 'sigma') };
    if (parts.length === 3) [d.min, d.max] = range(parts[2]);
  } else {
    throw new RequestSpecError(`${what}: unknown distribution ${quoteName(kind)} in ${quoted}; use N, fixed:N, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA[,MIN-MAX]`);
  }
  validateDistribution(d, what);
  return d;
}

/**
 * A seeded request stream; the same spec always gives the same requests.
 * @throws RequestSpecError for a bad spec, more than MAX_REQUESTS requests, an unbounded lognormal
 *   draw past MAX_REQUEST_TOKENS or Poisson arrivals past MAX_ARRIVAL_STEP (checked while drawing)
 */
export function generateRequests(spec: RequestStreamSpec): ServingRequest[] {
  if (!Number.isSafeInteger(spec.count) || spec.count < 0 || spec.count > MAX_REQUESTS) {
    throw new RequestSpecError(`request count must be an integer in [0, ${MAX_REQUESTS}], got ${describeValue(spec.count)}`);
  }
  validateDistribution(spec.prompt, 'prompt length');
  validateDistribution(spec.output, 'output length');
  const arrival = spec.arrival ?? { kind: 'all-at-once' };
  if (arrival.kind === 'poisson') requirePositive('arrival rate (requests per step)', arrival.perStep);
  // Separate streams, so changing one distribution leaves the other's draws unchanged.
  const promptRng = new SeededRandom(spec.seed);
  const outputRng = new SeededRandom(spec.seed ^ 0x6f757470);
  const arrivalRng = new SeededRandom(spec.seed ^ 0x61727276);
  const draw = (d: LengthDistribution, rng: SeededRandom, what: string, id: number): number => {
    const n = sampleLength(d, rng);
    // Only an unclamped lognormal gets here: every other bound was validated above.
    if (!(n <= MAX_REQUEST_TOKENS)) throw new RequestSpecError(`${what}: request ${id} drew ${n} tokens, more than ${MAX_REQUEST_TOKENS}; clamp the lognormal (lognormal:MEDIAN,SIGMA,MIN-MAX)`);
    return n;
  };
  let clock = 0;
  const requests: ServingRequest[] = [];
  for (let id = 0; id < spec.count; id++) {
    if (arrival.kind === 'poisson' && id > 0) {
      clock += -Math.log(1 - arrivalRng.uniform()) / arrival.perStep;
      if (!(clock <= MAX_ARRIVAL_STEP)) {
        throw new RequestSpecError(`Poisson arrivals at ${arrival.perStep} per step put request ${id} past step ${MAX_ARRIVAL_STEP}, the latest arrival; raise the rate`);
      }
    }
    requests.push({ id, promptLen: draw(spec.prompt, promptRng, 'prompt length', id), outputLen: draw(spec.output, outputRng, 'output length', id), arrivalStep: Math.floor(clock) });
  }
  return requests;
}

// ------------------------------------------------------------------------------------------------
// the paper's regimes

export interface Regime {
  name: string;
  /** Prompt tokens at scale 1. */
  promptLen: number;
  /** Output tokens at scale 1. */
  outputLen: number;
  description: string;
}

/** The two serving regimes of the SAW-INT4 throughput study. */
export const REGIMES = {
  short: { name: 'short', promptLen: 256, outputLen: 1024, description: '256 in / 1k out' },
  long: { name: 'long', promptLen: 16384, outputLen: 1024, description: '16k in / 1k out' },
} as const satisfies Record<string, Regime>;
export type RegimeName = keyof typeof REGIMES;

export function isRegimeName(name: string): name is RegimeName {
  return Object.hasOwn(REGIMES, name);
}

/** round(len × scale), at least 1. */
export function scaleLength(len: number, scale: number): number {
  return Math.max(1, Math.round(len * scale));
}

/** Prompt and output lengths of a regime at `scale` (both lengths are multiplied by it). */
export function scaledRegime(name: RegimeName, scale = 1): { promptLen: number; outputLen: number } {
  requirePositive('regime scale', scale);
  const r = REGIMES[name];
  return { promptLen: scaleLength(r.promptLen, scale), outputLen: scaleLength(r.outputLen, scale) };
}

/**
 * `count` identical requests of a regime (fixed lengths, as the paper's benchmark), with both
 * lengths multiplied by `scale` (e.g. 1/16 to fit a small device or a software adapter).
 */
export function regimeRequests(name: RegimeName, options: { count: number; scale?: number; arrival?: ArrivalProcess; seed?: number }): ServingRequest[] {
  if (!isRegimeName(name)) throw new RequestSpecError(`unknown regime ${describeValue(name)}; use ${Object.keys(REGIMES).join(' or ')}`);
  const { promptLen, outputLen } = scaledRegime(name, options.scale ?? 1);
  return generateRequests({
    count: options.count,
    prompt: { kind: 'fixed', value: promptLen },
    output: { kind: 'fixed', value: outputLen },
    arrival: options.arrival,
    seed: options.seed ?? 0,
  });
}

// ------------------------------------------------------------------------------------------------
// traces

const TRACE_COLUMNS = ['prompt_len', 'output_len', 'arrival_step'] as const;
type TraceColumn = (typeof TRACE_COLUMNS)[number];
const TRACE_FORMAT = 'JSON lines {"prompt_len": N, "output_len": N, "arrival_step": N?} or CSV prompt_len,output_len[,arrival_step]';
/** Characters of the source name in messages (it is a path given on the command line). */
const MAX_SOURCE_CHARS = 200;

export interface TraceParseOptions {
  /** Requests at most (default MAX_REQUESTS): one more is a TraceParseError at its line. */
  maxRequests?: number;
  /** Why that limit, for the message (e.g. "what the host memory holds"). */
  maxRequestsReason?: string;
}

function isTraceColumn(name: string): name is TraceColumn {
  return (TRACE_COLUMNS as readonly string[]).includes(name);
}

function traceInteger(source: string, line: number, column: TraceColumn, value: unknown): number {
  const min = column === 'arrival_step' ? 0 : 1;
  const max = column === 'arrival_step' ? MAX_ARRIVAL_STEP : MAX_REQUEST_TOKENS;
  const n = typeof value === 'string' && /^\s*[+]?\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new TraceParseError(source, line, `${column} is ${describeValue(value)}; expected an integer ≥ ${min} and ≤ ${max}`);
  }
  return n === 0 ? 0 : n; // not -0 (JSON's -0 is an integer ≥ 0)
}

/**
 * Where the JSON nesting of `text` first goes deeper than `max`: the 1-based column and the top-level
 * field it is in (the last key of the outer object), or null. Brackets inside strings do not count.
 * Linear and iterative: it runs before JSON.parse, so nothing later (checks, messages) meets a deep value.
 */
function jsonNestingPast(text: string, max: number): { column: number; field: string | null } | null {
  let depth = 0;
  let stringStart = -1;
  let field: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (stringStart >= 0) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) {
        if (depth === 1) field = text.slice(stringStart + 1, i);
        stringStart = -1;
      }
    } else if (c === 0x22) stringStart = i;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return { column: i + 1, field };
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return null;
}

/**
 * The lines that hold content (trimmed; blank and `#` lines skipped), one at a time, without
 * splitting the whole text at once; a line longer than MAX_TRACE_LINE_CHARS is refused.
 */
function* contentLines(text: string, source: string): Generator<{ line: number; text: string }> {
  let line = 0;
  for (let start = 0; start <= text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    if (end - start > MAX_TRACE_LINE_CHARS) {
      throw new TraceParseError(source, line, `the line is ${end - start} characters long; a trace line is at most ${MAX_TRACE_LINE_CHARS} (one request: ${TRACE_FORMAT})`);
    }
    const t = text.slice(start, end).trim();
    start = end + 1;
    if (t !== '' && !t.startsWith('#')) yield { line, text: t };
  }
}

/** One JSON-lines record. */
function jsonRecord(source: string, line: number, t: string): ServingRequest {
  const past = jsonNestingPast(t, MAX_TRACE_JSON_DEPTH);
  if (past) {
    const where = past.field === null ? '' : `field ${quoteName(past.field)}: `;
    throw new TraceParseError(source, line, `${where}JSON nested deeper than ${MAX_TRACE_JSON_DEPTH} levels (column ${past.column}); a record is one flat object: ${TRACE_FORMAT}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch (e) {
    throw new TraceParseError(source, line, `not valid JSON (${printable(clipText(String((e as Error).message), 120))}); expected ${TRACE_FORMAT}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TraceParseError(source, line, `expected a JSON object, got ${quoteText(t)}`);
  const record = value as Record<string, unknown>;
  const unknown = Object.keys(record).filter((k) => !isTraceColumn(k));
  if (unknown.length) throw new TraceParseError(source, line, `unknown field ${listSome(unknown.map(quoteName))}; expected ${TRACE_COLUMNS.join(', ')}`);
  for (const required of ['prompt_len', 'output_len'] as const) {
    if (!Object.hasOwn(record, required)) throw new TraceParseError(source, line, `missing field '${required}'; expected ${TRACE_FORMAT}`);
  }
  return {
    id: 0,
    promptLen: traceInteger(source, line, 'prompt_len', record.prompt_len),
    outputLen: traceInteger(source, line, 'output_len', record.output_len),
    arrivalStep: Object.hasOwn(record, 'arrival_step') ? traceInteger(source, line, 'arrival_step', record.arrival_step) : 0,
  };
}

/** The columns a CSV header names, or null when `t` is a data line (every cell a number). */
function csvHeader(source: string, line: number, t: string): TraceColumn[] | null {
  const cells = t.split(',').map((c) => c.trim());
  if (cells.every((c) => /^[+]?\d+$/.test(c))) return null;
  const unknown = cells.filter((c) => !isTraceColumn(c));
  if (unknown.length) throw new TraceParseError(source, line, `unknown column ${listSome(unknown.map(quoteName))} in the header; expected ${TRACE_FORMAT}`);
  if (new Set(cells).size !== cells.length) throw new TraceParseError(source, line, 'a column is named twice in the header');
  for (const required of ['prompt_len', 'output_len'] as const) {
    if (!cells.includes(required)) throw new TraceParseError(source, line, `the header has no '${required}' column; expected ${TRACE_FORMAT}`);
  }
  return cells as TraceColumn[];
}

/** One CSV data line, by the header's columns or (none) prompt_len,output_len[,arrival_step]. */
function csvRecord(source: string, line: number, t: string, columns: readonly TraceColumn[] | null): ServingRequest {
  const cells = t.split(',').map((c) => c.trim());
  const names = columns ?? (cells.length === 2 || cells.length === 3 ? TRACE_COLUMNS.slice(0, cells.length) : null);
  if (names === null || cells.length !== names.length) {
    throw new TraceParseError(source, line, `${cells.length} fields; expected ${columns ? `${columns.length} (${columns.join(',')})` : '2 or 3 (prompt_len,output_len[,arrival_step])'}`);
  }
  const get = (c: TraceColumn): string | undefined => {
    const i = names.indexOf(c);
    return i < 0 ? undefined : cells[i];
  };
  const arrival = get('arrival_step');
  return {
    id: 0,
    promptLen: traceInteger(source, line, 'prompt_len', get('prompt_len')),
    outputLen: traceInteger(source, line, 'output_len', get('output_len')),
    arrivalStep: arrival === undefined ? 0 : traceInteger(source, line, 'arrival_step', arrival),
  };
}

/**
 * Parses a request trace: JSON lines (when the first non-blank line starts with `{`) or CSV with
 * columns prompt_len,output_len[,arrival_step] (a header line naming them, in any order, is optional;
 * without one the columns are in that order). Blank lines and lines starting with `#` are skipped;
 * arrival_step defaults to 0. Requests are returned in arrival order (stable), ids renumbered 0…n−1
 * in that order. Bounded: lines of at most MAX_TRACE_LINE_CHARS, JSON at most MAX_TRACE_JSON_DEPTH
 * deep, values within MAX_REQUEST_TOKENS / MAX_ARRIVAL_STEP, at most `options.maxRequests` requests.
 * @param source the file name, for messages
 * @throws TraceParseError naming the line and the field
 */
export function parseTrace(text: string, source = 'trace', options: TraceParseOptions = {}): ServingRequest[] {
  const name = printable(clipText(source, MAX_SOURCE_CHARS));
  const maxRequests = options.maxRequests ?? MAX_REQUESTS;
  const requests: ServingRequest[] = [];
  let format: 'json' | 'csv' | null = null;
  let columns: TraceColumn[] | null = null;
  let headerLine = 0;
  for (const { line, text: t } of contentLines(text, name)) {
    if (format === null) {
      if (t.startsWith('[')) throw new TraceParseError(name, line, `a JSON array; expected ${TRACE_FORMAT}, one request per line`);
      format = t.startsWith('{') ? 'json' : 'csv';
      if (format === 'csv') {
        columns = csvHeader(name, line, t);
        if (columns) {
          headerLine = line;
          continue;
        }
      }
    }
    if (requests.length >= maxRequests) {
      const why = options.maxRequestsReason ? ` (${options.maxRequestsReason})` : '';
      throw new TraceParseError(name, line, `request ${requests.length + 1} is one too many: limit ${maxRequests} requests${why}; try a trace of at most ${maxRequests} requests`);
    }
    requests.push(format === 'json' ? jsonRecord(name, line, t) : csvRecord(name, line, t, columns));
  }
  if (format === null) throw new TraceParseError(name, 1, `no requests found; expected ${TRACE_FORMAT}`);
  if (requests.length === 0) throw new TraceParseError(name, headerLine, 'a header but no requests');
  // Stable sort by arrival (Array.prototype.sort is stable), then ids in that order.
  requests.sort((a, b) => a.arrivalStep - b.arrivalStep);
  requests.forEach((r, id) => (r.id = id));
  return requests;
}
