/**
 * Sizes of a `simulate` sweep, known before any work: the host memory its request state, step
 * records, JSON text and per-step K/V values take, and the per-step GPU buffers, estimated from the
 * inputs alone, so a command line that cannot fit is refused up front instead of dying in a V8 abort
 * or a GPU failure hours in. Library code for Node and the browser: the machine's limits (V8 heap,
 * free memory) are the caller's to read (src/cli/simulate-command.ts reads node:v8 and node:os).
 *
 * The byte counts per item were measured on Node 20 (V8 11) and rounded up generously: they are
 * estimates, "~" in messages. With repeats, a run's step records are held for every repeat until its
 * median is known (then one repeat's are kept): the estimate counts those held records as kept ones,
 * JSON share included, so the hard limit below (records held at once) is never tighter than the plan. Where an estimate can undershoot (the step count of a run that stops
 * only when every request is done, with preemptions), the simulator also enforces a hard record limit
 * while it runs (SimulatorOptions.maxRecords).
 */
import type { ServingRequest } from './requests';

/** A sweep too large for this machine or past a sensible size: "needs X, limit Y, try Z". */
export class SimulateLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulateLimitError';
  }
}

/**
 * JS-heap bytes per request over a sweep: the request (~70), one scheduler's state and queue slots
 * (~150), the previous run's states until collected, parsing garbage. Measured ~230; rounded up.
 */
export const REQUEST_HEAP_BYTES = 512;
/** JS-heap bytes per step record kept in the result (~130 measured, with its array slots). */
export const STEP_RECORD_HEAP_BYTES = 256;
/** Characters of one step record in the JSON result (~650 measured at its indentation). */
export const STEP_RECORD_JSON_CHARS = 1000;
/** JS-heap bytes of one repeat's RunSummary (~30 numbers and up to 10 refusal reasons, ~1 KiB measured). */
export const RUN_SUMMARY_HEAP_BYTES = 4096;
/** Characters of one RunSummary in the JSON result (~900 without refusal reasons, ~3k with ten). */
export const RUN_SUMMARY_JSON_CHARS = 3000;
/** Characters of one run's spread (7 figures × 5 order statistics) in the JSON result. */
export const RUN_SPREAD_JSON_CHARS = 1500;
/** Heap bytes per JSON character: the text holds non-Latin-1 characters (≈, ×), so V8 stores two bytes each. */
export const JSON_HEAP_BYTES_PER_CHAR = 2;
/** Longest string V8 makes on 64-bit hosts (2^29 − 24 characters): the JSON result is one string. */
export const MAX_STRING_CHARS = 2 ** 29 - 24;
/** Host copies of each generated K/V/q array: the array itself and the upload's staging copy. */
const HOST_COPIES_PER_UPLOAD = 2;
const BYTES_PER_F32 = 4;

/** What the host may give a sweep (read by the caller, e.g. from node:v8 and node:os). */
export interface HostLimits {
  /** JS-heap bytes the sweep may use: requests, step records, the JSON text. */
  heapBytes: number;
  /** How heapBytes was chosen, for messages ("half the V8 heap limit of 4.05 GiB"). */
  heapSource: string;
  /** Bytes outside the heap (typed arrays, upload staging) one step may use. */
  bufferBytes: number;
  bufferSource: string;
}

/** The requests the heap holds at REQUEST_HEAP_BYTES each. */
export function maxRequestsFor(limits: HostLimits): number {
  return Math.floor(limits.heapBytes / REQUEST_HEAP_BYTES);
}

export interface SweepSizeInput {
  requests: readonly ServingRequest[];
  /** Pages of each method's pool (one run per method and cap). */
  numPages: readonly number[];
  caps: readonly number[];
  pageSize: number;
  prefillChunkTokens: number;
  prefillTokensPerStep?: number;
  /** Steps per run; 0: until every request is done. */
  maxSteps: number;
  /** Runs of every (method, cap) (default 1). */
  repeats?: number;
  model: { headDim: number; numQueryHeads: number; numKvHeads: number };
  /** Whether the result is also made into JSON text. */
  json: boolean;
}

