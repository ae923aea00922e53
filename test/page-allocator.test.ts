import { describe, expect, it } from 'vitest';
import {
  KvCacheFullError,
  MAX_PAGE_SIZE,
  PageAllocator,
  UNUSED_PAGE_ID,
  UnknownSequenceError,
} from '../src/cache/page-allocator';
import type { PageAllocatorSnapshot, SlotMapping } from '../src/cache/page-allocator';
import { SeededRandom } from '../src/reference/random';

// ---------------------------------------------------------------------------------------------
// Invariant checkers, independent of the allocator's internals (they read only snapshots and the
// public API). A separate test below proves they report corrupted states.
// ---------------------------------------------------------------------------------------------

/** Problems in a snapshot: pages owned twice, leaked, out of range, block tables of wrong length. */
function snapshotProblems(s: PageAllocatorSnapshot): string[] {
  const problems: string[] = [];
  const NOBODY = -2;
  const FREE_LIST = -1;
  const owner = new Array<number>(s.numPages).fill(NOBODY); // [numPages] seqId, FREE_LIST or NOBODY
  const label = (who: number): string => (who === FREE_LIST ? 'the free list' : `sequence ${who}`);
  const claim = (page: number, who: number): void => {
    if (!Number.isInteger(page) || page < 0 || page >= s.numPages) {
      problems.push(`${label(who)} holds out-of-range page ${page}`);
    } else if (owner[page] !== NOBODY) {
      problems.push(`page ${page} owned twice: by ${label(owner[page])} and ${label(who)}`);
    } else {
      owner[page] = who;
    }
  };
  for (const page of s.freePages) claim(page, FREE_LIST);
  const seen = new Set<number>();
  for (const seq of s.sequences) {
    if (seen.has(seq.seqId)) problems.push(`sequence id ${seq.seqId} listed twice`);
    if (seq.seqId >= s.nextSeqId) problems.push(`sequence id ${seq.seqId} >= nextSeqId ${s.nextSeqId}`);
    seen.add(seq.seqId);
    const expectedPages = Math.ceil(seq.contextLength / s.pageSize);
    if (seq.pages.length !== expectedPages) {
      problems.push(
        `sequence ${seq.seqId}: ${seq.pages.length} pages for ${seq.contextLength} tokens, expected ${expectedPages}`,
      );
    }
    for (const page of seq.pages) claim(page, seq.seqId);
  }
  owner.forEach((who, page) => {
    if (who === NOBODY) problems.push(`page ${page} leaked (neither free nor owned)`);
  });
  return problems;
}

/** Snapshot problems plus disagreements between the snapshot and the allocator's public getters. */
function allocatorProblems(alloc: PageAllocator): string[] {
  const s = alloc.snapshot();
  const problems = snapshotProblems(s);
  if (alloc.freePageCount !== s.freePages.length) {
    problems.push(`freePageCount ${alloc.freePageCount} != free list length ${s.freePages.length}`);
  }
  if (alloc.usedPageCount + alloc.freePageCount !== alloc.numPages) {
    problems.push(`used ${alloc.usedPageCount} + free ${alloc.freePageCount} != ${alloc.numPages}`);
  }
  const live = alloc.liveSequences();
  if (live.join() !== s.sequences.map((q) => q.seqId).join()) problems.push('liveSequences() != snapshot');
  let tokens = 0;
  for (const seq of s.sequences) {
    tokens += seq.contextLength;
    if (!alloc.hasSequence(seq.seqId)) problems.push(`hasSequence(${seq.seqId}) false`);
    if (alloc.contextLength(seq.seqId) !== seq.contextLength) problems.push(`contextLength(${seq.seqId})`);
    if (alloc.blockTable(seq.seqId).join() !== seq.pages.join()) problems.push(`blockTable(${seq.seqId})`);
  }
  if (alloc.utilisation().tokens !== tokens) problems.push(`utilisation().tokens != ${tokens}`);
  return problems;
}

/**
 * Test-side record of every slot handed out: checks each new mapping against the block table and
 * that no (page, offset) slot is held by two live tokens.
 */
