/**
 * The headless CLI (Node + Dawn): `npm run cli -- <command> [flags]`, or `node dist-cli/cli.mjs …`
 * after `npm run build:cli`. Parses the global flags, dispatches to a command of src/cli/commands.ts,
 * prints the adapter it opened to stderr, maps errors to exit codes and always leaves through
 * process.exit after destroying the device (Dawn keeps the process alive otherwise).
 *
 * Exit codes: 0 success; 1 GPU or internal failure (the stack only with --debug); 2 bad arguments,
 * input or metadata (one line, never a stack).
 */
import { KvCacheFullError } from '../cache/page-allocator';
import { KvConfigError } from '../cache/paged-kv-cache';
import { describeGpu, GpuError, OPTIONAL_FEATURES, type GpuContext } from '../gpu/gpu-context';
import { DAWN_TOGGLE_NAME, NODE_ADAPTERS, openNodeGpu, type NodeAdapterChoice, type NodeGpuOptions } from '../gpu/node-gpu';
import { TensorFileError } from '../io/safetensors';
import { CliInputError } from './output-file';
import { COMMANDS, type CliCommand, type CliEnv } from './commands';

const ADAPTERS = NODE_ADAPTERS;
type AdapterChoice = NodeAdapterChoice;

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/** A bad command line; exits 2 with the message. */
class UsageError extends Error {}

const GLOBAL_FLAGS: ReadonlyArray<readonly [string, string]> = [
  [`--adapter ${ADAPTERS.join('|')}`, "auto (default): this machine's GPU if usable, else SwiftShader; lavapipe: Mesa's CPU driver (shader-f16)"],
  ['--disable-feature NAME', `leave an optional WebGPU feature off (repeatable): ${OPTIONAL_FEATURES.join(', ')}`],
  ['--no-unsafe-dawn', 'open Dawn without allow_unsafe_apis,vulkan_enable_f16_on_nvidia (no tensor cores, no f16 on NVIDIA)'],
  ['--dawn-toggle NAME', 'enable one more Dawn toggle (repeatable), e.g. enable_integer_range_analysis_in_robustness; reports name it'],
  ['--debug', 'print the stack of a GPU or internal failure'],
  ['-h, --help', "this text; '<command> --help' for a command's flags"],
];
const FLAG_WIDTH = Math.max(...GLOBAL_FLAGS.map(([flag]) => flag.length));
const GLOBAL_FLAGS_TEXT = ['Global flags (anywhere on the line):', ...GLOBAL_FLAGS.map(([flag, text]) => `  ${flag.padEnd(FLAG_WIDTH)}  ${text}`)].join('\n');

function usageText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const commands = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'Usage: npm run cli -- <command> [flags]      (or: node dist-cli/cli.mjs <command> [flags])',
    '',
    'Commands:',
    ...commands,
    '',
    GLOBAL_FLAGS_TEXT,
    '',
    'Exit codes: 0 success, 1 GPU or internal failure, 2 bad arguments or input.',
  ].join('\n');
}

interface CommandLine {
  help: boolean;
  gpuOptions: NodeGpuOptions;
  /** The command name and its own arguments, global flags removed. */
  rest: string[];
}

/** Takes the global flags out of `argv` wherever they are (`--flag value` or `--flag=value`). */
function parseCommandLine(argv: readonly string[]): CommandLine {
  let help = false;
  let adapter: AdapterChoice = 'auto';
  let unsafeFeatures = true;
  const disableFeatures: string[] = [];
  const dawnToggles: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    if (arg === '--no-unsafe-dawn') {
      unsafeFeatures = false;
      continue;
    }
    if (arg === '--debug') {
      debug = true;
      continue;
    }
    const match = /^(--adapter|--disable-feature|--dawn-toggle)(?:=(.*))?$/.exec(arg);
    if (!match) {
      // `--context -5`: node:util parseArgs calls a value that starts with '-' "ambiguous"; a negative
      // number is a value, so pass it as --context=-5 and let the command say what range it takes.
      const next = argv[i + 1];
      if (/^--[^=]+$/.test(arg) && next !== undefined && /^-(\d|\.\d|Infinity|NaN)/.test(next)) {
        rest.push(`${arg}=${next}`);
        i++;
        continue;
      }
      rest.push(arg);
      continue;
    }
    const flag = match[1];
    let value = match[2];
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined || value.startsWith('-')) {
        const expected = flag === '--adapter' ? ADAPTERS.join(' or ') : flag === '--dawn-toggle' ? 'a Dawn toggle name' : `one of ${OPTIONAL_FEATURES.join(', ')}`;
        throw new UsageError(`${flag} needs a value: ${expected}`);
      }
      i++;
    }
    if (flag === '--adapter') {
      if (!(ADAPTERS as readonly string[]).includes(value)) throw new UsageError(`--adapter ${JSON.stringify(value)} is not known; expected ${ADAPTERS.join(' or ')}`);
      adapter = value as AdapterChoice;
    } else if (flag === '--dawn-toggle') {
      if (!DAWN_TOGGLE_NAME.test(value)) throw new UsageError(`--dawn-toggle ${JSON.stringify(value)} is not a Dawn toggle name (lower-case words joined by '_')`);
      dawnToggles.push(value);
    } else {
      if (!(OPTIONAL_FEATURES as readonly string[]).includes(value)) {
        throw new UsageError(`--disable-feature ${JSON.stringify(value)} is not an optional feature the kernels use; expected one of ${OPTIONAL_FEATURES.join(', ')}`);
      }
      disableFeatures.push(value);
    }
  }
  return { help, gpuOptions: { adapter, disableFeatures, unsafeFeatures, dawnToggles }, rest };
}

