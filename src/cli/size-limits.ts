/**
 * Size bounds the CLI checks before it allocates: a command estimates what a run needs and refuses
 * what exceeds this machine ("needs X, limit Y, try Z") instead of dying in V8 minutes later.
 */
import { constants as bufferConstants } from 'node:buffer';
import { freemem, totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { formatBytes } from '../kernels/gpu-buffers';
import { formatSize, type HostLimits } from '../serving/simulate-limits';
import { CliInputError } from './output-file';

/** Share of the V8 heap (or the host memory, when smaller) a command may plan for; the rest is the program and garbage. */
const HEAP_SHARE = 0.5;
/** Share of the free host memory a command's typed arrays (K/V values, staging copies) may take. */
const FREE_MEMORY_SHARE = 0.5;

/** What this host gives a command: a share of the V8 heap and of the free memory. */
export function hostLimits(): HostLimits {
  const heapLimit = getHeapStatistics().heap_size_limit;
  const heap = Math.min(heapLimit, totalmem());
  const free = freemem();
  return {
    heapBytes: Math.floor(HEAP_SHARE * heap),
    heapSource: heap < heapLimit
      ? `half the host's ${formatSize(heap)}`
      : `half the V8 heap limit of ${formatSize(heap)}; NODE_OPTIONS=--max-old-space-size=MIB raises it`,
    bufferBytes: Math.floor(FREE_MEMORY_SHARE * free),
    bufferSource: `half the ${formatSize(free)} of free host memory`,
  };
}

/** Largest single typed array Node can allocate, in bytes. */
export const MAX_ARRAY_BYTES = bufferConstants.MAX_LENGTH;

/**
 * Throws CliInputError when `needs` > `limit`: "<what> needs X, limit Y (<limitName>); try <suggestion>".
 */
export function requireWithin(what: string, needs: number, limit: number, limitName: string, suggestion: string): void {
  if (!(needs <= limit)) {
    throw new CliInputError(`${what} needs ${formatBytes(needs)}, limit ${formatBytes(limit)} (${limitName}); try ${suggestion}`);
  }
}
