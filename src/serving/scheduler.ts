/**
 * Continuous-batching scheduler over a PageAllocator: the decisions of the serving simulator, with no
 * GPU, so tests can fuzz them over many steps. Library code for Node and the browser.
 *
 * One step:
 *   planStep()            arrivals → refusals → preemptions → admissions → prefill chunks → decode set;
 *                         creates sequences for admitted requests and frees preempted ones
 *   (executor)            reserves and writes the planned tokens (PagedKvCache.prepareAppend on the GPU,
 *                         PageAllocator.reserveTokens in tests): prefill chunks, then one decode token
 *                         per decoding sequence
 *   completeStep(plan)    advances progress; finished requests free their pages
 *
 * Idle gaps: when nothing runs or waits and the next request arrives later, idleSteps() says how many
 * steps nothing can happen in and skipIdle(n) advances the clock over them at once, so a late arrival
 * (a trace's arrival_step 2·10^6) costs one call, not 2·10^6 empty steps.
 *
 * Page accounting. A running request *commits* the pages its prompt still needs (prefill is written in
 * chunks over several steps, but admission took the whole prompt into account) and, when decoding,
 * the page its next token may need. Admission takes the head of the waiting queue (FCFS, no skipping:
 * a large request is not starved by small ones) while
 *     pages(prompt + already generated) + reservePages ≤ free pages − committed pages
 * and fewer than `maxRunning` requests run. The reserve leaves headroom for the running requests'
 * decode growth; it is waived when nothing runs, so a request that fits the pool is always admitted.
 *
 * Preemption (policy: recompute, youngest first, as vLLM's default). When the committed pages exceed
 * the free pages at the start of a step (decoding sequences crossed into new pages), the most recently
 * admitted running request is evicted: its pages are freed, its progress is kept as a count of
 * generated tokens, and it goes back to the FRONT of the waiting queue. Re-admitted, it prefills its
 * prompt plus the tokens it had generated (recomputing their K/V), then decodes the rest. Repeat until
 * the commitments fit. An evicted request is not re-admitted in the step that evicted it (and, FCFS,
 * nothing behind it is). Nothing already cached for the remaining requests is touched.
 *
 * Progress is guaranteed: a request whose whole context, ceil((prompt + output) / pageSize) pages,
 * exceeds the pool is refused on arrival with a reason; every other request fits the pool alone, and
 * the oldest running request is never evicted while another runs, so it always advances.
 *
 * Decode semantics: each decode step appends the K/V of one token and runs attention for it; a request
 * needs `outputLen` decode steps and ends holding prompt + output tokens (the model would hold one
 * fewer, as the last sampled token is never fed back: a one-token over-estimate, kept for simplicity).
 */
import type { PageAllocator } from '../cache/page-allocator';
import { MAX_ARRIVAL_STEP, MAX_REQUEST_TOKENS, type ServingRequest } from './requests';

export interface SchedulerConfig {
  /** Concurrency cap: the most requests running (prefilling or decoding) at once. */
  maxRunning: number;
  /** The most prompt tokens one sequence writes in one step (prefill chunk size). */
  prefillChunkTokens: number;
  /** The most prompt tokens all sequences write in one step together (default: no limit). */
  prefillTokensPerStep?: number;
  /** Free pages required beyond a new request's own, when others are running (default 0). */
  reservePages?: number;
}

/** 'abandoned': still unfinished when the run stopped at its step limit (see abandon()). */
export type RequestPhase = 'pending' | 'waiting' | 'prefill' | 'decode' | 'finished' | 'refused' | 'abandoned';

/** What the scheduler knows about one request. */
export interface RequestState {
  readonly request: ServingRequest;
  phase: RequestPhase;
  /** Live sequence while prefilling or decoding, else null. */
  seqId: number | null;
  /** Output tokens produced so far (kept across preemptions). */
  generated: number;
  /** Tokens this admission must prefill before decoding: prompt + generated at admission. */
  prefillTarget: number;
  /** Tokens of `prefillTarget` written so far. */
  prefilled: number;
  /** Increases with every admission; the largest running value is the youngest. */
  admissionOrder: number;
  preemptions: number;
  /** Prompt + recomputed tokens written by prefill over all admissions. */
  prefillTokensWritten: number;
  admittedAtStep: number | null;
  finishedAtStep: number | null;
  refusedReason: string | null;
}

