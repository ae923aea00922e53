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
 */
import { SeededRandom } from '../reference/random';

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
  if (!Number.isFinite(value) || value <= 0) throw new RequestSpecError(`${name} must be a positive number, got ${value}`);
}

/** Checks a distribution; throws RequestSpecError naming the bad field. */
export function validateDistribution(d: LengthDistribution, what = 'length'): void {
  switch (d.kind) {
    case 'fixed':
      requirePositive(`${what} value`, d.value);
      return;
    case 'uniform':
      requirePositive(`${what} min`, d.min);
      requirePositive(`${what} max`, d.max);
      if (d.max < d.min) throw new RequestSpecError(`${what} uniform range is empty: min ${d.min} > max ${d.max}`);
      return;
    case 'lognormal':
      requirePositive(`${what} median`, d.median);
      if (!Number.isFinite(d.sigma) || d.sigma < 0) throw new RequestSpecError(`${what} sigma must be a number ≥ 0, got ${d.sigma}`);
      if (d.min !== undefined) requirePositive(`${what} min`, d.min);
      if (d.max !== undefined) requirePositive(`${what} max`, d.max);
      if (d.min !== undefined && d.max !== undefined && d.max < d.min) throw new RequestSpecError(`${what} range is empty: min ${d.min} > max ${d.max}`);
      return;
    default:
      throw new RequestSpecError(`unknown ${what} distribution kind '${String((d as { kind: unknown }).kind)}'; use fixed, uniform or lognormal`);
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

/**
 * Parses a distribution from text (CLI flags): `256` or `fixed:256`; `uniform:128-512`;
 * `lognormal:512,0.8` or `lognormal:512,0.8,16-8192` (median, sigma, optional clamp range).
 */
export function parseLengthDistribution(text: string, what = 'length'): LengthDistribution {
  const number = (s: string, field: string): number => {
    const v = Number(s);
    if (s.trim() === '' || !Number.isFinite(v)) throw new RequestSpecError(`${what}: ${field} '${s}' is not a number (in '${text}')`);
    return v;
  };
  const range = (s: string): [number, number] => {
    const parts = s.split('-');
    if (parts.length !== 2) throw new RequestSpecError(`${what}: expected a range MIN-MAX, got '${s}' (in '${text}')`);
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
    if (parts.length < 2 || parts.length > 3) throw new RequestSpecError(`${what}: expected lognormal:MEDIAN,SIGMA[,MIN-MAX], got '${text}'`);
    d = { kind, median: number(parts[0], 'median'), sigma: number(parts[1], 'sigma') };
    if (parts.length === 3) [d.min, d.max] = range(parts[2]);
  } else {
    throw new RequestSpecError(`${what}: unknown distribution '${kind}' in '${text}'; use N, fixed:N, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA[,MIN-MAX]`);
  }
  validateDistribution(d, what);
  return d;
}

/** A seeded request stream; the same spec always gives the same requests. */
export function generateRequests(spec: RequestStreamSpec): ServingRequest[] {
  if (!Number.isSafeInteger(spec.count) || spec.count < 0) throw new RequestSpecError(`request count must be an integer ≥ 0, got ${spec.count}`);
  validateDistribution(spec.prompt, 'prompt length');
  validateDistribution(spec.output, 'output length');
  const arrival = spec.arrival ?? { kind: 'all-at-once' };
  if (arrival.kind === 'poisson') requirePositive('arrival rate (requests per step)', arrival.perStep);
  // Separate streams, so changing one distribution leaves the other's draws unchanged.
  const promptRng = new SeededRandom(spec.seed);
  const outputRng = new SeededRandom(spec.seed ^ 0x6f757470);
  const arrivalRng = new SeededRandom(spec.seed ^ 0x61727276);
  let clock = 0;
  const requests: ServingRequest[] = [];
  for (let id = 0; id < spec.count; id++) {
    if (arrival.kind === 'poisson' && id > 0) clock += -Math.log(1 - arrivalRng.uniform()) / arrival.perStep;
    requests.push({ id, promptLen: sampleLength(spec.prompt, promptRng), outputLen: sampleLength(spec.output, outputRng), arrivalStep: Math.floor(clock) });
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
  if (!isRegimeName(name)) throw new RequestSpecError(`unknown regime '${String(name)}'; use ${Object.keys(REGIMES).join(' or ')}`);
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

function traceInteger(source: string, line: number, column: TraceColumn, value: unknown): number {
  const min = column === 'arrival_step' ? 0 : 1;
  const n = typeof value === 'string' && /^\s*[+]?\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
    throw new TraceParseError(source, line, `${column} is ${JSON.stringify(value)}; expected an integer ≥ ${min}`);
  }
  return n;
}

/**
 * Parses a request trace: JSON lines (when the first non-blank line starts with `{`) or CSV with
 * columns prompt_len,output_len[,arrival_step] (a header line naming them, in any order, is optional;
 * without one the columns are in that order). Blank lines and lines starting with `#` are skipped;
 * arrival_step defaults to 0. Requests are returned in arrival order (stable), ids renumbered 0…n−1
 * in that order.
 * @param source the file name, for messages
 * @throws TraceParseError naming the line and the field
 */
export function parseTrace(text: string, source = 'trace'): ServingRequest[] {
  const lines = text.split(/\r?\n/);
  const content = lines.map((raw, i) => ({ line: i + 1, text: raw.trim() })).filter((l) => l.text !== '' && !l.text.startsWith('#'));
  if (content.length === 0) throw new TraceParseError(source, 1, `no requests found; expected ${TRACE_FORMAT}`);
  const rows: { promptLen: number; outputLen: number; arrivalStep: number; line: number }[] = [];
  if (content[0].text.startsWith('{')) {
    for (const { line, text: t } of content) {
      let value: unknown;
      try {
        value = JSON.parse(t);
      } catch (e) {
        throw new TraceParseError(source, line, `not valid JSON (${(e as Error).message}); expected ${TRACE_FORMAT}`);
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TraceParseError(source, line, `expected a JSON object, got ${t.slice(0, 40)}`);
      const record = value as Record<string, unknown>;
      const unknown = Object.keys(record).filter((k) => !(TRACE_COLUMNS as readonly string[]).includes(k));
      if (unknown.length) throw new TraceParseError(source, line, `unknown field ${unknown.map((k) => `'${k}'`).join(', ')}; expected ${TRACE_COLUMNS.join(', ')}`);
      for (const required of ['prompt_len', 'output_len'] as const) {
        if (!(required in record)) throw new TraceParseError(source, line, `missing field '${required}'; expected ${TRACE_FORMAT}`);
      }
      rows.push({
        line,
        promptLen: traceInteger(source, line, 'prompt_len', record.prompt_len),
        outputLen: traceInteger(source, line, 'output_len', record.output_len),
        arrivalStep: 'arrival_step' in record ? traceInteger(source, line, 'arrival_step', record.arrival_step) : 0,
      });
    }
  } else {
    let columns: TraceColumn[] | null = null;
    let body = content;
    const firstCells = content[0].text.split(',').map((c) => c.trim());
    if (firstCells.some((c) => !/^[+]?\d+$/.test(c))) {
      // A header.
      const unknown = firstCells.filter((c) => !(TRACE_COLUMNS as readonly string[]).includes(c));
      if (unknown.length) throw new TraceParseError(source, content[0].line, `unknown column ${unknown.map((c) => `'${c}'`).join(', ')} in the header; expected ${TRACE_FORMAT}`);
      if (new Set(firstCells).size !== firstCells.length) throw new TraceParseError(source, content[0].line, 'a column is named twice in the header');
      for (const required of ['prompt_len', 'output_len'] as const) {
        if (!firstCells.includes(required)) throw new TraceParseError(source, content[0].line, `the header has no '${required}' column; expected ${TRACE_FORMAT}`);
      }
      columns = firstCells as TraceColumn[];
      body = content.slice(1);
    }
    for (const { line, text: t } of body) {
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
      rows.push({
        line,
        promptLen: traceInteger(source, line, 'prompt_len', get('prompt_len')),
        outputLen: traceInteger(source, line, 'output_len', get('output_len')),
        arrivalStep: arrival === undefined ? 0 : traceInteger(source, line, 'arrival_step', arrival),
      });
    }
    if (rows.length === 0) throw new TraceParseError(source, content[0].line, 'a header but no requests');
  }
  // Stable sort by arrival (Array.prototype.sort is stable).
  rows.sort((a, b) => a.arrivalStep - b.arrivalStep);
  return rows.map((r, id) => ({ id, promptLen: r.promptLen, outputLen: r.outputLen, arrivalStep: r.arrivalStep }));
}
