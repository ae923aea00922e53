/**
 * The serving simulator (src/serving): request streams, the continuous-batching scheduler's invariants
 * under a long random fuzz (no GPU), interleaved sequences through the real kernels checked against
 * the float64 reference, and a short end-to-end `simulate` sweep.
 *
 * The page allocator's own invariants are fuzzed in test/page-allocator.test.ts; here the subject is
 * the scheduler on top of it: admission within the budget, pages released by preempted and finished
 * requests, the preemption policy, and that every request finishes or is refused with a reason.
 */
import { describe, expect, it } from 'vitest';
import { PageAllocator } from '../src/cache/page-allocator';
import { PagedKvCache, type KvCacheConfig } from '../src/cache/paged-kv-cache';
import { simulateCommand } from '../src/cli/simulate-command';
import type { KvMethod } from '../src/layout';
import type { MethodConfig } from '../src/reference/kv-methods';
import { maxAbsError, relativeL2 } from '../src/reference/metrics';
import { SeededRandom } from '../src/reference/random';
import { exactDecode, referenceDecode } from '../src/reference/saw-int4';
import {
  generateRequests, parseLengthDistribution, parseTrace, regimeRequests, RequestSpecError, scaledRegime, TraceParseError, type ServingRequest,
} from '../src/serving/requests';
import { ContinuousBatchingScheduler, reservePlan, type SchedulerConfig, type StepPlan } from '../src/serving/scheduler';
import { medianRepeatIndex, runSpread, SPREAD_METRICS, spreadOf, type Spread } from '../src/serving/repeat-spread';
import { formatRate, formatSimulateReport, simulateReportJson } from '../src/serving/simulate-report';
import { runSimulateSweep } from '../src/serving/simulate-sweep';
import { ServingSimulator, type ModelShape, type RunSummary } from '../src/serving/simulator';
import { testGpu } from './gpu-harness';

// ------------------------------------------------------------------------------------------------
// request streams

describe('request streams', () => {
  it('seeded distributions: reproducible, within bounds, lognormal median near its parameter', () => {
    const spec = { count: 4000, seed: 3, prompt: { kind: 'lognormal' as const, median: 300, sigma: 0.7, min: 16, max: 4000 }, output: { kind: 'uniform' as const, min: 5, max: 9 } };
    const a = generateRequests(spec);
    expect(generateRequests(spec)).toEqual(a);
    expect(generateRequests({ ...spec, seed: 4 })).not.toEqual(a);
    for (const r of a) {
      expect(r.promptLen).toBeGreaterThanOrEqual(16);
      expect(r.promptLen).toBeLessThanOrEqual(4000);
      expect([5, 6, 7, 8, 9]).toContain(r.outputLen);
      expect(r.arrivalStep).toBe(0);
    }
    const sorted = a.map((r) => r.promptLen).sort((x, y) => x - y);
    // Standard error of a sample median of 4000 lognormal draws at sigma 0.7 is ~1.4 %: 10 % is loose.
    expect(Math.abs(sorted[2000] / 300 - 1)).toBeLessThan(0.1);
    expect(new Set(a.map((r) => r.outputLen)).size).toBe(5);
  });

  it('Poisson arrivals are non-decreasing with about the asked rate', () => {
    const r = generateRequests({ count: 2000, seed: 1, prompt: { kind: 'fixed', value: 8 }, output: { kind: 'fixed', value: 4 }, arrival: { kind: 'poisson', perStep: 4 } });
    for (let i = 1; i < r.length; i++) expect(r[i].arrivalStep).toBeGreaterThanOrEqual(r[i - 1].arrivalStep);
    const rate = r.length / (r[r.length - 1].arrivalStep + 1);
    expect(rate).toBeGreaterThan(3.6);
    expect(rate).toBeLessThan(4.4);
  });

  it('distribution text, and its errors', () => {
    expect(parseLengthDistribution('256')).toEqual({ kind: 'fixed', value: 256 });
    expect(parseLengthDistribution('uniform:8-64')).toEqual({ kind: 'uniform', min: 8, max: 64 });
    expect(parseLengthDistribution('lognormal:512,0.8,16-8192')).toEqual({ kind: 'lognormal', median: 512, sigma: 0.8, min: 16, max: 8192 });
    expect(() => parseLengthDistribution('uniform:64-8')).toThrow(/min 64 > max 8/);
    expect(() => parseLengthDistribution('zipf:3')).toThrow(/unknown distribution 'zipf'/);
    expect(() => parseLengthDistribution('lognormal:512')).toThrow(RequestSpecError);
    expect(() => parseLengthDistribution('fixed:-3')).toThrow(/must be a positive number/);
  });

  it("the paper's regimes, scaled", () => {
    expect(scaledRegime('short')).toEqual({ promptLen: 256, outputLen: 1024 });
    expect(scaledRegime('long', 1 / 16)).toEqual({ promptLen: 1024, outputLen: 64 });
    const r = regimeRequests('long', { count: 3, scale: 1 / 64 });
    expect(r).toEqual([0, 1, 2].map((id) => ({ id, promptLen: 256, outputLen: 16, arrivalStep: 0 })));
  });

  it('traces: JSON lines and CSV (with or without a header), sorted by arrival', () => {
    const jsonl = '{"prompt_len": 10, "output_len": 3, "arrival_step": 5}\n\n# comment\n{"prompt_len": 7, "output_len": 2}\n';
    expect(parseTrace(jsonl)).toEqual([
      { id: 0, promptLen: 7, outputLen: 2, arrivalStep: 0 },
      { id: 1, promptLen: 10, outputLen: 3, arrivalStep: 5 },
    ]);
    expect(parseTrace('output_len,prompt_len\r\n4,100\r\n5,200\r\n')).toEqual([
      { id: 0, promptLen: 100, outputLen: 4, arrivalStep: 0 },
      { id: 1, promptLen: 200, outputLen: 5, arrivalStep: 0 },
    ]);
    expect(parseTrace('100,4,2\n50,1,1\n')).toEqual([
      { id: 0, promptLen: 50, outputLen: 1, arrivalStep: 1 },
      { id: 1, promptLen: 100, outputLen: 4, arrivalStep: 2 },
    ]);
  });

  it('trace errors name the file, the line and the field', () => {
    const cases: [string, RegExp][] = [
      ['', /t\.txt:1: no requests found/],
      ['{"prompt_len": 10, "output_len": 3}\n{"prompt_len": 10}\n', /t\.txt:2: missing field 'output_len'/],
      ['{"prompt_len": 10, "output_len": 0}\n', /t\.txt:1: output_len is 0; expected an integer ≥ 1/],
      ['{"prompt_len": 10.5, "output_len": 2}\n', /prompt_len is 10\.5/],
      ['{"prompt_len": 1, "output_len": 2, "arrival": 3}\n', /unknown field 'arrival'/],
      ['{"prompt_len": 1,\n', /t\.txt:1: not valid JSON/],
      ['prompt_len,output_len\n10,2\n10\n', /t\.txt:3: 1 fields; expected 2 \(prompt_len,output_len\)/],
      ['prompt_len,tokens\n1,2\n', /unknown column 'tokens'/],
      ['arrival_step,prompt_len\n1,2\n', /no 'output_len' column/],
      ['10,2\n10,x\n', /t\.txt:2: .*expected an integer|t\.txt:2: output_len is "x"/],
      ['prompt_len,output_len\n', /a header but no requests/],
    ];
    for (const [text, message] of cases) {
      expect(() => parseTrace(text, 't.txt'), JSON.stringify(text)).toThrow(TraceParseError);
      expect(() => parseTrace(text, 't.txt'), JSON.stringify(text)).toThrow(message);
    }
  });
});

