/**
 * Page allocator for the paged KV cache (docs/design.md, "Paged layout"). Pure TypeScript, no WebGPU.
 *
 * A pool of `numPages` physical pages, each holding `pageSize` tokens of one sequence. Every page is
 * at any time either on the free list or owned by exactly one live sequence. A sequence's block table
 * lists its pages in logical order: token at logical position `p` lives in page
 * `blockTable[floor(p / pageSize)]` at offset `p % pageSize`. Sequences only grow at their logical
 * end and release all their pages at once when freed.
 *
 * Allocation is atomic: `reserveTokens` either allocates every page it needs or throws
 * `KvCacheFullError` and changes nothing.
 *
 * The free list is a LIFO stack: the pages a sequence frees are the first ones handed out again.
 * With `shuffleSeed` the initial stack is a seeded permutation so physical pages come out in
 * arbitrary order, as the GPU kernels must tolerate.
 *
 * @example
 * const alloc = new PageAllocator(1024, 16, { shuffleSeed: 7 });
 * const seq = alloc.createSequence();
 * const slots = alloc.reserveTokens(seq, promptLength); // write K/V of the prompt at these slots
 * const { blockTables, contextLens, maxPagesPerSeq } = alloc.packBlockTables([seq]);
 * alloc.freeSequence(seq);
 */
import { SeededRandom } from '../reference/random';

/** Smallest page size (tokens per page) the allocator accepts. */
export const MIN_PAGE_SIZE = 1;
/** Largest page size (tokens per page) the allocator accepts. */
export const MAX_PAGE_SIZE = 128;
/** Block-table entry that names no page (padding past a sequence's last page). */
export const UNUSED_PAGE_ID = 0xffffffff;
/** Largest pool: page ids must stay below the `UNUSED_PAGE_ID` sentinel. */
export const MAX_NUM_PAGES = UNUSED_PAGE_ID;
/**
 * Most pages one pool may have: 2^26 (a billion tokens at page 16; the free list alone is 256 MiB of
 * host memory). Larger requests are refused before anything is allocated.
 */
export const MAX_POOL_PAGES = 1 << 26;

/** A sequence id the allocator does not hold (never created, or freed). */
export class UnknownSequenceError extends RangeError {
  constructor(readonly seqId: number, readonly reason: 'unknown' | 'freed', liveSequences: number) {
    super(`sequence ${seqId} is ${reason} (live sequences: ${liveSequences})`);
    this.name = 'UnknownSequenceError';
  }
}

/** Options for `PageAllocator`. */
export interface PageAllocatorOptions {
  /** When set, the free list starts as a permutation of page ids seeded by this integer. */
  shuffleSeed?: number;
}

/** Where the tokens of one `reserveTokens` call go; all arrays are `[count]`, index i = i-th new token. */
export interface SlotMapping {
  /** [count] u32 physical page id holding the token. */
  pageIds: Uint32Array;
  /** [count] u32 offset of the token within its page, in [0, pageSize). */
  offsets: Uint32Array;
  /** [count] u32 logical position of the token in its sequence (consecutive, from the old length). */
  positions: Uint32Array;
}

/** Block tables and context lengths laid out for a GPU storage buffer. */
export interface PackedBlockTables {
  /** [numSeqs, maxPagesPerSeq] u32 page ids in logical order, row-major; padding = UNUSED_PAGE_ID. */
  blockTables: Uint32Array;
  /** [numSeqs] u32 tokens held by each sequence. */
  contextLens: Uint32Array;
  /** Row stride of `blockTables` in entries (>= 1). */
  maxPagesPerSeq: number;
}

/** Occupancy of the pool. */
export interface PageUtilisation {
  /** Tokens held by all live sequences. */
  tokens: number;
  /** Token slots in pages owned by live sequences (usedPages * pageSize). */
  allocatedSlots: number;
  /** tokens / allocatedSlots: 1 - internal fragmentation; 1 when no page is used. */
  slotFraction: number;
  /** Pages owned by live sequences. */
  usedPages: number;
  /** usedPages / numPages. */
  pageFraction: number;
}

/** Deep copy of the allocator's state, for tests, debugging and invariant checks. */
export interface PageAllocatorSnapshot {
  numPages: number;
  pageSize: number;
  /** [freePageCount] u32 free page ids; the last entry is handed out first. */
  freePages: Uint32Array;
  /** Live sequences in creation order. */
  sequences: { seqId: number; contextLength: number; pages: Uint32Array /* [numPagesOwned] */ }[];
  /** Id the next `createSequence` will return. */
  nextSeqId: number;
}

/** Thrown by `reserveTokens` when the free list cannot cover the request; the allocator is unchanged. */
export class KvCacheFullError extends Error {
  /**
   * @param seqId sequence the tokens were for (null: a new sequence)
   * @param tokensRequested tokens asked for
   * @param pagesNeeded fresh pages the request needs
   * @param pagesFree pages on the free list
   * @param tokensThatFit largest request that would succeed now for this sequence
   */
  constructor(
    readonly seqId: number | null,
    readonly tokensRequested: number,
    readonly pagesNeeded: number,
    readonly pagesFree: number,
    readonly tokensThatFit: number,
  ) {
    const who = seqId === null ? 'a new sequence' : `sequence ${seqId}`;
    super(
      `KV cache full: ${tokensRequested} tokens for ${who} need ${pagesNeeded} more pages ` +
        `but only ${pagesFree} are free; at most ${tokensThatFit} tokens fit now`,
    );
    this.name = 'KvCacheFullError';
  }
}

