/**
 * Size bounds the CLI checks before it allocates: a command estimates what a run needs and refuses
 * what exceeds this machine ("needs X, limit Y, try Z") instead of dying in V8 minutes later.
 */
import { constants as bufferConstants } from 'node:buffer';
import { totalmem } from 'node:os';
import { formatBytes } from '../kernels/gpu-buffers';
import { CliInputError } from './output-file';

/** Share of the machine's memory one command may plan to hold on the host. */
export const HOST_MEMORY_FRACTION = 0.5;

/** Bytes a command may plan to hold on the host. */
export function hostMemoryLimit(): number {
  return Math.floor(totalmem() * HOST_MEMORY_FRACTION);
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