// ------------------------------------------------------------------------------------------------
// scheduler, no GPU

function request(id: number, promptLen: number, outputLen: number, arrivalStep = 0): ServingRequest {
  return { id, promptLen, outputLen, arrivalStep };
}

/** Plans, writes on the bare allocator, completes. */
function cpuStep(s: ContinuousBatchingScheduler): StepPlan {
  const plan = s.planStep();
  reservePlan(s.allocator, plan);
  s.completeStep(plan);
  return plan;
}

describe('scheduler policy', () => {
  it('preempts the youngest when decoding runs out of pages; it recomputes prompt + generated later', () => {
    // 4 pages of 4 tokens. Two requests of 4-token prompts, 6 output tokens each (10 tokens = 3 pages).
    const alloc = new PageAllocator(4, 4);
    const s = new ContinuousBatchingScheduler(alloc, [request(0, 4, 6), request(1, 4, 6)], { maxRunning: 4, prefillChunkTokens: 4 });
    const first = cpuStep(s); // both admitted (1 page each) and prefilled
    expect(first.admitted.map((a) => a.requestId)).toEqual([0, 1]);
    cpuStep(s); // decode: each takes its 2nd page (4 used)
    cpuStep(s);
    cpuStep(s);
    cpuStep(s); // 8 tokens each, 4 pages used, 0 free; each has 4 output tokens
    expect(alloc.freePageCount).toBe(0);
    const evict = cpuStep(s); // both need a 3rd page: request 1 (youngest) is evicted
    expect(evict.preempted).toEqual([{ requestId: 1, seqId: 1, tokensDropped: 8 }]);
    expect(evict.admitted).toEqual([]); // not re-admitted in the step that evicted it
    expect(evict.decode.map((d) => d.requestId)).toEqual([0]);
    expect(s.states[1]).toMatchObject({ phase: 'waiting', generated: 4, preemptions: 1, seqId: null });
    // Request 0 holds 3 pages now; request 1 needs ceil((4 + 4) / 4) = 2 pages to come back.
    cpuStep(s); // request 0 finishes at 10 tokens and frees its 3 pages
    expect(s.states[0].phase).toBe('finished');
    const back = cpuStep(s);
    expect(back.admitted.map((a) => a.requestId)).toEqual([1]);
    expect(back.prefill).toEqual([{ requestId: 1, seqId: 2, count: 4 }]); // chunk of 4 of the 8 to recompute
    expect(s.states[1].prefillTarget).toBe(8);
    while (!s.done) cpuStep(s);
    expect(s.states[1]).toMatchObject({ phase: 'finished', generated: 6 });
    expect(s.states[1].prefillTokensWritten).toBe(4 + 8);
    expect(alloc.freePageCount).toBe(4);
  });

  it('refuses with a reason a request that can never fit; admits FCFS within the cap and the reserve', () => {
    const stream = [request(0, 50, 9), request(1, 20, 4), request(2, 20, 4), request(3, 1, 1)]; // 8, 3, 3, 1 pages of 8
    // 7 pages, cap 2: requests 1 and 2 take 3 + 3 (+ 1 reserve); the cap stops request 3, which would fit.
    const capped = new ContinuousBatchingScheduler(new PageAllocator(7, 8), stream, { maxRunning: 2, prefillChunkTokens: 16, reservePages: 1 });
    const p = cpuStep(capped);
    expect(p.refused).toEqual([{ requestId: 0, reason: expect.stringMatching(/request 0 needs 8 pages for 50 prompt \+ 9 output tokens, but the whole cache holds 7 pages of 8 tokens \(56 tokens\): it can never fit/) }]);
    expect(p.admitted.map((a) => a.requestId)).toEqual([1, 2]);
    expect(p.prefill).toEqual([{ requestId: 1, seqId: 0, count: 16 }, { requestId: 2, seqId: 1, count: 16 }]);
    while (!capped.done) cpuStep(capped);
    expect(capped.states.map((x) => x.phase)).toEqual(['refused', 'finished', 'finished', 'finished']);
    // 6 pages, cap 3: request 2 would leave no reserve page, and FCFS keeps request 3 behind it.
    const reserved = new ContinuousBatchingScheduler(new PageAllocator(6, 8), stream, { maxRunning: 3, prefillChunkTokens: 16, reservePages: 1 });
    expect(cpuStep(reserved).admitted.map((a) => a.requestId)).toEqual([1]);
    while (!reserved.done) cpuStep(reserved);
    expect(reserved.states.map((x) => x.phase)).toEqual(['refused', 'finished', 'finished', 'finished']);
  });

  it('bad configurations and requests are refused up front', () => {
    const alloc = new PageAllocator(4, 4);
    expect(() => new ContinuousBatchingScheduler(alloc, [], { maxRunning: 0, prefillChunkTokens: 4 })).toThrow(/maxRunning must be an integer ≥ 1/);
    expect(() => new ContinuousBatchingScheduler(alloc, [request(1, 4, 4)], { maxRunning: 1, prefillChunkTokens: 4 })).toThrow(/ids must be 0…n−1/);
    expect(() => new ContinuousBatchingScheduler(alloc, [request(0, 4, 0)], { maxRunning: 1, prefillChunkTokens: 4 })).toThrow(/outputLen must be an integer ≥ 1/);
    const s = new ContinuousBatchingScheduler(alloc, [request(0, 4, 4)], { maxRunning: 1, prefillChunkTokens: 4 });
    const plan = s.planStep();
    expect(() => s.planStep()).toThrow(/planned but not completed/);
    expect(() => s.completeStep(plan)).toThrow(/holds 0 tokens .* expected 4: the executor did not write the plan/);
  });
});