interface SequenceState {
  /** Page ids in logical order; length == ceil(contextLength / pageSize). */
  pages: number[];
  contextLength: number;
}

/** Pool of KV-cache pages with per-sequence block tables. */
export class PageAllocator {
  /** Physical pages in the pool. */
  readonly numPages: number;
  /** Tokens per page. */
  readonly pageSize: number;

  // [numPages] u32 stack of free page ids; entries [0, freeTop) are free, top of stack last.
  private readonly freeStack: Uint32Array;
  private freeTop: number;
  private readonly sequences = new Map<number, SequenceState>();
  private nextSeqId = 0;
  private totalTokens = 0;

  /**
   * @param numPages physical pages in the pool, integer in [1, MAX_NUM_PAGES)
   * @param pageSize tokens per page, integer in [MIN_PAGE_SIZE, MAX_PAGE_SIZE]
   */
  constructor(numPages: number, pageSize: number, options: PageAllocatorOptions = {}) {
    if (!Number.isInteger(numPages) || numPages < 1 || numPages > MAX_POOL_PAGES) {
      throw new RangeError(`numPages must be an integer in [1, ${MAX_POOL_PAGES}], got ${numPages}`);
    }
    if (!Number.isInteger(pageSize) || pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE) {
      throw new RangeError(
        `pageSize must be an integer in [${MIN_PAGE_SIZE}, ${MAX_PAGE_SIZE}], got ${pageSize}`,
      );
    }
    const { shuffleSeed } = options;
    if (shuffleSeed !== undefined && !Number.isInteger(shuffleSeed)) {
      throw new RangeError(`shuffleSeed must be an integer, got ${shuffleSeed}`);
    }
    this.numPages = numPages;
    this.pageSize = pageSize;
    // Stored reversed so that, unshuffled, pages come out as 0, 1, 2, ...
    this.freeStack = new Uint32Array(numPages);
    for (let i = 0; i < numPages; i++) this.freeStack[i] = numPages - 1 - i;
    if (shuffleSeed !== undefined) new SeededRandom(shuffleSeed).shuffle(this.freeStack);
    this.freeTop = numPages;
  }

  /** Pages on the free list. */
  get freePageCount(): number {
    return this.freeTop;
  }

  /** Pages owned by live sequences (numPages - freePageCount). */
  get usedPageCount(): number {
    return this.numPages - this.freeTop;
  }

  /** Starts an empty sequence and returns its id. Ids increase and are never reused. */
  createSequence(): number {
    const seqId = this.nextSeqId++;
    this.sequences.set(seqId, { pages: [], contextLength: 0 });
    return seqId;
  }

  /** Ends a sequence and returns all its pages to the free list; its id becomes invalid. */
  freeSequence(seqId: number): void {
    const seq = this.getSequence(seqId);
    // Push in reverse so the sequence's first page is handed out first next time.
    for (let i = seq.pages.length - 1; i >= 0; i--) this.freeStack[this.freeTop++] = seq.pages[i];
    this.totalTokens -= seq.contextLength;
    this.sequences.delete(seqId);
  }

  /** True while `seqId` names a live sequence. */
  hasSequence(seqId: number): boolean {
    return this.sequences.has(seqId);
  }

  /** Ids of live sequences in creation order. */
  liveSequences(): number[] {
    return [...this.sequences.keys()];
  }

  /** Tokens held by a sequence. */
  contextLength(seqId: number): number {
    return this.getSequence(seqId).contextLength;
  }

  /** [ceil(contextLength / pageSize)] u32 page ids of a sequence in logical order (a copy). */
  blockTable(seqId: number): Uint32Array {
    return Uint32Array.from(this.getSequence(seqId).pages);
  }

  /**
   * Fresh pages needed to append `count` tokens to a sequence (null: to a new, empty sequence).
   * Zero when the tokens fit in the slack of the sequence's last page.
   */
  pagesNeeded(seqId: number | null, count: number): number {
    checkCount(count);
    const seq = seqId === null ? null : this.getSequence(seqId);
    const length = seq?.contextLength ?? 0;
    const owned = seq?.pages.length ?? 0;
    return Math.ceil((length + count) / this.pageSize) - owned;
  }

  /** True when `reserveTokens(seqId, count)` would succeed now (null: a new sequence). */
  canReserve(seqId: number | null, count: number): boolean {
    return this.pagesNeeded(seqId, count) <= this.freeTop;
  }

  /** Largest `count` that `reserveTokens(seqId, count)` would accept now (null: a new sequence). */
  maxReservableTokens(seqId: number | null): number {
    const seq = seqId === null ? null : this.getSequence(seqId);
    const slack = seq === null ? 0 : seq.pages.length * this.pageSize - seq.contextLength;
    return slack + this.freeTop * this.pageSize;
  }

