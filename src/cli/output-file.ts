/**
 * Output files of the CLI commands (`--json`, `--out`): checked before any work, so a run of minutes
 * never ends in ENOENT/EISDIR with its results lost, and written atomically (a temporary file beside
 * the target, then a rename), so the target is either the whole new file or untouched.
 */
import { accessSync, constants, existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** A bad command-line input found by a command; the CLI exits 2 with its one-line message. */
export class CliInputError extends Error {}

/**
 * Throws CliInputError (naming `flag`) unless `path` can be written: its folder exists and is
 * writable, and the path itself is not a folder (an existing file is replaced).
 */
export function checkOutputFile(flag: string, path: string): void {
  if (path === '') throw new CliInputError(`${flag}: empty path`);
  const full = resolve(path);
  const folder = dirname(full);
  if (!existsSync(folder)) throw new CliInputError(`${flag} ${path}: folder ${folder} does not exist`);
  if (!statSync(folder).isDirectory()) throw new CliInputError(`${flag} ${path}: ${folder} is not a folder`);
  if (existsSync(full) && statSync(full).isDirectory()) throw new CliInputError(`${flag} ${path}: is a folder; give a file name`);
  try {
    accessSync(folder, constants.W_OK);
    if (existsSync(full)) accessSync(full, constants.W_OK);
  } catch {
    throw new CliInputError(`${flag} ${path}: not writable`);
  }
}

/** Writes `data` to `path` through `path.<pid>.partial` and a rename; the partial file never stays. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const temporary = `${path}.${process.pid}.partial`;
  try {
    writeFileSync(temporary, data);
    renameSync(temporary, path);
  } finally {
    if (existsSync(temporary)) rmSync(temporary);
  }
}