/** Everything that must hold after every step; returns the problems found. */
function schedulerProblems(s: ContinuousBatchingScheduler, cap: number): string[] {
  const problems: string[] = [];
  const snap = s.allocator.snapshot();
  const owner = new Map<number, string>();
  const claim = (page: number, who: string) => {
    if (owner.has(page)) problems.push(`page ${page} held by ${owner.get(page)} and ${who}`);
    owner.set(page, who);
  };
  snap.freePages.forEach((p) => claim(p, 'the free list'));
  snap.sequences.forEach((q) => q.pages.forEach((p) => claim(p, `sequence ${q.seqId}`)));
  if (owner.size !== snap.numPages) problems.push(`${snap.numPages - owner.size} pages leaked (neither free nor owned)`);
  const running = s.runningRequests();
  if (running.length > cap) problems.push(`${running.length} running > cap ${cap}`);
  const live = new Set(snap.sequences.map((q) => q.seqId));
  const runningSeqs = new Set(running.map((r) => r.seqId));
  for (const id of live) if (!runningSeqs.has(id)) problems.push(`sequence ${id} is live but no running request owns it`);
  for (const r of s.states) {
    const isRunning = r.phase === 'prefill' || r.phase === 'decode';
    if (isRunning !== (r.seqId !== null)) problems.push(`request ${r.request.id} in phase ${r.phase} has sequence ${r.seqId}`);
    if (r.seqId !== null) {
      if (!live.has(r.seqId)) problems.push(`request ${r.request.id} names freed sequence ${r.seqId}`);
      const len = s.allocator.contextLength(r.seqId);
      const want = r.phase === 'prefill' ? r.prefilled : r.request.promptLen + r.generated;
      if (len !== want) problems.push(`request ${r.request.id} (${r.phase}) holds ${len} tokens, expected ${want}`);
    }
    if (r.generated > r.request.outputLen) problems.push(`request ${r.request.id} generated ${r.generated} > ${r.request.outputLen}`);
  }
  return problems;
}