  /**
   * Appends `count` tokens to the logical end of a sequence, taking pages from the free list as
   * needed, and returns where each new token goes. `count` 0 returns empty arrays.
   * @throws KvCacheFullError when the free list is too short; nothing is changed then.
   */
  reserveTokens(seqId: number, count: number): SlotMapping {
    const seq = this.getSequence(seqId);
    const needed = this.pagesNeeded(seqId, count);
    if (needed > this.freeTop) {
      throw new KvCacheFullError(seqId, count, needed, this.freeTop, this.maxReservableTokens(seqId));
    }
    for (let i = 0; i < needed; i++) seq.pages.push(this.freeStack[--this.freeTop]);

    const pageIds = new Uint32Array(count);
    const offsets = new Uint32Array(count);
    const positions = new Uint32Array(count);
    const start = seq.contextLength;
    for (let i = 0; i < count; i++) {
      const position = start + i;
      pageIds[i] = seq.pages[Math.floor(position / this.pageSize)];
      offsets[i] = position % this.pageSize;
      positions[i] = position;
    }
    seq.contextLength += count;
    this.totalTokens += count;
    return { pageIds, offsets, positions };
  }

  /**
   * Undoes the last `count` tokens reserved for a sequence (a write that failed after its
   * reservation): context length back, and the pages the reservation took pushed back in reverse, so
   * the free list is exactly as before (snapshot() equal). Undo several reservations newest first.
   */
  unreserveTokens(seqId: number, count: number): void {
    checkCount(count);
    const seq = this.getSequence(seqId);
    if (count > seq.contextLength) throw new RangeError(`sequence ${seqId} holds ${seq.contextLength} tokens; cannot undo ${count}`);
    seq.contextLength -= count;
    this.totalTokens -= count;
    const keep = Math.ceil(seq.contextLength / this.pageSize);
    while (seq.pages.length > keep) this.freeStack[this.freeTop++] = seq.pages.pop()!;
  }

  /** Token-slot and page occupancy of the pool. */
  utilisation(): PageUtilisation {
    const usedPages = this.usedPageCount;
    const allocatedSlots = usedPages * this.pageSize;
    return {
      tokens: this.totalTokens,
      allocatedSlots,
      slotFraction: allocatedSlots === 0 ? 1 : this.totalTokens / allocatedSlots,
      usedPages,
      pageFraction: usedPages / this.numPages,
    };
  }

  /**
   * Packs the block tables and context lengths of `seqIds` (in that order, one row each) for upload.
   * The row stride is the longest block table (at least 1), or `options.maxPagesPerSeq` when given,
   * so a caller can keep one buffer layout across decode steps.
   * @throws RangeError when a sequence owns more pages than `options.maxPagesPerSeq`
   */
  packBlockTables(
    seqIds: readonly number[],
    options: { maxPagesPerSeq?: number } = {},
  ): PackedBlockTables {
    const seqs = seqIds.map((id) => this.getSequence(id));
    const longest = seqs.reduce((m, s) => Math.max(m, s.pages.length), 0);
    let maxPagesPerSeq = Math.max(1, longest);
    if (options.maxPagesPerSeq !== undefined) {
      const stride = options.maxPagesPerSeq;
      if (!Number.isInteger(stride) || stride < 1) {
        throw new RangeError(`maxPagesPerSeq must be a positive integer, got ${stride}`);
      }
      if (stride < longest) {
        throw new RangeError(`maxPagesPerSeq ${stride} is shorter than the longest block table (${longest} pages)`);
      }
      maxPagesPerSeq = stride;
    }
    const blockTables = new Uint32Array(seqs.length * maxPagesPerSeq).fill(UNUSED_PAGE_ID);
    const contextLens = new Uint32Array(seqs.length);
    seqs.forEach((seq, row) => {
      blockTables.set(seq.pages, row * maxPagesPerSeq);
      contextLens[row] = seq.contextLength;
    });
    return { blockTables, contextLens, maxPagesPerSeq };
  }

  /** Deep copy of the whole state (free list order included); equal snapshots mean equal states. */
  snapshot(): PageAllocatorSnapshot {
    return {
      numPages: this.numPages,
      pageSize: this.pageSize,
      freePages: this.freeStack.slice(0, this.freeTop),
      sequences: [...this.sequences].map(([seqId, s]) => ({
        seqId,
        contextLength: s.contextLength,
        pages: Uint32Array.from(s.pages),
      })),
      nextSeqId: this.nextSeqId,
    };
  }

  private getSequence(seqId: number): SequenceState {
    const seq = this.sequences.get(seqId);
    if (seq === undefined) {
      const reason = Number.isInteger(seqId) && seqId >= 0 && seqId < this.nextSeqId ? 'freed' : 'unknown';
      throw new UnknownSequenceError(seqId, reason, this.sequences.size);
    }
    return seq;
  }
}

function checkCount(count: number): void {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`token count must be a non-negative integer, got ${count}`);
  }
}