export interface PrefillChunk {
  requestId: number;
  seqId: number;
  /** Tokens to write this step. */
  count: number;
}

export interface DecodeSlot {
  requestId: number;
  seqId: number;
}

/** Everything one step decided; the executor writes `prefill` then `decode`, then calls completeStep. */
export interface StepPlan {
  step: number;
  arrived: number[];
  refused: { requestId: number; reason: string }[];
  /** Evicted this step (youngest first); their sequences are already freed. */
  preempted: { requestId: number; seqId: number; tokensDropped: number }[];
  /** Admitted this step; their (empty) sequences are created. */
  admitted: { requestId: number; seqId: number }[];
  prefill: PrefillChunk[];
  decode: DecodeSlot[];
}

/** What completeStep did. */
export interface StepOutcome {
  finished: { requestId: number; seqId: number }[];
  /** Requests that finished prefilling and decode from the next step. */
  prefillDone: number[];
}

export class SchedulerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchedulerError';
  }
}

function requireInt(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new SchedulerError(`${name} must be an integer ≥ ${min}${max < Number.MAX_SAFE_INTEGER ? ` and ≤ ${max}` : ''}, got ${value}`);
  }
}

export class ContinuousBatchingScheduler {
  /** One state per request, indexed by request id. */
  readonly states: readonly RequestState[];
  private readonly pending: RequestState[];
  private readonly waiting: RequestState[] = [];
  /** Running requests in admission order (oldest first). */
  private running: RequestState[] = [];
  private nextAdmission = 0;
  private stepIndex = 0;
  private planned: StepPlan | null = null;
  private readonly prefillTokensPerStep: number;
  private readonly reservePages: number;

  constructor(
    readonly allocator: PageAllocator,
    requests: readonly ServingRequest[],
    readonly config: SchedulerConfig,
  ) {
    requireInt('maxRunning', config.maxRunning, 1);
    requireInt('prefillChunkTokens', config.prefillChunkTokens, 1);
    this.prefillTokensPerStep = config.prefillTokensPerStep ?? Infinity;
    if (!(this.prefillTokensPerStep >= 1)) throw new SchedulerError(`prefillTokensPerStep must be ≥ 1, got ${config.prefillTokensPerStep}`);
    this.reservePages = config.reservePages ?? 0;
    requireInt('reservePages', this.reservePages, 0);
    if (allocator.liveSequences().length !== 0) throw new SchedulerError(`the allocator must start empty; it holds ${allocator.liveSequences().length} sequences`);
    requests.forEach((r, i) => {
      if (r.id !== i) throw new SchedulerError(`request ids must be 0…n−1 in order; request at index ${i} has id ${r.id}`);
      requireInt(`request ${i} promptLen`, r.promptLen, 1, MAX_REQUEST_TOKENS);
      requireInt(`request ${i} outputLen`, r.outputLen, 1, MAX_REQUEST_TOKENS);
      requireInt(`request ${i} arrivalStep`, r.arrivalStep, 0, MAX_ARRIVAL_STEP);
    });
    this.states = requests.map((request) => ({
      request,
      phase: 'pending',
      seqId: null,
      generated: 0,
      prefillTarget: 0,
      prefilled: 0,
      admissionOrder: -1,
      preemptions: 0,
      prefillTokensWritten: 0,
      admittedAtStep: null,
      finishedAtStep: null,
      refusedReason: null,
    }));
    // Arrival order; ties by id.
    this.pending = [...this.states].sort((a, b) => b.request.arrivalStep - a.request.arrivalStep || b.request.id - a.request.id);
  }

  /** The step the next planStep() plans (0-based). */
  get step(): number {
    return this.stepIndex;
  }

  /** True when every request has finished or was refused. */
  get done(): boolean {
    return this.pending.length === 0 && this.waiting.length === 0 && this.running.length === 0;
  }

  /** Running requests (prefilling or decoding), oldest admission first. */
  runningRequests(): readonly RequestState[] {
    return this.running;
  }