describe('scheduler fuzz (no GPU)', () => {
  it('≥ 10^5 random allocations, appends and frees: budget kept, pages released, every request ends', () => {
    const rng = new SeededRandom(2024);
    const MIN_OPERATIONS = 100_000;
    const totals = { operations: 0, scenarios: 0, preemptions: 0, refused: 0, finished: 0, steps: 0 };
    while (totals.operations < MIN_OPERATIONS) {
      const pageSize = [1, 2, 4, 8, 16][rng.int(5)];
      const numPages = 2 + rng.int(40);
      const capacity = numPages * pageSize;
      const requests: ServingRequest[] = [];
      const count = 1 + rng.int(30);
      for (let id = 0; id < count; id++) {
        // Mostly requests that fit; some that never can (refused), some that need most of the pool.
        const huge = rng.uniform() < 0.08;
        const promptLen = 1 + rng.int(huge ? 2 * capacity : Math.max(1, capacity >> 1));
        const outputLen = 1 + rng.int(Math.max(1, capacity >> 1));
        requests.push(request(id, promptLen, outputLen, rng.int(3) === 0 ? rng.int(40) : 0));
      }
      requests.sort((a, b) => a.arrivalStep - b.arrivalStep).forEach((r, i) => (r.id = i));
      const config: SchedulerConfig = {
        maxRunning: 1 + rng.int(12),
        prefillChunkTokens: 1 + rng.int(3 * pageSize + 5),
        reservePages: rng.int(3),
        ...(rng.int(2) === 0 ? { prefillTokensPerStep: 1 + rng.int(40) } : {}),
      };
      const alloc = new PageAllocator(numPages, pageSize, { shuffleSeed: rng.int(1000) });
      const s = new ContinuousBatchingScheduler(alloc, requests, config);
      const where = () => `scenario ${totals.scenarios} (P=${pageSize}, ${numPages} pages, ${JSON.stringify(config)}) step ${s.step}`;
      const totalTokens = requests.reduce((n, r) => n + r.promptLen + r.outputLen, 0);
      // Generous bound: each step writes ≥ 1 token while anything runs; recomputation at most doubles that per request.
      const maxSteps = 50 + 40 + 4 * totalTokens * (1 + count);
      while (!s.done) {
        if (s.step > maxSteps) throw new Error(`${where()}: no progress (livelock?)`);
        const plan = s.planStep();
        // Admission never exceeds the budget: pages owned + pages promised ≤ pool.
        const promised = alloc.usedPageCount + s.committedPages();
        if (promised > numPages) throw new Error(`${where()}: ${promised} pages owned or promised > ${numPages}`);
        // Preempted: the youngest, and their pages are back.
        for (const p of plan.preempted) {
          if (alloc.hasSequence(p.seqId)) throw new Error(`${where()}: preempted sequence ${p.seqId} still holds pages`);
          const order = s.states[p.requestId].admissionOrder;
          for (const r of s.runningRequests()) {
            if (r.admissionOrder > order && !plan.admitted.some((a) => a.requestId === r.request.id)) throw new Error(`${where()}: evicted request ${p.requestId} while younger request ${r.request.id} kept running`);
          }
        }
        for (const a of plan.admitted) if (plan.preempted.some((p) => p.requestId === a.requestId)) throw new Error(`${where()}: request ${a.requestId} evicted and re-admitted in one step`);
        // Reservations succeed (a KvCacheFullError would fail the test here).
        reservePlan(alloc, plan);
        totals.operations += plan.prefill.length + plan.decode.length + plan.admitted.length + plan.preempted.length;
        const outcome = s.completeStep(plan);
        totals.operations += outcome.finished.length;
        for (const f of outcome.finished) if (alloc.hasSequence(f.seqId)) throw new Error(`${where()}: finished sequence ${f.seqId} still holds pages`);
        const problems = schedulerProblems(s, config.maxRunning);
        if (problems.length) throw new Error(`${where()}: ${problems.slice(0, 3).join('; ')}`);
        totals.steps++;
      }
      for (const r of s.states) {
        const never = Math.ceil((r.request.promptLen + r.request.outputLen) / pageSize) > numPages;
        if (never) {
          expect(r.phase, where()).toBe('refused');
          expect(r.refusedReason, where()).toMatch(/can never fit/);
        } else {
          expect(r.phase, `${where()} request ${r.request.id}`).toBe('finished');
          expect(r.generated).toBe(r.request.outputLen);
        }
        totals.preemptions += r.preemptions;
      }
      totals.refused += s.states.filter((r) => r.phase === 'refused').length;
      totals.finished += s.states.filter((r) => r.phase === 'finished').length;
      expect(alloc.liveSequences()).toEqual([]);
      expect(alloc.freePageCount).toBe(numPages);
      totals.scenarios++;
    }
    // The fuzz reached the interesting paths.
    expect(totals.preemptions).toBeGreaterThan(100);
    expect(totals.refused).toBeGreaterThan(10);
    expect(totals.finished).toBeGreaterThan(1000);
  });

  it('the invariant checker reports a leaked page and a wrong length (it is not vacuous)', () => {
    const alloc = new PageAllocator(8, 4);
    const s = new ContinuousBatchingScheduler(alloc, [request(0, 5, 3)], { maxRunning: 2, prefillChunkTokens: 8 });
    cpuStep(s);
    expect(schedulerProblems(s, 2)).toEqual([]);
    alloc.reserveTokens(s.runningRequests()[0].seqId as number, 4); // written behind the scheduler's back
    expect(schedulerProblems(s, 2).join()).toMatch(/holds 9 tokens, expected 5/);
    alloc.createSequence(); // a sequence nobody owns
    expect(schedulerProblems(s, 2).join()).toMatch(/sequence 1 is live but no running request owns it/);
  });
});