export interface SweepSize {
  /** Runs of the sweep: methods × caps. */
  runs: number;
  /** Step records of all runs together: exact bound when maxSteps > 0 (a record covers ≥ 1 step), else an estimate. */
  stepRecords: number;
  /** Step records of the longest run (one repeat). */
  maxRunRecords: number;
  /** Step records held at once at most: the kept ones plus the other repeats' of the run in progress. */
  heldRecords: number;
  requestHeapBytes: number;
  /** Heap of every repeat's summary and every run's spread, their JSON included when `json`. */
  summaryHeapBytes: number;
  /** Heap of the held step records (JSON text not included). */
  recordHeapBytes: number;
  /** Characters of the JSON result at most (0 without JSON; held records counted as if written). */
  jsonChars: number;
  /** Everything on the JS heap together (requests, summaries, records, JSON text). */
  heapBytes: number;
  /** Prompt tokens one step writes at most, all sequences together (one chunk of each running prompt). */
  maxPrefillTokensPerStep: number;
  /** Sequences one decode step runs at most. */
  maxDecodeBatch: number;
  /** Pages one sequence holds at most (its block-table row). */
  maxPagesPerSequence: number;
  /** Host bytes of the K/V/q values one step generates and uploads, at most. */
  stepBufferBytes: number;
}

/**
 * Estimates a sweep's sizes. Steps of a run until done: the requests' serial work (prefill chunks +
 * output tokens) divided by the concurrency the cap and the pool allow, plus the longest request and
 * the arrival span (work cannot go faster than requests come), capped by the serial work, plus one
 * record per idle gap (at most one per distinct arrival step).
 */
export function estimateSweepSize(o: SweepSizeInput): SweepSize {
  const n = o.requests.length;
  const chunk = Math.min(o.prefillChunkTokens, o.prefillTokensPerStep ?? Infinity);
  let serial = 0;
  let longest = 0;
  let pageSum = 0;
  let maxPages = 0;
  let maxPrompt = 0;
  let arrivalSteps = 0;
  let lastArrival = -1;
  for (const r of o.requests) {
    const steps = Math.ceil(r.promptLen / chunk) + r.outputLen;
    serial += steps;
    longest = Math.max(longest, steps);
    const pages = Math.ceil((r.promptLen + r.outputLen) / o.pageSize);
    pageSum += pages;
    maxPages = Math.max(maxPages, pages);
    maxPrompt = Math.max(maxPrompt, r.promptLen);
    if (r.arrivalStep !== lastArrival) arrivalSteps++;
    lastArrival = Math.max(lastArrival, r.arrivalStep);
  }
  const meanPages = n ? pageSum / n : 1;
  const idleRecords = arrivalSteps;
  const span = Math.max(0, lastArrival);
  let stepRecords = 0;
  let maxRunRecords = 0;
  for (const pages of o.numPages) {
    for (const cap of o.caps) {
      const concurrency = Math.max(1, Math.min(cap, n, Math.floor(pages / meanPages)));
      let records = Math.min(serial, Math.ceil(serial / concurrency) + longest + Math.min(span, serial)) + idleRecords;
      if (o.maxSteps > 0) records = Math.min(records, o.maxSteps);
      stepRecords += records;
      maxRunRecords = Math.max(maxRunRecords, records);
    }
  }
  const runs = o.numPages.length * o.caps.length;
  const repeats = o.repeats ?? 1;
  const heldRecords = stepRecords + (repeats - 1) * maxRunRecords;
  const maxPool = o.numPages.reduce((m, p) => Math.max(m, p), 0);
  const maxCap = o.caps.reduce((m, c) => Math.max(m, c), 0);
  // Every running sequence holds at least one page, so the pool bounds the batch as much as the cap.
  const maxDecodeBatch = Math.max(1, Math.min(maxCap, n, maxPool));
  // A step writes at most one chunk of each running prompt, and no more than the pool holds. (A
  // request re-admitted after preemption prefills prompt + generated tokens: rarely more per step.)
  const maxPrefillTokensPerStep = Math.min(o.prefillTokensPerStep ?? Infinity, maxDecodeBatch * Math.min(o.prefillChunkTokens, maxPrompt), maxPool * o.pageSize);
  const stepBufferBytes = stepBufferBytesFor(o.model, maxPrefillTokensPerStep, maxDecodeBatch);
  const requestHeapBytes = n * REQUEST_HEAP_BYTES;
  const summaryHeapBytes = summaryBytesFor(runs, repeats, o.json);
  const recordHeapBytes = heldRecords * STEP_RECORD_HEAP_BYTES;
  const jsonChars = o.json ? heldRecords * STEP_RECORD_JSON_CHARS + summaryJsonCharsFor(runs, repeats) : 0;
  return {
    runs,
    stepRecords,
    maxRunRecords,
    heldRecords,
    requestHeapBytes,
    summaryHeapBytes,
    recordHeapBytes,
    jsonChars,
    heapBytes: requestHeapBytes + summaryHeapBytes + recordHeapBytes + heldRecords * (o.json ? STEP_RECORD_JSON_CHARS * JSON_HEAP_BYTES_PER_CHAR : 0),
    maxPrefillTokensPerStep,
    maxDecodeBatch,
    maxPagesPerSequence: Math.min(maxPages, Math.max(1, maxPool)),
    stepBufferBytes,
  };
}