  /** Waiting requests in queue order (arrived, not running). */
  waitingRequests(): readonly RequestState[] {
    return this.waiting;
  }

  /** Requests not yet arrived. */
  get pendingCount(): number {
    return this.pending.length;
  }

  /**
   * Steps from now in which nothing can happen: nothing runs or waits and the next request arrives
   * that many steps later. 0 when the next step has work (or nothing is left at all).
   */
  idleSteps(): number {
    if (this.planned || this.running.length || this.waiting.length || this.pending.length === 0) return 0;
    return Math.max(0, this.pending[this.pending.length - 1].request.arrivalStep - this.stepIndex);
  }

  /** Advances the clock over `steps` (1…idleSteps()) steps in which nothing happens, in one call. */
  skipIdle(steps: number): void {
    const idle = this.idleSteps();
    if (!Number.isSafeInteger(steps) || steps < 1 || steps > idle) throw new SchedulerError(`skipIdle(${steps}): ${idle} idle steps ahead of step ${this.stepIndex}`);
    this.stepIndex += steps;
  }

  /** Pages the pool must hold for a request's whole context. */
  pagesForContext(tokens: number): number {
    return Math.ceil(tokens / this.allocator.pageSize);
  }

  /** Pages promised to running requests but not yet taken: rest of prompts, next decode token. */
  committedPages(): number {
    let pages = 0;
    for (const s of this.running) {
      const seqId = s.seqId as number;
      pages += s.phase === 'prefill' ? this.allocator.pagesNeeded(seqId, s.prefillTarget - s.prefilled) : this.allocator.pagesNeeded(seqId, 1);
    }
    return pages;
  }

  /** Why a request can never run in this pool, or null. */
  refusalReason(request: ServingRequest): string | null {
    const { numPages, pageSize } = this.allocator;
    const pages = this.pagesForContext(request.promptLen + request.outputLen);
    if (pages > numPages) {
      return `request ${request.id} needs ${pages} pages for ${request.promptLen} prompt + ${request.outputLen} output tokens, ` +
        `but the whole cache holds ${numPages} pages of ${pageSize} tokens (${numPages * pageSize} tokens): it can never fit`;
    }
    return null;
  }

  /** Decides one step (see the module comment). Call completeStep(plan) after executing it. */
  planStep(): StepPlan {
    if (this.planned) throw new SchedulerError(`step ${this.planned.step} was planned but not completed`);
    const plan: StepPlan = { step: this.stepIndex, arrived: [], refused: [], preempted: [], admitted: [], prefill: [], decode: [] };

    // Arrivals.
    while (this.pending.length && this.pending[this.pending.length - 1].request.arrivalStep <= this.stepIndex) {
      const s = this.pending.pop() as RequestState;
      plan.arrived.push(s.request.id);
      const reason = this.refusalReason(s.request);
      if (reason) {
        s.phase = 'refused';
        s.refusedReason = reason;
        plan.refused.push({ requestId: s.request.id, reason });
      } else {
        s.phase = 'waiting';
        this.waiting.push(s);
      }
    }

    // Preempt the youngest until the running requests' commitments fit the free pages.
    const evicted: RequestState[] = [];
    while (this.running.length && this.committedPages() > this.allocator.freePageCount) {
      const victim = this.running.pop() as RequestState;
      const seqId = victim.seqId as number;
      plan.preempted.push({ requestId: victim.request.id, seqId, tokensDropped: this.allocator.contextLength(seqId) });
      this.allocator.freeSequence(seqId);
      victim.phase = 'waiting';
      victim.seqId = null;
      victim.prefilled = 0;
      victim.prefillTarget = 0;
      victim.preemptions++;
      evicted.push(victim);
    }
    // Back to the front, oldest evicted first.
    this.waiting.unshift(...evicted.reverse());

    // Admission: FCFS from the head of the queue.
    let available = this.allocator.freePageCount - this.committedPages();
    while (this.waiting.length && this.running.length < this.config.maxRunning) {
      const head = this.waiting[0];
      // Not back in the step that evicted it: that would only redo its prefill and evict it again.
      if (evicted.includes(head)) break;
      const target = head.request.promptLen + head.generated;
      const pages = this.pagesForContext(target);
      const reserve = this.running.length === 0 ? 0 : this.reservePages;
      if (pages + reserve > available) break;
      this.waiting.shift();
      const seqId = this.allocator.createSequence();
      head.phase = 'prefill';
      head.seqId = seqId;
      head.prefillTarget = target;
      head.prefilled = 0;
      head.admissionOrder = this.nextAdmission++;
      head.admittedAtStep = this.stepIndex;
      this.running.push(head);
      available -= pages;
      plan.admitted.push({ requestId: head.request.id, seqId });
    }

    // Prefill chunks (oldest first), then the decode set.
    let budget = this.prefillTokensPerStep;
    for (const s of this.running) {
      if (s.phase === 'prefill' && budget > 0) {
        const count = Math.min(this.config.prefillChunkTokens, s.prefillTarget - s.prefilled, budget);
        if (count > 0) {
          plan.prefill.push({ requestId: s.request.id, seqId: s.seqId as number, count });
          budget -= count;
        }
      } else if (s.phase === 'decode') {
        plan.decode.push({ requestId: s.request.id, seqId: s.seqId as number });
      }
    }
    this.planned = plan;
    return plan;
  }