// ------------------------------------------------------------------------------------------------
// through the real kernels

const TINY: ModelShape = { name: 'tiny', headDim: 64, numQueryHeads: 4, numKvHeads: 2, numLayers: 1 };

/**
 * GPU vs the independent float64 reference (its own quantization), per sequence and step: the GPU's
 * distance must stay ≤ 1 % of the scheme's own error (as test/paged-decode.test.ts; an f32 rounding
 * tie that flips one code would be the only legitimate source of a difference).
 */
const QUANT_AGREEMENT = 0.01;
/** FP16: the reference rounds K/V to f16 exactly as stored; f32 arithmetic noise stays ≤ 1e-5 absolute. */
const FP16_AGREEMENT_ABS = 1e-5;

/** Arrivals spread over steps, lengths ragged (1, non-multiples of P), one that can never fit. */
const INTERLEAVED: ServingRequest[] = [
  [5, 12, 0], [13, 6, 0], [20, 9, 0], [1, 14, 1], [9, 4, 2], [30, 10, 3], [2, 3, 3], [70, 20, 4], [17, 11, 5], [8, 16, 8], [3, 2, 9], [25, 7, 12],
].map(([p, o, a], id) => request(id, p, o, a));

interface Check {
  step: number;
  requestId: number;
  seqId: number;
  tokens: number;
  /** int4: relative L2 error / scheme error; fp16: max abs error. */
  error: number;
  /** The same measure against a reference whose first page of K/V was swapped for other data. */
  controlError: number;
}

/** `maxPagesPerBuffer` spreads the pools over several storage buffers (3 pages each: 3 buffers). */
async function interleavedRun(method: KvMethod, maxPagesPerBuffer?: number) {
  const ctx = await testGpu();
  const config: KvCacheConfig = {
    method, headDim: TINY.headDim, numQueryHeads: TINY.numQueryHeads, numKvHeads: TINY.numKvHeads, pageSize: 8, numPages: 9, pageShuffleSeed: 17,
    ...(method === 'int4-hadamard' ? { hadamardBlock: 32 } : {}), ...(maxPagesPerBuffer !== undefined ? { maxPagesPerBuffer } : {}),
  };
  const cache = await PagedKvCache.create(ctx, config);
  const { headDim: d, numKvHeads: hkv, numQueryHeads: hq, pageSize } = cache.config;
  const cfg: MethodConfig = { method, hadamardBlock: cache.config.hadamardBlock, rotateV: cache.config.rotateV, signs: cache.signs };
  const rows = new Map<number, { k: number[]; v: number[] }>(); // seqId → everything appended, [T, Hkv, D]
  const pageOwners = new Map<number, Set<number>>(); // physical page → sequences that held it
  let maxSequenceBuffers = 0; // the most pool buffers one sequence's pages spanned at an attention call
  const checks: Check[] = [];
  const rng = new SeededRandom(99);
  let step = 0;
  const measure = (got: Float32Array, q: Float32Array, k: ArrayLike<number>, v: ArrayLike<number>, tokens: number): number => {
    const c = { numQueryHeads: hq, numKvHeads: hkv, headDim: d, contextLens: [tokens], q, k, v };
    const ref = referenceDecode(cfg, c).out;
    return method === 'fp16' ? maxAbsError(got, ref).value : relativeL2(got, ref) / relativeL2(ref, exactDecode(c));
  };
  const sim = new ServingSimulator(cache, INTERLEAVED, {
    maxRunning: 4,
    prefillChunkTokens: 8,
    prefillTokensPerStep: 20,
    dataSeed: 5,
    dataPoolSize: 1 << 16,
    observer: {
      onAppend(_requestId, seqId, k, v) {
        const r = rows.get(seqId) ?? { k: [], v: [] };
        for (let j = 0; j < k.length; j++) {
          r.k.push(k[j]);
          r.v.push(v[j]);
        }
        rows.set(seqId, r);
      },
      onAttention(slots, q, out) {
        for (const slot of slots) {
          const buffers = new Set(cache.allocator.blockTable(slot.seqId).map((page) => Math.floor(page / cache.pool.pagesPerBuffer)));
          maxSequenceBuffers = Math.max(maxSequenceBuffers, buffers.size);
        }
        slots.forEach((slot, i) => {
          const r = rows.get(slot.seqId);
          const tokens = cache.contextLength(slot.seqId);
          if (!r || r.k.length !== tokens * hkv * d) throw new Error(`sequence ${slot.seqId}: ${r?.k.length} values recorded for ${tokens} tokens`);
          for (const page of cache.allocator.blockTable(slot.seqId)) pageOwners.set(page, (pageOwners.get(page) ?? new Set()).add(slot.seqId));
          const qi = q.subarray(i * hq * d, (i + 1) * hq * d);
          const got = out.subarray(i * hq * d, (i + 1) * hq * d);
          // Control: the first page's tokens replaced by other values, as if the wrong page were read.
          const swapped = Float64Array.from(r.k);
          const swappedV = Float64Array.from(r.v);
          for (let j = 0; j < Math.min(tokens - 1, pageSize) * hkv * d; j++) {
            swapped[j] = rng.normal();
            swappedV[j] = rng.normal();
          }
          checks.push({
            step,
            requestId: slot.requestId,
            seqId: slot.seqId,
            tokens,
            error: measure(got, qi, r.k, r.v, tokens),
            controlError: tokens > 1 ? measure(got, qi, swapped, swappedV, tokens) : Infinity,
          });
        });
      },
    },
  });
  try {
    while (!sim.done) {
      await sim.step();
      step++;
    }
    return { result: sim.result(), checks, pageOwners, maxSequenceBuffers, cache };
  } finally {
    sim.release();
    cache.destroy();
  }
}