class SlotLedger {
  // slot key = pageId * pageSize + offset -> owning sequence
  private readonly slotOwner = new Map<number, number>();
  // seqId -> slot keys in logical order ([contextLength])
  private readonly slotsBySeq = new Map<number, number[]>();

  constructor(private readonly pageSize: number) {}

  /** Expected context length of a sequence according to the ledger. */
  length(seqId: number): number {
    return this.slotsBySeq.get(seqId)?.length ?? 0;
  }

  /** Records a mapping returned by `reserveTokens`; returns the problems found. */
  record(seqId: number, mapping: SlotMapping, blockTable: Uint32Array): string[] {
    const problems: string[] = [];
    const slots = this.slotsBySeq.get(seqId) ?? [];
    this.slotsBySeq.set(seqId, slots);
    const { pageIds, offsets, positions } = mapping;
    if (offsets.length !== pageIds.length || positions.length !== pageIds.length) {
      problems.push(`sequence ${seqId}: mapping arrays of different lengths`);
    }
    for (let i = 0; i < pageIds.length; i++) {
      const expectedPosition = slots.length;
      if (positions[i] !== expectedPosition) {
        problems.push(`sequence ${seqId}: token ${i} at position ${positions[i]}, expected ${expectedPosition}`);
      }
      if (offsets[i] !== expectedPosition % this.pageSize) {
        problems.push(`sequence ${seqId}: position ${expectedPosition} at offset ${offsets[i]}`);
      }
      if (pageIds[i] !== blockTable[Math.floor(expectedPosition / this.pageSize)]) {
        problems.push(`sequence ${seqId}: position ${expectedPosition} in page ${pageIds[i]}, not its block table's`);
      }
      const key = pageIds[i] * this.pageSize + offsets[i];
      const holder = this.slotOwner.get(key);
      if (holder !== undefined) {
        problems.push(`slot (page ${pageIds[i]}, offset ${offsets[i]}) given to ${seqId} but held by ${holder}`);
      }
      this.slotOwner.set(key, seqId);
      slots.push(key);
    }
    return problems;
  }

  /** Forgets a freed sequence's slots. */
  release(seqId: number): void {
    for (const key of this.slotsBySeq.get(seqId) ?? []) this.slotOwner.delete(key);
    this.slotsBySeq.delete(seqId);
  }

  /** Full cross-check of every recorded slot against the allocator's block tables. */
  problems(alloc: PageAllocator): string[] {
    const problems: string[] = [];
    let total = 0;
    for (const [seqId, slots] of this.slotsBySeq) {
      total += slots.length;
      if (!alloc.hasSequence(seqId)) {
        problems.push(`ledger holds slots of dead sequence ${seqId}`);
        continue;
      }
      if (alloc.contextLength(seqId) !== slots.length) problems.push(`sequence ${seqId}: length mismatch`);
      const table = alloc.blockTable(seqId);
      slots.forEach((key, pos) => {
        const expected = table[Math.floor(pos / this.pageSize)] * this.pageSize + (pos % this.pageSize);
        if (key !== expected) problems.push(`sequence ${seqId}: position ${pos} moved`);
      });
    }
    if (total !== this.slotOwner.size) problems.push(`ledger: ${total} tokens but ${this.slotOwner.size} slots`);
    return problems;
  }
}

/** A string that is equal for two snapshots exactly when their states are equal (free-list order included). */
function snapshotKey(s: PageAllocatorSnapshot): string {
  const seqs = s.sequences.map((q) => `${q.seqId}:${q.contextLength}:${q.pages.join(',')}`);
  return `${s.numPages}|${s.pageSize}|${s.nextSeqId}|${s.freePages.join(',')}|${seqs.join(';')}`;
}

/** Runs `fn` and returns what it threw (undefined when it returned). */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Fails with the first few problems and the context they were found in. */
function expectNoProblems(problems: string[], context: string): void {
  if (problems.length > 0) expect(problems.slice(0, 8), context).toEqual([]);
}

const PAGE_SIZES = [1, 3, 16, 128];

// ---------------------------------------------------------------------------------------------