  /**
   * Records that the plan's tokens were written: advances prefill and decode progress, finishes
   * requests that produced all their output and frees their pages.
   * @throws SchedulerError when the allocator does not hold what the plan wrote
   */
  completeStep(plan: StepPlan): StepOutcome {
    if (this.planned !== plan) throw new SchedulerError(`completeStep got a plan that is not the one planned last (step ${plan.step})`);
    this.planned = null;
    const outcome: StepOutcome = { finished: [], prefillDone: [] };
    for (const chunk of plan.prefill) {
      const s = this.states[chunk.requestId];
      s.prefilled += chunk.count;
      s.prefillTokensWritten += chunk.count;
      this.expectLength(s, s.prefilled);
      if (s.prefilled === s.prefillTarget) {
        s.phase = 'decode';
        outcome.prefillDone.push(s.request.id);
      }
    }
    for (const slot of plan.decode) {
      const s = this.states[slot.requestId];
      s.generated++;
      this.expectLength(s, s.request.promptLen + s.generated);
      if (s.generated === s.request.outputLen) {
        this.allocator.freeSequence(slot.seqId);
        s.phase = 'finished';
        s.seqId = null;
        s.finishedAtStep = plan.step;
        outcome.finished.push({ requestId: s.request.id, seqId: slot.seqId });
      }
    }
    if (outcome.finished.length) this.running = this.running.filter((s) => s.phase !== 'finished');
    this.stepIndex++;
    return outcome;
  }

  /**
   * Drops every running and waiting request (their pages are freed) so the allocator is empty again;
   * for ending a run after a step limit, or after a failed step (a planned step is dropped). Returns
   * how many requests were left unfinished.
   */
  abandon(): number {
    this.planned = null;
    for (const s of this.running) if (s.seqId !== null) this.allocator.freeSequence(s.seqId);
    const left = this.running.length + this.waiting.length + this.pending.length;
    for (const s of [...this.running, ...this.waiting, ...this.pending]) {
      s.seqId = null;
      s.phase = 'abandoned';
    }
    this.running = [];
    this.waiting.length = 0;
    this.pending.length = 0;
    return left;
  }

  private expectLength(s: RequestState, want: number): void {
    const got = this.allocator.contextLength(s.seqId as number);
    if (got !== want) {
      throw new SchedulerError(`request ${s.request.id} (sequence ${s.seqId}) holds ${got} tokens after step ${this.stepIndex}, expected ${want}: the executor did not write the plan`);
    }
  }
}

/** Writes a plan on a bare allocator (no GPU): what the GPU executor does, minus the data. */
export function reservePlan(allocator: PageAllocator, plan: StepPlan): void {
  for (const chunk of plan.prefill) allocator.reserveTokens(chunk.seqId, chunk.count);
  for (const slot of plan.decode) allocator.reserveTokens(slot.seqId, 1);
}