describe('simulator through the real kernels', () => {
  const runs: { method: KvMethod; maxPagesPerBuffer?: number }[] = [{ method: 'int4-hadamard' }, { method: 'int4' }, { method: 'fp16' }, { method: 'int4-hadamard', maxPagesPerBuffer: 3 }, { method: 'fp16', maxPagesPerBuffer: 3 }];
  for (const { method, maxPagesPerBuffer } of runs) {
    const pools = maxPagesPerBuffer ? `, pools over 3 buffers of ${maxPagesPerBuffer} pages` : '';
    it(`${method}${pools}: interleaved admissions, chunked prefills, decodes, preemptions and frees; every attention output matches the float64 reference`, async () => {
      const { result, checks, pageOwners, maxSequenceBuffers, cache } = await interleavedRun(method, maxPagesPerBuffer);
      // A split pool: attention read sequences whose pages lie in different buffers.
      expect(cache.pool.numBuffers).toBe(maxPagesPerBuffer ? 3 : 1);
      if (maxPagesPerBuffer) expect(maxSequenceBuffers).toBeGreaterThanOrEqual(2);
      // The decode steps ran as the plan runs them: fused into the decode kernel on this small grid
      // (one-buffer pools), the separate cache write with a split pool.
      const decodeSteps = result.steps.filter((r) => r.decodeTokens > 0);
      expect(decodeSteps.length).toBeGreaterThan(0);
      expect(decodeSteps.every((r) => r.fusedStep === !maxPagesPerBuffer)).toBe(true);
      const s = result.summary;
      // The run exercised what it is meant to.
      expect(s.refused).toBe(1); // the 70 + 20 request: 12 pages > 9
      expect(s.finished).toBe(INTERLEAVED.length - 1);
      expect(s.preemptions).toBeGreaterThanOrEqual(3); // scheduling is deterministic: 7 with this stream
      expect(result.steps.some((r) => r.admitted > 0 && r.step > 0 && r.decoding > 0)).toBe(true);
      expect([...pageOwners.values()].some((owners) => owners.size >= 2)).toBe(true); // pages reused after a free
      const checkedRequests = new Set(checks.map((c) => c.requestId));
      expect(checkedRequests.size).toBe(INTERLEAVED.length - 1);
      // Every (sequence, step) output agrees with the reference; the control is far outside.
      const tol = method === 'fp16' ? FP16_AGREEMENT_ABS : QUANT_AGREEMENT;
      const worst = checks.reduce((w, c) => (c.error > w.error ? c : w), checks[0]);
      expect(worst.error, `worst: request ${worst.requestId} (sequence ${worst.seqId}, ${worst.tokens} tokens) at step ${worst.step}`).toBeLessThanOrEqual(tol);
      const weakestControl = checks.reduce((w, c) => (c.controlError < w.controlError ? c : w), checks[0]);
      expect(weakestControl.controlError, `control of request ${weakestControl.requestId} at step ${weakestControl.step}`).toBeGreaterThan(tol * 10);
      expect(checks.length).toBeGreaterThan(80);
      // New pipeline shapes ran once untimed before their first timed step (the outputs above include
      // those steps: the repeated append changed nothing); a shape seen before was not warmed again.
      expect(result.warmups).toBeGreaterThanOrEqual(1);
      expect(result.warmups).toBeLessThanOrEqual(1 + 2 * 4); // cache write + (heads per workgroup, merge) per batch size ≤ 4
      expect(result.warmups).toBeLessThan(result.steps.length / 4);
    });
  }

  it('a short simulate sweep over all methods, 3 repeats each: finite numbers, every repeat kept, a consistent spread, a report', async () => {
    const ctx = await testGpu();
    const requests = regimeRequests('short', { count: 8, scale: 1 / 32 }); // 8 in / 32 out
    const result = await runSimulateSweep(ctx, {
      model: TINY,
      methods: ['fp16', 'int4', 'int4-hadamard'],
      budgetBytes: 48 * 1024, // fp16: 12 pages of 8 tokens, int4: 42; 40-token requests need 5 pages
      caps: [1, 4],
      maxSteps: 20,
      requests,
      workload: 'regime short ×1/32',
      pageSize: 8,
      hadamardBlock: 64,
      prefillChunkTokens: 8,
      reservePages: 0,
      warmupSteps: 1,
      repeats: 3,
    });
    expect(result.repeats).toBe(3);
    expect(result.methods.map((m) => [m.method, m.numPages, m.fitsAtFullLength, m.poolBuffers])).toEqual([['fp16', 12, 2, 1], ['int4', 42, 8, 1], ['int4-hadamard', 42, 8, 1]]);
    for (const m of result.methods) {
      for (const run of m.runs) {
        // Every repeat is kept; they share the schedule (every count), only GPU times differ.
        expect(run.repeats).toHaveLength(3);
        const counts = (r: RunSummary) => [r.steps, r.decodeTokens, r.prefillTokens, r.preemptions, r.finished, r.refused, r.peakRunning, r.meanPageFraction, r.meanDecodeBatch];
        for (const r of run.repeats) expect(counts(r), `${m.method} cap ${run.cap}`).toEqual(counts(run.summary));
        expect(run.summary).toBe(run.repeats[run.medianRepeat]);
        expect(run.spread).toEqual(runSpread(run.repeats));
        expectConsistentSpread(run.spread, run.repeats, `${m.method} cap ${run.cap}`);
        // The median repeat's decode tokens/s is the median (3 repeats), its step records are the kept ones.
        expect(run.summary.decodeTokensPerSec).toBe(run.spread.decodeTokensPerSec.median);
        expect(run.steps.reduce((n, r) => n + r.decodeNs, 0)).toBeCloseTo(run.summary.decodeNs, 3);
        const s = run.summary;
        for (const [key, value] of Object.entries(s)) if (typeof value === 'number' && key !== 'meanLatencySteps') expect(Number.isFinite(value), `${m.method} cap ${run.cap} ${key}`).toBe(true);
        expect(s.steps).toBe(20);
        expect(s.decodeTokens).toBeGreaterThan(0);
        expect(s.attentionNs).toBeGreaterThan(0);
        // decode steps on small grids are fused (no append pass of their own), the others are not
        const separate = run.steps.filter((r) => r.decodeTokens > 0 && !r.fusedStep);
        expect(s.decodeAppendNs > 0).toBe(separate.length > 0);
        expect(run.steps.every((r) => !r.fusedStep || r.decodeAppendNs === 0)).toBe(true);
        expect(Math.abs(s.decodeNs - s.decodeAppendNs - s.attentionNs)).toBeLessThanOrEqual(1e-9 * s.decodeNs + 1);
        expect(s.decodeTokensPerSec).toBeGreaterThan(0);
        expect(run.steps.every((r) => r.usedPages <= m.numPages && r.slotUtilisation > 0 && r.slotUtilisation <= 1)).toBe(true);
      }
    }
    // fp16 at cap 4 runs out of its 12 pages (4 × 5 needed at full length) and preempts; int4 does not.
    expect(result.methods[0].runs[1].summary.preemptions).toBeGreaterThan(0);
    expect(result.methods[1].runs[1].summary.preemptions).toBe(0);
    const text = formatSimulateReport(result);
    expect(text).toMatch(/ONE layer of tiny/);
    expect(text).toMatch(/cap\s+fp16\s+int4\s+int4-hadamard\s+hadamard\/int4\s+int4\/fp16/);
    expect(text).toMatch(/Page utilisation over time at cap 4/);
    // The text table shows median [min–max] of decode tokens/s and of the median step, as measured.
    expect(text).toMatch(/^repeats: 3 of every run/m);
    expect(text).toMatch(/median \[min–max over 3 repeats\] \(mean decode batch\) vs concurrency cap/);
    const row = text.split('\n').find((l) => /^4\s/.test(l))!;
    const cells = [...row.matchAll(/([\d.]+k?) \[([\d.]+k?)–([\d.]+k?)\] \(([\d.]+)\)/g)];
    expect(cells).toHaveLength(3);
    const rate = (t: string) => Number(t.replace('k', '')) * (t.endsWith('k') ? 1e3 : 1);
    cells.forEach((c, i) => {
      const spread = result.methods[i].runs[1].spread.decodeTokensPerSec;
      expect(rate(c[2])).toBeLessThanOrEqual(rate(c[1]));
      expect(rate(c[1])).toBeLessThanOrEqual(rate(c[3]));
      expect(c[1]).toBe(formatRate(spread.median)); // the median as formatRate prints it (1–3 significant digits: not a relative bound)
    });
    expect(text).toMatch(/median step µs/);
    expect(text).toMatch(/^fp16\s+1\s+20\s.*\s[\d.]+ \[[\d.]+–[\d.]+\]\s+\d+$/m);
    // The JSON holds every repeat's totals and the spread.
    const json = JSON.parse(simulateReportJson(result));
    expect(json.version).toBe(3);
    expect(json.methods[2].runs[0].steps).toHaveLength(20);
    expect(json.methods[2].runs[0].repeats).toHaveLength(3);
    expect(json.methods[2].runs[0].repeats.map((r: RunSummary) => r.decodeNs)).toEqual(result.methods[2].runs[0].repeats.map((r) => r.decodeNs));
    expect(Object.keys(json.methods[0].runs[1].spread)).toEqual([...SPREAD_METRICS]);
    expect(json.notes.join(' ')).toMatch(/ONE attention layer/);
    expect(json.notes.join(' ')).toMatch(/ran 3 times over the same schedule/);
  });
});

