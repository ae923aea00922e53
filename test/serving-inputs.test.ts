/**
 * Hostile inputs of the serving simulator and its `simulate` command: every one is refused before any
 * work with the project's own error and one bounded line (exit 2 from the command), or runs bounded.
 *  - an idle gap (a trace arriving at step 2·10^6) is skipped in one step and one record;
 *  - sizes are estimated before allocation: a huge --requests, step records or JSON text, or per-step
 *    K/V values are refused with "needs X, limit Y, try Z", and the suggested Z does fit;
 *  - every numeric flag is ranged (non-integers, negatives, zero, absurd sizes, overlong text);
 *  - trace files: lines, JSON depth, request counts and message lengths are bounded, errors name the
 *    line and the field; a seeded mutation fuzzer over valid traces meets only TraceParseError;
 *  - --json to a missing folder is refused before any work.
 * The planning (planSimulate) is tested without a GPU; the idle gap also runs through the real kernels
 * (test/gpu-harness.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { CliEnv } from '../src/cli/commands';
import { PageAllocator } from '../src/cache/page-allocator';
import { KvConfigError, PagedKvCache } from '../src/cache/paged-kv-cache';
import { CliInputError } from '../src/cli/output-file';
import { planSimulate, simulateCommand, SimulateUsageError } from '../src/cli/simulate-command';
import { SeededRandom } from '../src/reference/random';
import {
  generateRequests, MAX_ARRIVAL_STEP, MAX_REQUEST_TOKENS, MAX_TRACE_JSON_DEPTH, MAX_TRACE_LINE_CHARS, parseTrace, RequestSpecError, TraceParseError,
  type ServingRequest,
} from '../src/serving/requests';
import { ContinuousBatchingScheduler, reservePlan, SchedulerError } from '../src/serving/scheduler';
import { estimateSweepSize, MAX_STRING_CHARS, SimulateLimitError, type HostLimits } from '../src/serving/simulate-limits';
import { formatSimulateReport, recordAtStep, simulateReportJson } from '../src/serving/simulate-report';
import { ServingSimulator, type ModelShape, type StepRecord } from '../src/serving/simulator';
import { testGpu } from './gpu-harness';
import { thrown } from './thrown';

const FIXTURES = fileURLToPath(new URL('./fixtures/traces/', import.meta.url));
const IDLE_GAP = 2_000_000;

/** Fixed limits, so the messages and suggestions are the same on every machine. */
const LIMITS: HostLimits = { heapBytes: 2 * 2 ** 30, heapSource: 'test heap', bufferBytes: 2 ** 30, bufferSource: 'test buffers' };
const SMALL: HostLimits = { heapBytes: 64 * 2 ** 20, heapSource: 'test heap', bufferBytes: 64 * 2 ** 20, bufferSource: 'test buffers' };