describe('PageAllocator construction', () => {
  it('rejects bad pool shapes', () => {
    for (const numPages of [0, -1, 1.5, Number.NaN, Infinity]) {
      expect(() => new PageAllocator(numPages, 16)).toThrow(/numPages/);
    }
    for (const pageSize of [0, -16, 2.5, MAX_PAGE_SIZE + 1, Number.NaN]) {
      expect(() => new PageAllocator(8, pageSize)).toThrow(/pageSize/);
    }
    expect(() => new PageAllocator(8, 16, { shuffleSeed: 0.5 })).toThrow(/shuffleSeed/);
    // a billion pages: refused at once (it used to exhaust the V8 heap building the free list)
    expect(() => new PageAllocator(1e9, 16)).toThrow(/numPages must be an integer in \[1, 67108864\]/);
  });

  it('unknown and freed ids throw UnknownSequenceError', () => {
    const alloc = new PageAllocator(4, 8);
    const seq = alloc.createSequence();
    alloc.freeSequence(seq);
    expect(() => alloc.contextLength(seq)).toThrow(UnknownSequenceError);
    expect(() => alloc.contextLength(seq)).toThrow(/sequence 0 is freed/);
    expect(() => alloc.reserveTokens(7, 1)).toThrow(/sequence 7 is unknown/);
  });

  it('unreserveTokens undoes reservations newest first, free-list order included', () => {
    const alloc = new PageAllocator(16, 4, { shuffleSeed: 9 });
    const a = alloc.createSequence();
    const b = alloc.createSequence();
    alloc.reserveTokens(a, 6);
    const before = alloc.snapshot();
    alloc.reserveTokens(a, 7);
    alloc.reserveTokens(b, 9);
    alloc.unreserveTokens(b, 9);
    alloc.unreserveTokens(a, 7);
    expect(alloc.snapshot()).toEqual(before);
    expect(() => alloc.unreserveTokens(a, 7)).toThrow(/holds 6 tokens; cannot undo 7/);
  });

  it('accepts the extremes of the page-size range and a one-page pool', () => {
    for (const pageSize of [1, MAX_PAGE_SIZE]) {
      const alloc = new PageAllocator(1, pageSize);
      expect(alloc.freePageCount).toBe(1);
      expect(alloc.usedPageCount).toBe(0);
      expect(alloc.pageSize).toBe(pageSize);
      const seq = alloc.createSequence();
      alloc.reserveTokens(seq, pageSize);
      expect(alloc.freePageCount).toBe(0);
      expect(() => alloc.reserveTokens(seq, 1)).toThrow(KvCacheFullError);
    }
  });

  it('hands out pages in order without a seed, and in a seeded permutation with one', () => {
    const take = (alloc: PageAllocator): number[] => {
      const seq = alloc.createSequence();
      alloc.reserveTokens(seq, alloc.numPages * alloc.pageSize);
      return [...alloc.blockTable(seq)];
    };
    const identity = Array.from({ length: 64 }, (_, i) => i);
    expect(take(new PageAllocator(64, 4))).toEqual(identity);

    const a = take(new PageAllocator(64, 4, { shuffleSeed: 1 }));
    expect([...a].sort((x, y) => x - y)).toEqual(identity); // a permutation
    expect(a).not.toEqual(identity);
    expect(take(new PageAllocator(64, 4, { shuffleSeed: 1 }))).toEqual(a); // deterministic
    expect(take(new PageAllocator(64, 4, { shuffleSeed: 2 }))).not.toEqual(a);
  });
});