/** min ≤ q1 ≤ median ≤ q3 ≤ max for every figure, min and max being the repeats' own extremes. */
function expectConsistentSpread(spread: Record<string, Spread>, repeats: readonly RunSummary[], what: string): void {
  for (const key of SPREAD_METRICS) {
    const s = spread[key];
    const values = repeats.map((r) => r[key]);
    expect([s.min, s.q1, s.median, s.q3, s.max].every(Number.isFinite), `${what} ${key}`).toBe(true);
    expect(s.min, `${what} ${key}`).toBeLessThanOrEqual(s.q1);
    expect(s.q1, `${what} ${key}`).toBeLessThanOrEqual(s.median);
    expect(s.median, `${what} ${key}`).toBeLessThanOrEqual(s.q3);
    expect(s.q3, `${what} ${key}`).toBeLessThanOrEqual(s.max);
    expect(s.min).toBe(Math.min(...values));
    expect(s.max).toBe(Math.max(...values));
  }
}

describe('the spread over repeats (no GPU)', () => {
  it('order statistics: numpy-style quartiles, the mean of the middle two for an even count', () => {
    expect(spreadOf([5])).toEqual({ min: 5, q1: 5, median: 5, q3: 5, max: 5 });
    expect(spreadOf([3, 1, 2])).toEqual({ min: 1, q1: 1.5, median: 2, q3: 2.5, max: 3 });
    expect(spreadOf([4, 1, 3, 2])).toEqual({ min: 1, q1: 1.75, median: 2.5, q3: 3.25, max: 4 });
    expect(() => spreadOf([])).toThrow(RangeError);
    const rng = new SeededRandom(3);
    for (let n = 1; n < 40; n++) {
      const values = Array.from({ length: n }, () => rng.normal());
      const s = spreadOf(values);
      expect(s.min <= s.q1 && s.q1 <= s.median && s.median <= s.q3 && s.q3 <= s.max).toBe(true);
    }
  });

  it('the median repeat: the middle one by decode tokens/s, the lower middle for an even count', () => {
    const at = (...rates: number[]) => medianRepeatIndex(rates.map((decodeTokensPerSec) => ({ decodeTokensPerSec }) as RunSummary));
    expect(at(30, 10, 20)).toBe(2);
    expect(at(7)).toBe(0);
    expect(at(4, 1, 3, 2)).toBe(3); // sorted 1 2 3 4: the lower middle is 2, repeat 3
    expect(at(5, 5, 5)).toBe(1);
  });
});