/** Exit code and stderr text for an error thrown by a command. */
function describeFailure(name: string, err: unknown): { code: number; text: string } {
  if (err instanceof UsageError) return { code: EXIT_USAGE, text: `${name}: ${err.message}` };
  const parseCode = (err as { code?: unknown } | null)?.code;
  if (typeof parseCode === 'string' && parseCode.startsWith('ERR_PARSE_ARGS_')) {
    const synopsis = COMMANDS[name]?.usage.split('\n')[0] ?? '';
    return { code: EXIT_USAGE, text: `${name}: ${(err as Error).message}\n${synopsis}\n(${name} --help describes its flags)` };
  }
  if (err instanceof KvConfigError || err instanceof TensorFileError || err instanceof KvCacheFullError || err instanceof CliInputError) {
    return { code: EXIT_USAGE, text: `${name}: ${oneLine(err.message)}` };
  }
  // a size over the device's limits, refused before any allocation: an input to change (exit 2)
  if (err instanceof GpuError && err.beforeWork) return { code: EXIT_USAGE, text: `${name}: ${oneLine(err.message)}` };
  if (err instanceof GpuError) return { code: EXIT_FAILURE, text: `${name}: GPU failure (${err.kind}): ${oneLine(err.message)}${debugHint(err)}` };
  const message = err instanceof Error ? err.message : String(err);
  return { code: EXIT_FAILURE, text: `${name}: internal error: ${oneLine(message)}${debugHint(err)}` };
}

/** Longest message line the CLI prints (hostile inputs can make messages of megabytes). */
const MAX_MESSAGE_CHARS = 2000;

/** The first line of `message`, cut to MAX_MESSAGE_CHARS. */
function oneLine(message: string): string {
  const first = message.split('\n')[0];
  return first.length > MAX_MESSAGE_CHARS ? `${first.slice(0, MAX_MESSAGE_CHARS)}… (${first.length} characters)` : first;
}

/** With --debug the stack follows the message; without, a hint that it exists. */
let debug = false;
function debugHint(err: unknown): string {
  if (!(err instanceof Error) || err.stack === undefined) return '';
  return debug ? `\n${err.stack}` : '\n(run again with --debug for the stack)';
}

async function main(argv: readonly string[]): Promise<number> {
  let line: CommandLine;
  try {
    line = parseCommandLine(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usageText()}\n`);
    return EXIT_USAGE;
  }
  const [name, ...args] = line.rest;
  if (name === undefined) {
    if (line.help) {
      process.stdout.write(`${usageText()}\n`);
      return EXIT_OK;
    }
    process.stderr.write(`no command given\n\n${usageText()}\n`);
    return EXIT_USAGE;
  }
  if (name.startsWith('-')) {
    process.stderr.write(`unknown flag ${JSON.stringify(name)} before the command; flags of a command go after its name\n\n${usageText()}\n`);
    return EXIT_USAGE;
  }
  const command: CliCommand | undefined = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    process.stderr.write(`unknown command ${JSON.stringify(name)}; commands: ${Object.keys(COMMANDS).join(', ')}\n\n${usageText()}\n`);
    return EXIT_USAGE;
  }
  if (line.help) {
    process.stdout.write(`${command.usage}\n\n${GLOBAL_FLAGS_TEXT}\n`);
    return EXIT_OK;
  }

  // Set by env.gpu() inside the command (a cast, so TypeScript does not narrow it to null here).
  let device = null as Promise<GpuContext> | null;
  const env: CliEnv = {
    gpu: () =>
      (device ??= openNodeGpu({
        ...line.gpuOptions,
        onDeviceLost: (reason) => process.stderr.write(`${name}: ${reason}\n`),
      }).then((ctx) => {
        process.stderr.write(`adapter: ${describeGpu(ctx)}\n`);
        return ctx;
      })),
  };
  let code: number;
  try {
    code = await command.run(args, env);
  } catch (err) {
    const failure = describeFailure(name, err);
    process.stderr.write(`${failure.text}\n`);
    code = failure.code;
  }
  if (device !== null) {
    try {
      (await device).device.destroy();
    } catch {
      // Opening failed: the command already reported it.
    }
  }
  return code;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`internal error: ${err instanceof Error ? (debug ? (err.stack ?? err.message) : err.message) : String(err)}\n`);
    process.exit(EXIT_FAILURE);
  },
);