describe('PageAllocator sequences', () => {
  it('creates distinct ids and never reuses them', () => {
    const alloc = new PageAllocator(4, 16);
    const a = alloc.createSequence();
    const b = alloc.createSequence();
    expect(a).not.toBe(b);
    expect(alloc.liveSequences()).toEqual([a, b]);
    alloc.freeSequence(a);
    const c = alloc.createSequence();
    expect([a, b]).not.toContain(c);
    expect(alloc.liveSequences()).toEqual([b, c]);
    expect(alloc.hasSequence(a)).toBe(false);
    expect(alloc.hasSequence(b)).toBe(true);
  });

  it('rejects unknown and freed sequence ids everywhere', () => {
    const alloc = new PageAllocator(4, 16);
    const seq = alloc.createSequence();
    alloc.reserveTokens(seq, 5);
    alloc.freeSequence(seq);
    const calls: [string, (id: number) => unknown][] = [
      ['freeSequence', (id) => alloc.freeSequence(id)],
      ['reserveTokens', (id) => alloc.reserveTokens(id, 1)],
      ['contextLength', (id) => alloc.contextLength(id)],
      ['blockTable', (id) => alloc.blockTable(id)],
      ['canReserve', (id) => alloc.canReserve(id, 1)],
      ['pagesNeeded', (id) => alloc.pagesNeeded(id, 1)],
      ['maxReservableTokens', (id) => alloc.maxReservableTokens(id)],
      ['packBlockTables', (id) => alloc.packBlockTables([id])],
    ];
    for (const [name, call] of calls) {
      expect(() => call(seq), name).toThrow(`sequence ${seq} is freed`);
      expect(() => call(99), name).toThrow('sequence 99 is unknown');
      expect(() => call(-1), name).toThrow('sequence -1 is unknown');
    }
    expect(alloc.freePageCount).toBe(4);
  });

  it('returns every page of a freed sequence to the free list, and they are reused', () => {
    const alloc = new PageAllocator(6, 4, { shuffleSeed: 3 });
    const a = alloc.createSequence();
    const b = alloc.createSequence();
    alloc.reserveTokens(a, 10); // 3 pages
    alloc.reserveTokens(b, 12); // 3 pages: pool now full
    expect(alloc.freePageCount).toBe(0);
    const pagesOfA = [...alloc.blockTable(a)];
    alloc.freeSequence(a);
    expect(alloc.freePageCount).toBe(3);
    expect([...alloc.snapshot().freePages].sort()).toEqual([...pagesOfA].sort());
    const c = alloc.createSequence();
    alloc.reserveTokens(c, 12);
    expect([...alloc.blockTable(c)].sort()).toEqual([...pagesOfA].sort());
    expectNoProblems(allocatorProblems(alloc), 'after reuse');
  });
});