// ------------------------------------------------------------------------------------------------
// the CLI command's argument checks (no GPU is opened for bad arguments)

describe('simulate command arguments', () => {
  const noGpu = { gpu: () => Promise.reject(new Error('the GPU must not be opened for bad arguments')) };
  async function runQuiet(args: string[]): Promise<{ code: number; stderr: string }> {
    const write = process.stderr.write.bind(process.stderr);
    let stderr = '';
    process.stderr.write = ((chunk: string) => {
      stderr += chunk;
      return true;
    }) as typeof process.stderr.write;
    try {
      return { code: await simulateCommand.run(args, noGpu), stderr };
    } finally {
      process.stderr.write = write;
    }
  }

  it('bad flags exit 2 with a message naming the flag', async () => {
    const cases: [string[], RegExp][] = [
      [['--methods', 'int3'], /--methods: unknown method 'int3'/],
      [['--regime', 'medium'], /--regime "medium": expected short or long/],
      [['--max-concurrency', '4,0'], /--max-concurrency "0": expected an integer ≥ 1/],
      [['--budget-mib', '0'], /--budget-mib "0": expected a positive number/],
      [['--prompt-len', 'uniform:9-3'], /min 9 > max 3/],
      [['--trace', 'x.csv', '--regime', 'long'], /--trace gives the whole stream/],
      [['--trace', '/nonexistent/trace.csv'], /cannot read --trace/],
      [['--timing', 'fast'], /--timing "fast"/],
      [['--repeats', '0'], /--repeats "0": expected an integer ≥ 1 and ≤ 100/],
      [['--repeats', '101'], /--repeats "101": expected an integer ≥ 1 and ≤ 100/],
      [['--repeats', '2.5'], /--repeats "2\.5": expected an integer/],
    ];
    for (const [args, message] of cases) {
      const { code, stderr } = await runQuiet(args);
      expect(code, args.join(' ')).toBe(2);
      expect(stderr).toMatch(message);
    }
    await expect(simulateCommand.run(['--bogus'], noGpu)).rejects.toThrow(/Unknown option '--bogus'/);
  });
});