/** JSON characters of the runs' summaries (each repeat's, and the median's again as `summary`) and spreads. */
export function summaryJsonCharsFor(runs: number, repeats: number): number {
  return runs * ((repeats + 1) * RUN_SUMMARY_JSON_CHARS + RUN_SPREAD_JSON_CHARS);
}

/** Heap bytes of the runs' summaries and spreads, their JSON text included when `json`. */
export function summaryBytesFor(runs: number, repeats: number, json: boolean): number {
  return runs * (repeats + 1) * RUN_SUMMARY_HEAP_BYTES + (json ? summaryJsonCharsFor(runs, repeats) * JSON_HEAP_BYTES_PER_CHAR : 0);
}

/** Host bytes of the values one step generates and uploads: K/V of its prompt tokens, K/V/q/output of its decode batch. */
export function stepBufferBytesFor(model: SweepSizeInput['model'], prefillTokens: number, decodeBatch: number): number {
  const { headDim: d, numKvHeads: hkv, numQueryHeads: hq } = model;
  return HOST_COPIES_PER_UPLOAD * BYTES_PER_F32 * d * (2 * hkv * prefillTokens + decodeBatch * (2 * hkv + 2 * hq));
}

/** Heap bytes one held step record is planned at: the record, and its JSON text when `json`. */
export function stepRecordBytes(json: boolean): number {
  return STEP_RECORD_HEAP_BYTES + (json ? STEP_RECORD_JSON_CHARS * JSON_HEAP_BYTES_PER_CHAR : 0);
}

/**
 * Step records the limits let the sweep hold at once, once the requests (and the `runs` × `repeats`
 * summaries) are in memory: the hard limit the sweep enforces while it runs (JSON text included when
 * `json`).
 */
export function maxStepRecordsFor(limits: HostLimits, requests: number, json: boolean, runs = 0, repeats = 1): number {
  const heapLeft = Math.max(0, limits.heapBytes - requests * REQUEST_HEAP_BYTES - summaryBytesFor(runs, repeats, json));
  const byHeap = Math.floor(heapLeft / stepRecordBytes(json));
  return json ? Math.min(byHeap, Math.floor(Math.max(0, MAX_STRING_CHARS - summaryJsonCharsFor(runs, repeats)) / STEP_RECORD_JSON_CHARS)) : byHeap;
}

/** Bytes in binary units with two digits ("1.50 GiB"), for limit messages. */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}
