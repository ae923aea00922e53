/**
 * The CLI's command registry. A command is a module exporting one {@link CliCommand}; adding it to
 * the CLI is one line in {@link COMMANDS}. The entry point (src/cli/cli.ts) owns everything common:
 * global flags (--adapter, --disable-feature, --help), opening and destroying the device, printing
 * the adapter, and turning thrown errors into exit codes:
 *
 *   KvConfigError, KvCacheFullError, TensorFileError, CliInputError (src/cli/output-file.ts),
 *   a GpuError with beforeWork (a size over the device's limits), node:util parseArgs errors
 *                                                                                → 2 (bad input)
 *   GpuError and anything else                                                   → 1 (failure)
 *
 * @example a new command (src/cli/bench.ts), then `bench: benchCommand,` below:
 *   export const benchCommand: CliCommand = {
 *     summary: 'time the decode kernels against the bandwidth roofline',
 *     usage: 'bench [--context 4096] [--json out.json]',
 *     async run(args, env) {
 *       const { values } = parseArgs({ args, options: { context: { type: 'string' } }, strict: true });
 *       const ctx = await env.gpu();
 *       ...
 *       return 0;
 *     },
 *   };
 */
import type { GpuContext } from '../gpu/gpu-context';
import { accuracyCommand } from './accuracy-command';
import { benchCommand } from './bench-command';
import { generateCommand } from './generate-command';
import { perplexityCommand } from './perplexity-command';
import { runCaseCommand } from './run-case';
import { simulateCommand } from './simulate-command';

/** What the entry point gives a running command. */
export interface CliEnv {
  /**
   * The device chosen by the global flags, opened on first call (so a command that fails on its
   * arguments never starts a GPU) and destroyed by the entry point after `run` returns.
   */
  gpu(): Promise<GpuContext>;
}

export interface CliCommand {
  /** One line for the command list of `--help`. */
  summary: string;
  /** The command's own usage text, printed by `<command> --help` and after a usage error. */
  usage: string;
  /**
   * Runs the command with the arguments after its name (global flags already removed) and returns
   * the exit code: 0 success, 1 failure, 2 bad arguments or input. Parse flags with node:util
   * `parseArgs({ strict: true })`: its errors exit 2 with the usage. Problems found by the command
   * itself: print a message naming the flag or field to stderr and return 2, or throw one of the
   * error classes listed in the header.
   */
  run(args: string[], env: CliEnv): Promise<number>;
}

/** Every command, by the name typed on the command line. */
export const COMMANDS: Readonly<Record<string, CliCommand>> = {
  'run-case': runCaseCommand,
  bench: benchCommand,
  accuracy: accuracyCommand,
  simulate: simulateCommand,
  perplexity: perplexityCommand,
  generate: generateCommand,
};