describe('PageAllocator.reserveTokens', () => {
  it.each(PAGE_SIZES)('maps ragged appends to (page, offset) slots, page size %i', (pageSize) => {
    const alloc = new PageAllocator(4096, pageSize, { shuffleSeed: pageSize });
    const ledger = new SlotLedger(pageSize);
    const seqs = [alloc.createSequence(), alloc.createSequence(), alloc.createSequence()];
    // Lengths that start mid-page, fill a page exactly, and straddle several pages.
    const appends = [1, pageSize - 1, pageSize, 1, 2 * pageSize + 1, 7, 0, 3 * pageSize - 2];
    for (const count of appends) {
      for (const seq of seqs) {
        const before = alloc.contextLength(seq);
        const mapping = alloc.reserveTokens(seq, count);
        expect(mapping.pageIds.length).toBe(count);
        expect(alloc.contextLength(seq)).toBe(before + count);
        expect(alloc.blockTable(seq).length).toBe(Math.ceil((before + count) / pageSize));
        expectNoProblems(ledger.record(seq, mapping, alloc.blockTable(seq)), `append ${count}`);
      }
    }
    expectNoProblems(ledger.problems(alloc), 'ledger');
    expectNoProblems(allocatorProblems(alloc), 'allocator');
  });

  it('returns empty arrays for zero tokens and allocates nothing', () => {
    const alloc = new PageAllocator(2, 16);
    const seq = alloc.createSequence();
    const mapping = alloc.reserveTokens(seq, 0);
    expect(mapping.pageIds.length + mapping.offsets.length + mapping.positions.length).toBe(0);
    expect(alloc.freePageCount).toBe(2);
    expect(alloc.blockTable(seq).length).toBe(0);
  });

  it('rejects non-integer, negative and non-finite counts', () => {
    const alloc = new PageAllocator(2, 16);
    const seq = alloc.createSequence();
    for (const count of [-1, 1.5, Number.NaN, Infinity, 2 ** 53]) {
      expect(() => alloc.reserveTokens(seq, count)).toThrow(/token count/);
      expect(() => alloc.canReserve(seq, count)).toThrow(/token count/);
      expect(() => alloc.pagesNeeded(null, count)).toThrow(/token count/);
    }
    expect(alloc.snapshot().sequences[0].contextLength).toBe(0);
  });

  it('throws KvCacheFullError with the numbers, and changes nothing', () => {
    const alloc = new PageAllocator(5, 16, { shuffleSeed: 9 });
    const a = alloc.createSequence();
    const b = alloc.createSequence();
    alloc.reserveTokens(a, 40); // 3 pages, 8 slots of slack
    alloc.reserveTokens(b, 1); // 1 page
    const before = alloc.snapshot();
    // 1 free page + 8 slack = 24 tokens fit for a; 25 needs 2 pages.
    expect(alloc.maxReservableTokens(a)).toBe(24);
    let caught: unknown;
    try {
      alloc.reserveTokens(a, 25);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(KvCacheFullError);
    const err = caught as KvCacheFullError;
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('KvCacheFullError');
    expect(err).toMatchObject({ seqId: a, tokensRequested: 25, pagesNeeded: 2, pagesFree: 1, tokensThatFit: 24 });
    expect(err.message).toMatch(/need 2 more pages/);
    expect(err.message).toMatch(/only 1 are free/);
    expect(err.message).toMatch(/at most 24 tokens fit/);
    expect(alloc.snapshot()).toEqual(before);
    // The largest request that fits does succeed.
    alloc.reserveTokens(a, 24);
    expect(alloc.freePageCount).toBe(0);
    expectNoProblems(allocatorProblems(alloc), 'after filling');
  });
});

describe('PageAllocator admission control', () => {
  it('counts fresh pages needed for new and existing sequences', () => {
    const alloc = new PageAllocator(10, 16);
    expect(alloc.pagesNeeded(null, 0)).toBe(0);
    expect(alloc.pagesNeeded(null, 1)).toBe(1);
    expect(alloc.pagesNeeded(null, 16)).toBe(1);
    expect(alloc.pagesNeeded(null, 17)).toBe(2);
    expect(alloc.canReserve(null, 160)).toBe(true);
    expect(alloc.canReserve(null, 161)).toBe(false);
    expect(alloc.maxReservableTokens(null)).toBe(160);

    const seq = alloc.createSequence();
    alloc.reserveTokens(seq, 20); // 2 pages, 12 slots of slack
    expect(alloc.pagesNeeded(seq, 12)).toBe(0);
    expect(alloc.pagesNeeded(seq, 13)).toBe(1);
    expect(alloc.maxReservableTokens(seq)).toBe(12 + 8 * 16);
    expect(alloc.canReserve(seq, 140)).toBe(true);
    expect(alloc.canReserve(seq, 141)).toBe(false);
    expect(() => alloc.reserveTokens(seq, 141)).toThrow(KvCacheFullError);
    alloc.reserveTokens(seq, 140);
    expect(alloc.freePageCount).toBe(0);
    expect(alloc.canReserve(null, 1)).toBe(false);
    expect(alloc.canReserve(null, 0)).toBe(true);
  });
});

describe('PageAllocator.utilisation', () => {
  it('reports internal fragmentation and page occupancy', () => {
    const alloc = new PageAllocator(8, 16);
    expect(alloc.utilisation()).toEqual({
      tokens: 0,
      allocatedSlots: 0,
      slotFraction: 1,
      usedPages: 0,
      pageFraction: 0,
    });
    const a = alloc.createSequence();
    const b = alloc.createSequence();
    alloc.reserveTokens(a, 17); // 2 pages
    alloc.reserveTokens(b, 16); // 1 page
    expect(alloc.utilisation()).toEqual({
      tokens: 33,
      allocatedSlots: 48,
      slotFraction: 33 / 48,
      usedPages: 3,
      pageFraction: 3 / 8,
    });
    alloc.freeSequence(a);
    expect(alloc.utilisation()).toMatchObject({ tokens: 16, slotFraction: 1, usedPages: 1 });
  });
});

describe('PageAllocator.packBlockTables', () => {
  it('packs ragged block tables row-major with sentinel padding', () => {
    const alloc = new PageAllocator(32, 4, { shuffleSeed: 5 });
    const lengths = [1, 4, 9, 0, 13];
    const seqs = lengths.map((len) => {
      const seq = alloc.createSequence();
      alloc.reserveTokens(seq, len);
      return seq;
    });
    const order = [seqs[2], seqs[0], seqs[4], seqs[3], seqs[1]];
    const { blockTables, contextLens, maxPagesPerSeq } = alloc.packBlockTables(order);
    expect(maxPagesPerSeq).toBe(4); // ceil(13 / 4)
    expect(blockTables.length).toBe(order.length * maxPagesPerSeq);
    expect([...contextLens]).toEqual([9, 1, 13, 0, 4]);
    order.forEach((seq, row) => {
      const table = alloc.blockTable(seq);
      const rowEntries = blockTables.subarray(row * maxPagesPerSeq, (row + 1) * maxPagesPerSeq);
      expect([...rowEntries.subarray(0, table.length)]).toEqual([...table]);
      expect([...rowEntries.subarray(table.length)].every((p) => p === UNUSED_PAGE_ID)).toBe(true);
    });
  });

  it('honours a fixed stride and rejects one that is too short', () => {
    const alloc = new PageAllocator(8, 4);
    const seq = alloc.createSequence();
    alloc.reserveTokens(seq, 9); // 3 pages
    const packed = alloc.packBlockTables([seq, seq], { maxPagesPerSeq: 5 });
    expect(packed.maxPagesPerSeq).toBe(5);
    const pad = UNUSED_PAGE_ID;
    expect([...packed.blockTables]).toEqual([0, 1, 2, pad, pad, 0, 1, 2, pad, pad]);
    expect(() => alloc.packBlockTables([seq], { maxPagesPerSeq: 2 })).toThrow(/shorter than the longest/);
    expect(() => alloc.packBlockTables([seq], { maxPagesPerSeq: 0 })).toThrow(/positive integer/);
  });

  it('keeps a stride of at least one for empty batches and sequences', () => {
    const alloc = new PageAllocator(2, 16);
    expect(alloc.packBlockTables([])).toEqual({
      blockTables: new Uint32Array(0),
      contextLens: new Uint32Array(0),
      maxPagesPerSeq: 1,
    });
    const seq = alloc.createSequence();
    const packed = alloc.packBlockTables([seq]);
    expect(packed.maxPagesPerSeq).toBe(1);
    expect([...packed.blockTables]).toEqual([UNUSED_PAGE_ID]);
    expect([...packed.contextLens]).toEqual([0]);
  });
});

describe('invariant checkers', () => {
  /** A valid state with several sequences and some free pages. */
  function validState(): { alloc: PageAllocator; snap: PageAllocatorSnapshot } {
    const alloc = new PageAllocator(12, 4, { shuffleSeed: 11 });
    for (const len of [5, 8, 1, 13]) alloc.reserveTokens(alloc.createSequence(), len);
    const snap = alloc.snapshot();
    expect(snapshotProblems(snap)).toEqual([]);
    expect(allocatorProblems(alloc)).toEqual([]);
    return { alloc, snap };
  }

  it('catches a page owned by two sequences', () => {
    const { snap } = validState();
    snap.sequences[1].pages[0] = snap.sequences[0].pages[0];
    const problems = snapshotProblems(snap);
    expect(problems.some((p) => /owned twice/.test(p))).toBe(true);
    expect(problems.some((p) => /leaked/.test(p))).toBe(true);
  });

  it('catches a page both free and owned', () => {
    const { snap } = validState();
    snap.freePages = Uint32Array.from([...snap.freePages, snap.sequences[2].pages[0]]);
    expect(snapshotProblems(snap)).toEqual([expect.stringMatching(/owned twice: by the free list and sequence/)]);
  });

  it('catches a leaked page', () => {
    const { snap } = validState();
    snap.freePages = snap.freePages.slice(1);
    expect(snapshotProblems(snap)).toEqual([expect.stringMatching(/leaked/)]);
  });

  it('catches a block table too short for its context length, and an out-of-range page', () => {
    const { snap } = validState();
    snap.sequences[0].contextLength += snap.pageSize;
    expect(snapshotProblems(snap)).toEqual([expect.stringMatching(/expected/)]);
    const { snap: snap2 } = validState();
    snap2.sequences[3].pages[1] = snap2.numPages;
    expect(snapshotProblems(snap2).some((p) => /out-of-range/.test(p))).toBe(true);
  });

  it('tells snapshots apart by any state change, free-list order included', () => {
    const { alloc, snap } = validState();
    expect(snapshotKey(alloc.snapshot())).toBe(snapshotKey(snap));
    const swapped = { ...snap, freePages: snap.freePages.slice().reverse() };
    expect(snapshotKey(swapped)).not.toBe(snapshotKey(snap));
    alloc.reserveTokens(alloc.liveSequences()[0], 1);
    expect(snapshotKey(alloc.snapshot())).not.toBe(snapshotKey(snap));
    alloc.createSequence();
    const withNewSeq = alloc.snapshot();
    alloc.freeSequence(alloc.liveSequences().at(-1)!);
    expect(snapshotKey(alloc.snapshot())).not.toBe(snapshotKey(withNewSeq));
  });

  it('catches a slot handed to two sequences and a wrong offset', () => {
    const { alloc } = validState();
    const ledger = new SlotLedger(alloc.pageSize);
    const [a, b] = alloc.liveSequences();
    const mapping: SlotMapping = {
      pageIds: Uint32Array.from([alloc.blockTable(a)[0]]),
      offsets: Uint32Array.from([0]),
      positions: Uint32Array.from([0]),
    };
    expect(ledger.record(a, mapping, alloc.blockTable(a))).toEqual([]);
    const dup = ledger.record(b, mapping, alloc.blockTable(a));
    expect(dup.some((p) => /held by/.test(p))).toBe(true);
    const wrongOffset = { ...mapping, positions: Uint32Array.from([1]), offsets: Uint32Array.from([2]) };
    expect(ledger.record(a, wrongOffset, alloc.blockTable(a)).some((p) => /offset 2/.test(p))).toBe(true);
  });
});

describe('PageAllocator fuzz', () => {
  interface FuzzStats {
    creates: number;
    frees: number;
    reserves: number;
    fullErrors: number;
    badIdErrors: number;
    peakPageFraction: number;
  }

  /** Random create/reserve/free operations with invariants checked after every one. */
  function fuzz(seed: number, numPages: number, pageSize: number, numOps: number): FuzzStats {
    const rng = new SeededRandom(seed);
    const alloc = new PageAllocator(numPages, pageSize, { shuffleSeed: seed });
    const ledger = new SlotLedger(pageSize);
    const live: number[] = [];
    const dead: number[] = [];
    const deadSet = new Set<number>();
    const stats: FuzzStats = { creates: 0, frees: 0, reserves: 0, fullErrors: 0, badIdErrors: 0, peakPageFraction: 0 };
    const capacity = numPages * pageSize;

    const randomCount = (): number => {
      const r = rng.uniform();
      if (r < 0.45) return 1; // decode step
      if (r < 0.75) return rng.int(2 * pageSize + 1); // short append, often 0 or mid-page
      if (r < 0.95) return rng.int(Math.ceil(capacity / 4)); // prompt
      return rng.int(capacity + 2 * pageSize); // may exceed the whole pool
    };

    for (let op = 0; op < numOps; op++) {
      const where = `seed ${seed}, page size ${pageSize}, op ${op}`;
      const r = rng.uniform();
      // Free more often as the pool fills, so it hovers near full without staying there.
      const freeChance = 0.04 + 0.3 * alloc.utilisation().pageFraction ** 4;
      if (live.length === 0 || r < 0.08) {
        const seq = alloc.createSequence();
        if (alloc.hasSequence(seq) === false || live.includes(seq) || deadSet.has(seq)) {
          expect.fail(`${where}: createSequence returned a used id ${seq}`);
        }
        live.push(seq);
        stats.creates++;
      } else if (r < 0.08 + freeChance) {
        const index = rng.int(live.length);
        const seq = live[index];
        const pages = alloc.blockTable(seq);
        alloc.freeSequence(seq);
        ledger.release(seq);
        live[index] = live[live.length - 1];
        live.pop();
        dead.push(seq);
        deadSet.add(seq);
        stats.frees++;
        // Every freed page is back on the free list.
        const free = new Set(alloc.snapshot().freePages);
        for (const page of pages) if (!free.has(page)) expect.fail(`${where}: freed page ${page} not free`);
      } else if (r < 0.09 + freeChance && dead.length > 0) {
        const seq = dead[rng.int(dead.length)];
        const before = snapshotKey(alloc.snapshot());
        expect(String(thrownBy(() => alloc.reserveTokens(seq, 1)))).toMatch(/freed/);
        expect(String(thrownBy(() => alloc.freeSequence(seq)))).toMatch(/freed/);
        if (snapshotKey(alloc.snapshot()) !== before) expect.fail(`${where}: bad id changed the state`);
        stats.badIdErrors++;
      } else {
        const seq = live[rng.int(live.length)];
        const count = randomCount();
        const length = ledger.length(seq);
        const expectedPages = Math.ceil((length + count) / pageSize) - Math.ceil(length / pageSize);
        const fits = expectedPages <= alloc.freePageCount;
        if (alloc.pagesNeeded(seq, count) !== expectedPages || alloc.canReserve(seq, count) !== fits) {
          expect.fail(`${where}: admission control disagrees for ${count} tokens after ${length}`);
        }
        const newFits = Math.ceil(count / pageSize) <= alloc.freePageCount;
        if (alloc.canReserve(null, count) !== newFits) expect.fail(`${where}: canReserve(null, ${count})`);
        if (fits) {
          const mapping = alloc.reserveTokens(seq, count);
          expectNoProblems(ledger.record(seq, mapping, alloc.blockTable(seq)), where);
          stats.reserves++;
        } else {
          const before = snapshotKey(alloc.snapshot());
          if (!(thrownBy(() => alloc.reserveTokens(seq, count)) instanceof KvCacheFullError)) {
            expect.fail(`${where}: ${count} tokens did not throw KvCacheFullError`);
          }
          if (snapshotKey(alloc.snapshot()) !== before) expect.fail(`${where}: KvCacheFullError changed the state`);
          stats.fullErrors++;
        }
      }
      expectNoProblems(allocatorProblems(alloc), where);
      if (op % 257 === 0) expectNoProblems(ledger.problems(alloc), where);
      stats.peakPageFraction = Math.max(stats.peakPageFraction, alloc.utilisation().pageFraction);
    }
    expectNoProblems(ledger.problems(alloc), `seed ${seed}: end`);

    // After freeing everything, one sequence can take every page exactly once.
    for (const seq of live) alloc.freeSequence(seq);
    expect(alloc.freePageCount).toBe(numPages);
    const all = alloc.createSequence();
    alloc.reserveTokens(all, capacity);
    expect([...alloc.blockTable(all)].sort((x, y) => x - y)).toEqual(Array.from({ length: numPages }, (_, i) => i));
    expectNoProblems(allocatorProblems(alloc), `seed ${seed}: refill`);
    return stats;
  }

  it('keeps every invariant over 120,000 random operations', () => {
    const configs = [
      { seed: 1, numPages: 64, pageSize: 16 },
      { seed: 2, numPages: 40, pageSize: 1 },
      { seed: 3, numPages: 24, pageSize: 3 },
      { seed: 4, numPages: 8, pageSize: 128 },
    ];
    for (const { seed, numPages, pageSize } of configs) {
      const stats = fuzz(seed, numPages, pageSize, 30_000);
      // Coverage guards: the run must exercise every path, including a full pool.
      expect(stats.creates).toBeGreaterThan(1000);
      expect(stats.frees).toBeGreaterThan(1000);
      expect(stats.reserves).toBeGreaterThan(10_000);
      expect(stats.fullErrors).toBeGreaterThan(500);
      expect(stats.badIdErrors).toBeGreaterThan(100);
      expect(stats.peakPageFraction).toBe(1);
    }
  });
});