const scratch = mkdtempSync(join(tmpdir(), 'serving-inputs-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The fix a "try --flag ≤ N" message suggests. */
function suggested(message: string, flag: string): number {
  const match = new RegExp(`try ${flag} ≤ (\\d+)`).exec(message);
  if (!match) throw new Error(`no "try ${flag} ≤ N" in: ${message}`);
  return Number(match[1]);
}

const noGpu: CliEnv = { gpu: () => Promise.reject(new Error('the GPU must not be opened for bad input')) };

/** Runs the command with stdout and stderr captured. */
async function runCommand(args: string[], env: CliEnv = noGpu): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  let stdout = '';
  let stderr = '';
  process.stdout.write = ((chunk: string) => ((stdout += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => ((stderr += chunk), true)) as typeof process.stderr.write;
  try {
    return { code: await simulateCommand.run(args, env), stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

// ------------------------------------------------------------------------------------------------
// idle gaps

describe('idle gaps are skipped in one step', () => {
  it('scheduler: a 2·10^6-step gap is one skipIdle call; latencies count the skipped steps', () => {
    const alloc = new PageAllocator(16, 8);
    const requests: ServingRequest[] = [
      { id: 0, promptLen: 8, outputLen: 2, arrivalStep: 0 },
      { id: 1, promptLen: 8, outputLen: 2, arrivalStep: IDLE_GAP },
    ];
    const s = new ContinuousBatchingScheduler(alloc, requests, { maxRunning: 4, prefillChunkTokens: 8 });
    expect(s.idleSteps()).toBe(0); // request 0 is there at step 0
    let calls = 0;
    while (!s.done) {
      const idle = s.idleSteps();
      if (idle > 0) s.skipIdle(idle);
      else {
        const plan = s.planStep();
        reservePlan(alloc, plan);
        s.completeStep(plan);
      }
      calls++;
    }
    expect(calls).toBeLessThan(10);
    expect(s.states.map((x) => [x.phase, x.finishedAtStep])).toEqual([['finished', 2], ['finished', IDLE_GAP + 2]]);
    expect(() => s.skipIdle(1)).toThrow(SchedulerError); // nothing left to wait for
  });

  it('skipIdle refuses more than the gap, and a gap while a step is planned', () => {
    const s = new ContinuousBatchingScheduler(new PageAllocator(4, 8), [{ id: 0, promptLen: 1, outputLen: 1, arrivalStep: 10 }], { maxRunning: 1, prefillChunkTokens: 8 });
    expect(s.idleSteps()).toBe(10);
    expect(() => s.skipIdle(11)).toThrow(/10 idle steps ahead of step 0/);
    expect(() => s.skipIdle(0)).toThrow(SchedulerError);
    s.skipIdle(4);
    expect([s.step, s.idleSteps()]).toEqual([4, 6]);
  });

  it('recordAtStep finds the record covering a step through idle gaps', () => {
    const rec = (step: number, span: number) => ({ step, span }) as StepRecord;
    const records = [rec(0, 1), rec(1, 1), rec(2, 999_998), rec(1_000_000, 1)];
    expect(recordAtStep(records, 0)?.step).toBe(0);
    expect(recordAtStep(records, 2)?.step).toBe(2);
    expect(recordAtStep(records, 999_999)?.step).toBe(2);
    expect(recordAtStep(records, 1_000_000)?.step).toBe(1_000_000);
    expect(recordAtStep(records, 1_000_001)).toBeUndefined();
  });

  const TINY: ModelShape = { name: 'tiny', headDim: 64, numQueryHeads: 4, numKvHeads: 2, numLayers: 1 };

  it('the simulator (real kernels) runs a trace arriving at step 2·10^6 in a few records, quickly', async () => {
    const ctx = await testGpu();
    const cache = await PagedKvCache.create(ctx, { method: 'int4', headDim: TINY.headDim, numQueryHeads: TINY.numQueryHeads, numKvHeads: TINY.numKvHeads, pageSize: 8, numPages: 16 });
    const requests = parseTrace(readFileSync(join(FIXTURES, 'idle-gap.csv'), 'utf8'), 'idle-gap.csv');
    try {
      // A step limit inside the gap: the gap record is cut at the limit; the late request is unfinished.
      // (Also compiles the pipelines, so the timed run below measures the simulation.)
      const limited = new ServingSimulator(cache, requests, { maxRunning: 2, prefillChunkTokens: 8, dataPoolSize: 1 << 12 });
      const cut = await limited.run({ maxSteps: 1000 });
      limited.release();
      expect(cut.summary).toMatchObject({ steps: 1000, finished: 1, unfinished: 1 });
      expect(cut.steps.at(-1)).toMatchObject({ step: 5, span: 995 });

      // Until done: before the gap was skipped this took 73 s and 3.2 GB; now 11 records.
      const started = performance.now();
      const rss = process.memoryUsage().rss;
      const sim = new ServingSimulator(cache, requests, { maxRunning: 2, prefillChunkTokens: 8, dataPoolSize: 1 << 12 });
      const result = await sim.run();
      sim.release();
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(process.memoryUsage().rss - rss).toBeLessThan(256 * 2 ** 20);
      const s = result.summary;
      expect(s.finished).toBe(2);
      expect(s.steps).toBe(IDLE_GAP + 5); // 1 prefill + 4 decode steps for the second request
      expect(s.idleSteps).toBe(IDLE_GAP - 5);
      expect(result.steps.length).toBe(11);
      const gap = result.steps[5];
      expect(gap).toMatchObject({ step: 5, span: IDLE_GAP - 5, running: 0, decodeTokens: 0, usedPages: 0, decodeNs: 0 });
      expect(result.steps.reduce((n, r) => n + r.span, 0)).toBe(s.steps);
      expect(s.meanLatencySteps).toBe(5);
      expect(s.meanPageFraction).toBeLessThan(1e-4); // weighted by the steps each record covers

      // A record limit stops a run that would outgrow its memory, with the project's error.
      const capped = new ServingSimulator(cache, requests, { maxRunning: 2, prefillChunkTokens: 8, dataPoolSize: 1 << 12 });
      await expect(capped.run({ maxRecords: 7 })).rejects.toThrow(SimulateLimitError);
      capped.release();
    } finally {
      cache.destroy();
    }
  });

  it('simulate --trace with the gap: exit 0 in seconds, a small JSON, the report says idle', async () => {
    const json = join(scratch, 'gap.json');
    const started = performance.now();
    const { code, stdout, stderr } = await runCommand(
      ['--trace', join(FIXTURES, 'idle-gap.csv'), '--steps', '0', '--head-dim', '64', '--query-heads', '4', '--kv-heads', '2', '--layers', '1',
        '--budget-mib', '1', '--methods', 'int4', '--max-concurrency', '1,2', '--page-size', '8', '--json', json, '--quiet'],
      { gpu: () => testGpu() },
    );
    expect(code, stderr).toBe(0);
    expect(performance.now() - started).toBeLessThan(20_000);
    const text = readFileSync(json, 'utf8');
    expect(text.length).toBeLessThan(100_000);
    const result = JSON.parse(text);
    expect(result.version).toBe(3);
    expect(result.methods[0].runs[1].summary).toMatchObject({ steps: IDLE_GAP + 5, idleSteps: IDLE_GAP - 5, finished: 2 });
    expect(stdout).toMatch(/idle = steps with nothing running/);
    expect(stdout).toMatch(/^\d+\s+idle$/m);
    expect(formatSimulateReport(result)).toBe(stdout.trimEnd());
    expect(simulateReportJson(result)).toBe(text);
  });
});

// ------------------------------------------------------------------------------------------------
// sizes, before any work

describe('sizes are bounded before allocation', () => {
  it('--requests 1000000000 is refused in milliseconds with needs / limit / try, and the suggestion fits', async () => {
    const started = performance.now();
    const err = thrown(() => planSimulate(['--requests', '1000000000'], LIMITS));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(err).toBeInstanceOf(SimulateLimitError);
    // The suggestion leaves room for the 24 runs' summaries (3 repeats + the median again, 4 KiB each) and
    // for the records held at once, (24 runs + 2 more repeats) × 256 steps (256 B each): (2 GiB − 384 KiB − 1.625 MiB) / 512 B.
    expect(err.message).toBe('--requests 1000000000 needs ~477 GiB of host memory for request state; limit 2.00 GiB (test heap); try --requests ≤ 4190208');
    // With the machine's own limits, through the command: exit 2, no GPU, one line.
    const { code, stderr } = await runCommand(['--requests', '1000000000']);
    expect(code).toBe(2);
    expect(stderr.split('\n')[0]).toMatch(/^simulate: --requests 1000000000 needs ~\d+ GiB of host memory for request state; limit [\d.]+ [GM]iB \(.*\); try --requests ≤ \d+$/);
    expect(performance.now() - started).toBeLessThan(2000);
    // The suggestion of a small heap is planned (and drawn) without complaint.
    const small = ['--steps', '1', '--max-concurrency', '1'];
    const fits = suggested(thrown(() => planSimulate(['--requests', '1000000000', ...small], SMALL)).message, '--requests');
    expect(fits).toBe(130973); // (64 MiB − 3 runs × 4 summaries × 4 KiB − (3 + 2) records × 256 B) / 512 B
    expect(planSimulate(['--requests', String(fits), ...small], SMALL).sweep.requests).toHaveLength(fits);
    expect(() => planSimulate(['--requests', String(fits + 3), ...small], SMALL)).toThrow(SimulateLimitError);
  });

  it('with repeats, a plan that fits also fits the hard limit on records held at once', () => {
    for (const repeats of ['1', '3', '7']) {
      for (const flags of [['--steps', '0'], ['--steps', '5000', '--json', join(scratch, 'r.json')]]) {
        const plan = planSimulate(['--regime', 'long', '--prefill-tokens-per-step', '512', '--repeats', repeats, ...flags], LIMITS);
        expect(plan.sweep.repeats).toBe(Number(repeats));
        expect(plan.size.heldRecords, `${repeats} ${flags.join(' ')}`).toBeLessThanOrEqual(plan.sweep.maxStepRecords!);
      }
    }
    expect(planSimulate([], LIMITS).sweep.repeats).toBe(3);
  });

  it('step records past the heap are refused with a --steps that fits', () => {
    const flags = ['--regime', 'long', '--prefill-tokens-per-step', '512'];
    const err = thrown(() => planSimulate(['--steps', '0', ...flags], SMALL));
    expect(err).toBeInstanceOf(SimulateLimitError);
    expect(err.message).toMatch(/^--steps 0 \(until done\): ~\d+ step records over 24 runs × 3 repeats with 256 requests need ~[\d.]+ MiB of host memory; limit 64.0 MiB \(test heap\); try --steps ≤ \d+$/);
    const steps = suggested(err.message, '--steps');
    expect(planSimulate(['--steps', String(steps), ...flags], SMALL).sweep.maxSteps).toBe(steps);
    expect(() => planSimulate(['--steps', String(steps + 1), ...flags], SMALL)).toThrow(SimulateLimitError);
  });

  it('a JSON text past the longest V8 string is refused before the run (not "Invalid string length" after it)', () => {
    const json = join(scratch, 'big.json');
    const big: HostLimits = { ...LIMITS, heapBytes: 16 * 2 ** 30 };
    const flags = ['--regime', 'long', '--prefill-tokens-per-step', '512', '--json', json];
    const err = thrown(() => planSimulate(['--steps', '0', ...flags], big));
    expect(err.message).toMatch(new RegExp(`characters of JSON; limit ${MAX_STRING_CHARS} \\(the longest string V8 makes\\); try --steps ≤ \\d+`));
    const plan = planSimulate(['--steps', String(suggested(err.message, '--steps')), ...flags], big);
    expect(plan.size.jsonChars).toBeLessThanOrEqual(MAX_STRING_CHARS);
    expect(plan.sweep.maxStepRecords).toBeLessThanOrEqual(MAX_STRING_CHARS / 1000);
  });

  it("one step's K/V values past the free memory are refused with a --prefill-tokens-per-step that fits", () => {
    const err = thrown(() => planSimulate([], SMALL));
    expect(err.message).toMatch(/^cap 128 × --chunk 512 writes up to 32768 prompt tokens per step: needs ~[\d.]+ MiB of host memory for their K\/V values; limit 64.0 MiB \(test buffers\); try --prefill-tokens-per-step ≤ \d+$/);
    const tokens = suggested(err.message, '--prefill-tokens-per-step');
    expect(planSimulate(['--prefill-tokens-per-step', String(tokens)], SMALL).size.stepBufferBytes).toBeLessThanOrEqual(SMALL.bufferBytes);
  });

  it('the estimate bounds the records exactly when the steps are limited', () => {
    const requests = generateRequests({ count: 100, seed: 1, prompt: { kind: 'fixed', value: 100 }, output: { kind: 'fixed', value: 50 } });
    const base = { requests, numPages: [1000, 4000], caps: [1, 8], pageSize: 16, prefillChunkTokens: 64, model: { headDim: 128, numQueryHeads: 32, numKvHeads: 8 }, json: true };
    expect(estimateSweepSize({ ...base, maxSteps: 10 }).stepRecords).toBe(40);
    // With repeats, one run's records are held for each repeat until its median is known.
    expect(estimateSweepSize({ ...base, maxSteps: 10, repeats: 3 })).toMatchObject({ stepRecords: 40, maxRunRecords: 10, heldRecords: 40 + 2 * 10 });
    const open = estimateSweepSize({ ...base, maxSteps: 0 });
    // Serial work: 100 × (2 chunks + 50 tokens); cap 1 takes all of it, cap 8 an eighth (plus the longest request).
    expect(open.maxRunRecords).toBe(100 * 52 + 1);
    expect(open.stepRecords).toBe(2 * (5201 + Math.ceil(5200 / 8) + 52 + 1));
    expect(open.jsonChars).toBeGreaterThan(0);
  });
});

// ------------------------------------------------------------------------------------------------
// numeric flags

describe('every flag is ranged before any work', () => {
  const long = '9'.repeat(100_000);
  const cases: [string[], RegExp][] = [
    [['--max-concurrency', '1e9'], /--max-concurrency "1e9": expected an integer ≥ 1 and ≤ 65535/],
    [['--max-concurrency', '1000000000'], /--max-concurrency "1000000000": expected an integer ≥ 1 and ≤ 65535/],
    [['--max-concurrency', '4,-2'], /--max-concurrency "-2": expected an integer/],
    [['--max-concurrency', '4,,8'], /--max-concurrency "": expected an integer/],
    [['--max-concurrency', '2.5'], /expected an integer/],
    [['--max-concurrency', Array.from({ length: 40 }, (_, i) => i + 1).join(',')], /--max-concurrency: 40 items; at most 32/],
    [['--max-concurrency', long], /--max-concurrency: a list of 100000 characters; at most 1024/],
    [['--requests', '0'], /--requests "0": expected an integer ≥ 1/],
    [['--requests=-5'], /--requests "-5"/],
    [['--requests', '1e3'], /--requests "1e3": expected an integer/],
    [['--requests', '99999999999999999999'], /--requests "99999999999999999999": expected an integer/],
    [['--requests', '20000000'], /needs ~9.54 GiB of host memory for request state; limit 2.00 GiB/],
    [['--steps=-1'], /--steps "-1": expected an integer ≥ 0 and ≤ 1000000000/],
    [['--steps', '10000000000'], /--steps "10000000000"/],
    [['--steps', 'NaN'], /--steps "NaN"/],
    [['--steps', ''], /--steps "": expected an integer/],
    [['--steps', long], /--steps "9{40}…": expected an integer/],
    [['--chunk', '0'], /--chunk "0": expected an integer ≥ 1 and ≤ 16777216/],
    [['--chunk', '16777217'], /--chunk "16777217"/],
    [['--prefill-tokens-per-step', '0'], /--prefill-tokens-per-step "0"/],
    [['--reserve-pages=-1'], /--reserve-pages "-1"/],
    [['--page-size', '4'], /--page-size "4": expected an integer ≥ 8 and ≤ 128/],
    [['--page-size', '100000'], /--page-size "100000"/],
    [['--budget-mib', '0'], /--budget-mib "0": expected a positive number/],
    [['--budget-mib=-1'], /--budget-mib "-1"/],
    [['--budget-mib', 'Infinity'], /--budget-mib "Infinity"/],
    [['--budget-mib', '1e12'], /--budget-mib "1e12": expected a positive number ≤ 1048576/],
    [['--budget-mib', '1e-9'], /holds no fp16 page .* raise the budget/],
    [['--budget-mib', '1000000', '--head-dim', '32', '--kv-heads', '1', '--query-heads', '1', '--page-size', '8', '--methods', 'int4'], /buys \d+ int4 pages, more than the 67108864 a pool may have; try a budget ≤ /],
    [['--seed', '4294967296'], /--seed "4294967296": expected an integer ≥ 0 and ≤ 4294967295/],
    [['--layers', '0'], /--layers "0"/],
    [['--head-dim', '48'], /headDim 48 must be a multiple of 32/],
    [['--head-dim', '100000'], /--head-dim "100000"/],
    [['--query-heads', '6', '--kv-heads', '4'], /numQueryHeads 6 is not a multiple of numKvHeads 4/],
    [['--hadamard-block', '3'], /Hadamard block 3 is not a power of two/],
    [['--scale', '0'], /--scale "0": expected a positive number/],
    [['--scale', '1e9'], /--scale "1e9": expected a positive number ≤ 1024/],
    [['--arrival-rate', '0'], /--arrival-rate "0"/],
    [['--arrival-rate', '1e-300', '--requests', '3'], /Poisson arrivals at 1e-300 per step put request 1 past step 1099511627776/],
    [['--prompt-len', 'lognormal:1000,30', '--requests', '100'], /prompt length: request \d+ drew \d+ tokens, more than 16777216; clamp the lognormal/],
    [['--prompt-len', 'fixed:20000000'], /--prompt-len value must be at most 16777216 tokens/],
    [['--prompt-len', `uniform:1-${long}`], /--prompt-len: "uniform:1-9{30}….*" is 100010 characters long; a distribution is at most 200/],
    [['--methods', 'int4,' + 'x'.repeat(10_000)], /--methods: a list of 10005 characters/],
    [['--methods', 'fp8\n'], /--methods: unknown method 'fp8'/],
    [['--regime', 'x'.repeat(10_000)], /--regime "x{40}…": expected short or long/],
    [['--timing', '\u0000'], /--timing "\\u0000"/],
    [['--trace', join(FIXTURES, 'valid.csv'), '--scale', '2'], /--trace gives the whole stream: leave out .*--scale/],
    [['--trace', scratch], /--trace .*: not a file/],
    [['--trace', join(scratch, 'missing.csv')], /cannot read --trace .*missing\.csv: ENOENT/],
    [['--json', '/nonexistent-folder/x.json'], /--json \/nonexistent-folder\/x\.json: folder \/nonexistent-folder does not exist/],
    [['--json', scratch], /is a folder; give a file name/],
    [['--json', '/nonexistent-folder/x.json', '--requests', '1000000000'], /--json .*folder .* does not exist/], // the output file first
  ];

  it('each bad value: the project error before any work; through the command exit 2, one bounded line', async () => {
    for (const [args, message] of cases) {
      const err = thrown(() => planSimulate(args, LIMITS));
      const ok = [SimulateUsageError, SimulateLimitError, RequestSpecError, TraceParseError, KvConfigError, CliInputError].some((c) => err instanceof c);
      expect(ok, `${args.join(' ').slice(0, 80)}: ${err.constructor.name}: ${err.message}`).toBe(true);
      expect(err.message, args.join(' ').slice(0, 80)).toMatch(message);
      const { code, stderr } = await runCommand([...args, '--quiet']);
      expect(code, args.join(' ').slice(0, 80)).toBe(2);
      const first = stderr.split('\n')[0];
      expect(first.startsWith('simulate: ')).toBe(true);
      expect(first.length).toBeLessThanOrEqual(2100);
      expect(stderr).not.toMatch(/\n\s+at /); // no stack
    }
    // `--flag -5` (a value that looks like a flag) is node:util's error, which the CLI maps to exit 2.
    expect(thrown(() => planSimulate(['--requests', '-5'], LIMITS))).toMatchObject({ code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' });
  });

  it('a random mix of hostile flag values: a plan or the project error, never another', () => {
    const rng = new SeededRandom(7);
    const flags = ['--requests', '--steps', '--max-concurrency', '--chunk', '--prefill-tokens-per-step', '--reserve-pages', '--page-size', '--budget-mib', '--seed',
      '--layers', '--head-dim', '--query-heads', '--kv-heads', '--hadamard-block', '--scale', '--arrival-rate', '--prompt-len', '--output-len', '--regime', '--methods', '--timing'];
    const values = ['0', '1', '-1', '1.5', '2', '8', '64', '128', '1e9', '1000000000', '99999999999999999999', '', ' ', 'abc', 'NaN', 'Infinity', '-0', '0x10', '１２',
      '4,0', '1,2,3', 'int4', 'fp16,int4', 'short', 'long', 'lognormal:10,1', 'uniform:5-1', 'fixed:1e30', 'lognormal:4,0.5,1-8', 'x'.repeat(5000), '\u0000\n', '1'.repeat(40)];
    let plans = 0;
    for (let i = 0; i < 1500; i++) {
      const args: string[] = [];
      for (let k = 1 + rng.int(3); k > 0; k--) args.push(flags[rng.int(flags.length)], values[rng.int(values.length)]);
      // Keep the planned streams small: the point is the checks, not drawing 4 million requests.
      args.push('--requests', String(1 + rng.int(64)));
      try {
        planSimulate(args, LIMITS);
        plans++;
      } catch (err) {
        const known = [SimulateUsageError, SimulateLimitError, RequestSpecError, TraceParseError, KvConfigError, CliInputError].some((c) => err instanceof c) ||
          String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_');
        if (!known) throw new Error(`${JSON.stringify(args).slice(0, 300)} threw ${(err as Error).constructor.name}: ${(err as Error).message}`);
        expect((err as Error).message.length).toBeLessThan(2000);
      }
    }
    expect(plans).toBeGreaterThan(50);
  });
});

// ------------------------------------------------------------------------------------------------
// trace files

describe('trace files are bounded and their errors name the line and field', () => {
  const deep = (n: number, open = '[', close = ']') => open.repeat(n) + close.repeat(n);

  it('a value nested 10^5 deep: refused without a stack overflow, naming the line', () => {
    const text = `{"prompt_len": 1, "output_len": 1}\n{"prompt_len": ${deep(100_000)}, "output_len": 1}\n`;
    const err = thrown(() => parseTrace(text, 'deep.jsonl'));
    expect(err).toBeInstanceOf(TraceParseError);
    expect(err.message).toMatch(new RegExp(`^deep\\.jsonl:2: the line is 200033 characters long; a trace line is at most ${MAX_TRACE_LINE_CHARS}`));
    // Within the line limit, the depth limit names the field; objects count as arrays do.
    const arrays = thrown(() => parseTrace(`{"output_len": 1, "prompt_len": ${deep(2000)}}`, 't'));
    expect(arrays.message).toMatch(new RegExp(`^t:1: field 'prompt_len': JSON nested deeper than ${MAX_TRACE_JSON_DEPTH} levels \\(column 48\\)`));
    const objects = thrown(() => parseTrace(`{"prompt_len": 1, "output_len": 1, "x": ${'{"a":'.repeat(600)}1${'}'.repeat(600)}}`, 't'));
    expect(objects.message).toMatch(/^t:1: field 'x': JSON nested deeper than 16 levels/);
    // Brackets inside strings are not nesting: the value is refused as what it is.
    expect(() => parseTrace(`{"prompt_len": "${'['.repeat(3000)}", "output_len": 1}`, 't')).toThrow(/^t:1: prompt_len is "\[{40}…"; expected an integer ≥ 1 and ≤ 16777216$/);
    // A little nesting is a type error naming the field.
    expect(() => parseTrace('{"prompt_len": [[1]], "output_len": 1}', 't')).toThrow("t:1: prompt_len is an array of 1 items; expected an integer ≥ 1 and ≤ 16777216");
    expect(() => parseTrace('{"prompt_len": 1, "output_len": {"n": 2}}', 't')).toThrow("t:1: output_len is an object; expected an integer");
  });

  it('the deep trace through the command: exit 2, one line', async () => {
    const file = join(scratch, 'deep.jsonl');
    writeFileSync(file, `{"prompt_len": ${deep(100_000, '{"a":', '}')}, "output_len": 1}\n`);
    const { code, stderr } = await runCommand(['--trace', file]);
    expect(code).toBe(2);
    expect(stderr.split('\n')[0]).toMatch(/deep\.jsonl:1: the line is \d+ characters long/);
  });

  it('long lists and long values in messages are cut', () => {
    const fields = Array.from({ length: 300 }, (_, i) => `"k${i}": 1`).join(', ');
    const many = thrown(() => parseTrace(`{${fields}}`, 't'));
    expect(many.message).toBe("t:1: unknown field 'k0', 'k1', 'k2', 'k3', 'k4', … and 295 more; expected prompt_len, output_len, arrival_step");
    const columns = thrown(() => parseTrace(`prompt_len,output_len,${Array.from({ length: 500 }, (_, i) => `c${i}`).join(',')}\n1,1\n`, 't'));
    expect(columns.message).toMatch(/^t:1: unknown column 'c0', 'c1', 'c2', 'c3', 'c4', … and 495 more in the header/);
    const name = thrown(() => parseTrace(`{"${'n'.repeat(4000)}": 1}`, 't'));
    expect(name.message).toMatch(/^t:1: unknown field 'n{40}…'; expected/);
    expect(thrown(() => parseTrace('{"prompt_len": 1,\r"output_len" 2}', 'a\nb.jsonl')).message).toMatch(/^a\\u000ab\.jsonl:1: not valid JSON \([^\n\r]*\)/);
    for (const err of [many, columns, name]) expect(err.message.length).toBeLessThan(400);
  });

  it('values, request counts and shapes past their bounds', () => {
    const cases: [string, RegExp][] = [
      [`{"prompt_len": ${MAX_REQUEST_TOKENS + 1}, "output_len": 1}`, /t:1: prompt_len is 16777217; expected an integer ≥ 1 and ≤ 16777216/],
      [`{"prompt_len": 1, "output_len": 1, "arrival_step": ${MAX_ARRIVAL_STEP + 1}}`, /arrival_step is 1099511627777; expected an integer ≥ 0 and ≤ 1099511627776/],
      ['{"prompt_len": 1e400, "output_len": 1}', /prompt_len is Infinity/],
      ['{"prompt_len": 9007199254740993, "output_len": 1}', /prompt_len is 9007199254740992/],
      ['{"prompt_len": null, "output_len": 1}', /prompt_len is null/],
      ['{"prompt_len": true, "output_len": 1}', /prompt_len is true/],
      ['{"__proto__": 1, "prompt_len": 1, "output_len": 1}', /unknown field '__proto__'/],
      ['{"constructor": 1, "output_len": 1}', /unknown field 'constructor'/],
      ['{"output_len": 1, "toString": 2}', /unknown field 'toString'/],
      ['[{"prompt_len": 1, "output_len": 1}]', /t:1: a JSON array; expected JSON lines/],
      ['{"prompt_len": 1, "output_len": 1}\n[1, 2]', /t:2: expected a JSON object, got "\[1, 2\]"/],
      [`1,1,${'9'.repeat(30)}`, /t:1: arrival_step is "9{30}"; expected an integer/],
      [`1,1\n1,${','.repeat(2000)}`, /t:2: 2002 fields; expected 2 or 3/],
      [`1,${','.repeat(2000)}`, /t:1: unknown column '1', '', '', '', '', … and 1997 more in the header/],
      ['\u0000,1', /t:1: unknown column '\\u0000', '1' in the header/],
    ];
    for (const [text, message] of cases) expect(() => parseTrace(text, 't'), text.slice(0, 60)).toThrow(message);
    // Within bounds, odd but valid: a BOM, CRLF, -0, numbers as strings.
    expect(parseTrace('\uFEFF{"prompt_len": "+5", "output_len": 1, "arrival_step": -0}\r\n', 't')).toEqual([{ id: 0, promptLen: 5, outputLen: 1, arrivalStep: 0 }]);
    expect(Object.is(parseTrace('1,1,-0\n'.replace('-0', '0'), 't')[0].arrivalStep, 0)).toBe(true);
    expect(Object.is(parseTrace('{"prompt_len": 1, "output_len": 1, "arrival_step": -0}', 't')[0].arrivalStep, 0)).toBe(true);
    // A request count limit is named at the first line past it.
    expect(() => parseTrace('1,1\n1,1\n# c\n1,1\n1,1\n', 't', { maxRequests: 3, maxRequestsReason: 'test' })).toThrow('t:5: request 4 is one too many: limit 3 requests (test); try a trace of at most 3 requests');
  });

  it('a trace of many requests is refused at the request limit the host memory sets', () => {
    const file = join(scratch, 'many.csv');
    const tiny: HostLimits = { ...SMALL, heapBytes: 512 * 1000 };
    writeFileSync(file, '1,1\n'.repeat(1001));
    expect(() => planSimulate(['--trace', file, '--steps', '1'], tiny)).toThrow(/many\.csv:1001: request 1001 is one too many: limit 1000 requests \(~512 B of host memory each within 500 KiB, test heap\)/);
    writeFileSync(file, '1,1\n'.repeat(60_000));
    expect(() => planSimulate(['--trace', file, '--steps', '1'], tiny)).toThrow(/--trace .*many\.csv is 234 KiB; limit 125 KiB .*; try a trace ≤ 125 KiB/);
  });

  it('mutation fuzz: thousands of mutants of valid traces parse or throw TraceParseError, never another error', () => {
    const bases = ['valid.jsonl', 'valid.csv'].map((f) => readFileSync(join(FIXTURES, f), 'utf8'));
    for (const base of bases) expect(parseTrace(base, 'base')).toHaveLength(5);
    const tokens = ['{', '}', '[', ']', '"', ',', ':', '\\', '0', '1', '9', '-', '+', 'e', '.', ' ', '\n', '\r\n', '#', 'x', '\u0000', '\u2028', '\uFEFF', 'é', '𝟘', '\ud800',
      'null', 'true', '1e400', '-0', '9007199254740993', '16777217', '1099511627777', '"__proto__"', '"constructor"', 'prompt_len', 'output_len', 'arrival_step',
      '"prompt_len":', '{"prompt_len": 1, "output_len": 1}\n', 'prompt_len,output_len\n'];
    const rng = new SeededRandom(20241201);
    const pick = <T>(items: readonly T[]): T => items[rng.int(items.length)];
    const mutate = (text: string): string => {
      for (let ops = 1 + rng.int(3); ops > 0; ops--) {
        const at = rng.int(text.length + 1);
        switch (rng.int(9)) {
          case 0: text = text.slice(0, at) + pick(tokens) + text.slice(at + 1); break;
          case 1: text = text.slice(0, at) + pick(tokens) + text.slice(at); break;
          case 2: text = text.slice(0, at) + text.slice(at + 1 + rng.int(20)); break;
          case 3: text = text.slice(0, at) + text.slice(rng.int(text.length), rng.int(text.length)) + text.slice(at); break;
          case 4: text = text.slice(0, at) + pick(['[', '{"a":', '{']).repeat(1 + rng.int(3000)) + text.slice(at); break;
          case 5: {
            const lines = text.split('\n');
            const [i, j] = [rng.int(lines.length), rng.int(lines.length)];
            [lines[i], lines[j]] = [lines[j], lines[i]];
            text = lines.join('\n');
            break;
          }
          case 6: text = text.slice(0, at) + pick(['9', 'x', ' ', ',', '"']).repeat(1 + rng.int(6000)) + text.slice(at); break;
          case 7: text = text.slice(0, at); break;
          default: text = text.replace(/\d+/, pick(['0', '-1', '1.5', '1e3', '99999999999999999999', '4096', '"12"', '" 7 "', '0x10', '']));
        }
        if (text.length > 50_000) text = text.slice(0, 50_000);
      }
      return text;
    };
    const started = performance.now();
    const counts = { parsed: 0, refused: 0 };
    for (let i = 0; i < 4000; i++) {
      const text = mutate(bases[i % bases.length]);
      let requests: ServingRequest[];
      try {
        requests = parseTrace(text, 'fuzz');
      } catch (err) {
        if (!(err instanceof TraceParseError)) throw new Error(`mutant ${i} threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message?.slice(0, 300)}\n${JSON.stringify(text.slice(0, 300))}`);
        expect(err.message, `mutant ${i}`).toMatch(/^fuzz:\d+: [^\n\r\u2028\u2029]+$/);
        expect(err.message.length, `mutant ${i}`).toBeLessThan(600);
        counts.refused++;
        continue;
      }
      counts.parsed++;
      requests.forEach((r, id) => {
        expect(r.id).toBe(id);
        if (id > 0) expect(r.arrivalStep).toBeGreaterThanOrEqual(requests[id - 1].arrivalStep);
        for (const [v, min, max] of [[r.promptLen, 1, MAX_REQUEST_TOKENS], [r.outputLen, 1, MAX_REQUEST_TOKENS], [r.arrivalStep, 0, MAX_ARRIVAL_STEP]]) {
          if (!(Number.isSafeInteger(v) && v >= min && v <= max)) throw new Error(`mutant ${i}: request ${id} has ${JSON.stringify(r)}`);
        }
      });
      // What parses, the scheduler and the planner take.
      new ContinuousBatchingScheduler(new PageAllocator(64, 16), requests, { maxRunning: 4, prefillChunkTokens: 64 });
      const size = estimateSweepSize({ requests, numPages: [64], caps: [4], pageSize: 16, prefillChunkTokens: 64, maxSteps: 0, model: { headDim: 64, numQueryHeads: 4, numKvHeads: 2 }, json: true });
      expect(Number.isFinite(size.heapBytes) && Number.isFinite(size.stepBufferBytes)).toBe(true);
    }
    expect(performance.now() - started).toBeLessThan(15_000);
    // Both outcomes were reached often: the fuzz is not vacuous.
    expect(counts.parsed).toBeGreaterThan(200);
    expect(counts.refused).toBeGreaterThan(1000);
  });
});
