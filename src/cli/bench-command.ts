/**
 * `bench`: the decode-step sweep (append + paged attention of one layer) against FP16 and the
 * bandwidth probe, on the Node GPU (Dawn; SwiftShader when there is no usable GPU).
 *
 *   bench --quick
 *   bench --preset llama-3.1-8b --methods fp16,int4,int4-hadamard --batch 1,8,64 --context 512,4096 --json out.json
 */
import { checkOutputFile, CliInputError, writeFileAtomic } from './output-file';
import { openNodeGpu } from '../gpu/node-gpu';
import {
  BENCH_METHODS, DEFAULT_SWEEP, findPreset, isBenchMethod, PRESET_NAMES, QUICK_PROBE_BYTES, QUICK_SWEEP, QUICK_TIMING,
  runDecodeBench, sweepPoints, type BenchMethod, type DecodeBenchOptions, type PresetName, type SweepSpec,
} from '../bench/decode-step-bench';
import { buildBenchReport, formatBenchTable, formatProgress, reportToJson } from '../bench/bench-report';
import type { MeasureOptions } from '../bench/gpu-timer';
import { MAX_PAGE_SIZE, MIN_PAGE_SIZE } from '../layout';
import { DECODE_KERNEL_KINDS, DEFAULT_SUBGROUP_DECODE_TUNING, isDecodeKernelKind, resolveTuning, type DecodeKernelKind, type DecodeTuning } from '../kernels/decode-tuning';
import type { CliCommand, CliEnv } from './commands';

export interface BenchArgs {
  quick: boolean;
  sweep: SweepSpec;
  timing: MeasureOptions;
  probeBytes?: number;
  maxCacheBytes?: number;
  capacityBudgetBytes?: number;
  decodeTuning?: Partial<DecodeTuning>;
  /** Force this decode kernel (default: each method's automatic choice). */
  decodeKernel?: DecodeKernelKind;
  /** --merge dispatch|kernel: where split-K partials are merged (default: the plan's rule). */
  mergeInDispatch?: boolean;
  jsonPath: string | null;
}

/** A command line the bench cannot take; the message says what would work. */
export class BenchUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BenchUsageError';
  }
}

const TUNING_KEYS = Object.keys(DEFAULT_SUBGROUP_DECODE_TUNING) as (keyof DecodeTuning)[];

const USAGE = `bench [--quick] [--preset P[,P]] [--methods a,b] [--batch 1,8,64] [--context 512,4096] [--page-size 16[,32]]
      [--hadamard-block 128] [--warmup-ms 100] [--measure-ms 500] [--probe-mib 1024] [--max-cache-gib 8]
      [--budget-gib 16] [--decode-tuning key=value[,key=value]] [--kernel K] [--merge dispatch|kernel]
      [--json out.json]

  Times one decode step of one layer (append one token per sequence + paged attention over all of
  them) for every combination, and reports µs, tokens/s, attention GB/s as % of a bandwidth probe
  measured in the same run, speedup vs fp16 and rotation overhead vs int4.

  --quick           a handful of tiny points (seconds, even on SwiftShader)
  --preset          ${PRESET_NAMES.join(', ')} (default ${DEFAULT_SWEEP.presets.join(',')})
  --methods         ${BENCH_METHODS.join(', ')} (default ${DEFAULT_SWEEP.methods.join(',')})
  --batch           concurrency values (default ${DEFAULT_SWEEP.batches.join(',')})
  --context         cached tokens per sequence (default ${DEFAULT_SWEEP.contexts.join(',')})
  --page-size       tokens per page, 8..128 (default 16)
  --hadamard-block  Hadamard block of int4-hadamard, capped at head_dim (default 128)
  --max-cache-gib   skip points whose K+V pools exceed this (default 8)
  --budget-gib      memory for the "tokens in budget" column, all layers (default 16)
  --decode-tuning   decode-kernel tuning overrides for this GPU, e.g. lanesPerToken=8,tokensPerStep=4
                    (keys: ${TUNING_KEYS.join(', ')}; see DecodeTuning in src/kernels/decode-tuning.ts)
  --kernel          force the decode kernel: ${DECODE_KERNEL_KINDS.join(', ')} (default: each method's automatic
                    choice; every row and the JSON name the kernel that ran)
  --merge           where split-K partials are merged: dispatch (the decode kernel's last workgroup per
                    sequence and head group; subgroup kernel) or kernel (the merge kernel's dispatch);
                    default: in the dispatch while sequences × kv heads ≤ 16, else the merge kernel
                    (docs/tuning.md; every row's plan says which ran)
  --json FILE       also write the full report (every sample) as JSON`;

function decodeTuning(text: string): Partial<DecodeTuning> {
  const tuning: Partial<Record<keyof DecodeTuning, number>> = {};
  for (const item of text.split(',')) {
    const [key, value, extra] = item.split('=').map((s) => s.trim());
    if (!TUNING_KEYS.includes(key as keyof DecodeTuning) || value === undefined || extra !== undefined) {
      throw new BenchUsageError(`--decode-tuning takes key=value pairs with keys ${TUNING_KEYS.join(', ')}; got '${item}'`);
    }
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new BenchUsageError(`--decode-tuning ${key} takes a non-negative integer, got '${value}'`);
    tuning[key as keyof DecodeTuning] = n;
  }
  for (const kind of DECODE_KERNEL_KINDS) {
    try {
      resolveTuning(tuning, kind);
    } catch (e) {
      throw new BenchUsageError(`--decode-tuning: ${(e as Error).message}`);
    }
  }
  return tuning;
}

/** Largest batch the bench takes: WebGPU's default maxComputeWorkgroupsPerDimension (one sequence per workgroup row). */
const MAX_BENCH_BATCH = 65535;
/** Largest context the bench takes (2^24 tokens: far beyond any device's memory at one layer). */
const MAX_BENCH_CONTEXT = 1 << 24;

function positiveInts(flag: string, text: string, max = Number.MAX_SAFE_INTEGER, min = 1): number[] {
  const values = text.split(',').map((s) => Number(s.trim()));
  if (!values.length || values.some((v) => !Number.isInteger(v) || v < min || v > max)) {
    throw new BenchUsageError(`${flag} takes integers in [${min}, ${max}] separated by commas, got '${text}'`);
  }
  return values;
}

function positiveNumber(flag: string, text: string): number {
  const value = Number(text);
  if (!(value > 0) || !Number.isFinite(value)) throw new BenchUsageError(`${flag} takes a positive number, got '${text}'`);
  return value;
}

/** Parses the bench command line (throws BenchUsageError). */
export function parseBenchArgs(args: string[]): BenchArgs {
  const quick = args.includes('--quick');
  const base = quick ? QUICK_SWEEP : DEFAULT_SWEEP;
  const sweep: SweepSpec = { ...base, pageSizes: base.pageSizes ?? [16] };
  const timing: MeasureOptions = quick ? { ...QUICK_TIMING } : {};
  const parsed: BenchArgs = { quick, sweep, timing, jsonPath: null };
  if (quick) parsed.probeBytes = QUICK_PROBE_BYTES;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--quick') continue;
    // --flag value or --flag=value
    const eq = args[i].indexOf('=');
    const flag = eq > 0 ? args[i].slice(0, eq) : args[i];
    const value = eq > 0 ? args[i].slice(eq + 1) : args[i + 1];
    if (value === undefined || (eq < 0 && value.startsWith('--'))) throw new BenchUsageError(`${flag} needs a value`);
    if (eq < 0) i++;
    switch (flag) {
      case '--preset':
        sweep.presets = value.split(',').map((name) => {
          const preset = findPreset(name);
          if (!preset) throw new BenchUsageError(`unknown preset '${name}'; known: ${PRESET_NAMES.join(', ')}`);
          return preset;
        }) as PresetName[];
        break;
      case '--methods':
        sweep.methods = value.split(',').map((name) => {
          if (!isBenchMethod(name.trim())) throw new BenchUsageError(`unknown method '${name}'; known: ${BENCH_METHODS.join(', ')}, int4-hadamard-b{16,32,64,128}[-kv][-q8]`);
          return name.trim() as BenchMethod;
        });
        break;
      case '--batch':
        sweep.batches = positiveInts(flag, value, MAX_BENCH_BATCH);
        break;
      case '--context':
        sweep.contexts = positiveInts(flag, value, MAX_BENCH_CONTEXT);
        break;
      case '--page-size':
        sweep.pageSizes = positiveInts(flag, value, MAX_PAGE_SIZE, MIN_PAGE_SIZE);
        break;
      case '--hadamard-block':
        sweep.hadamardBlock = positiveInts(flag, value, 128, 2)[0];
        break;
      case '--warmup-ms':
        timing.warmupMs = positiveNumber(flag, value);
        break;
      case '--measure-ms':
        timing.measureMs = positiveNumber(flag, value);
        break;
      case '--probe-mib':
        parsed.probeBytes = Math.round(positiveNumber(flag, value) * 2 ** 20);
        break;
      case '--max-cache-gib':
        parsed.maxCacheBytes = Math.round(positiveNumber(flag, value) * 2 ** 30);
        break;
      case '--budget-gib':
        parsed.capacityBudgetBytes = Math.round(positiveNumber(flag, value) * 2 ** 30);
        break;
      case '--json':
        parsed.jsonPath = value;
        break;
      case '--decode-tuning':
        parsed.decodeTuning = decodeTuning(value);
        break;
      case '--kernel':
        if (!isDecodeKernelKind(value)) throw new BenchUsageError(`--kernel takes one of ${DECODE_KERNEL_KINDS.join(', ')}, got '${value}'`);
        parsed.decodeKernel = value;
        break;
      case '--merge':
        if (value !== 'dispatch' && value !== 'kernel') throw new BenchUsageError(`--merge takes dispatch or kernel, got '${value}'`);
        parsed.mergeInDispatch = value === 'dispatch';
        break;
      default:
        throw new BenchUsageError(`unknown option '${flag}'`);
    }
  }
  return parsed;
}

export interface BenchCommandIo {
  /** The table and results (default: stdout). */
  out(text: string): void;
  /** Progress and errors (default: stderr). */
  err(text: string): void;
}

const STD_IO: BenchCommandIo = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

export const benchCommand: CliCommand & { run(args: string[], env?: CliEnv, io?: BenchCommandIo): Promise<number> } = {
  summary: 'decode-step throughput sweep (append + paged attention) vs FP16 and the bandwidth probe',
  usage: USAGE,
  /**
   * Runs the sweep and prints the table; returns the exit code (0 ok, 1 a point failed, 2 usage).
   * @param env the CLI's device (src/cli/commands.ts); without it, openNodeGpu(), destroyed at the end
   * @param io where the table and the progress go (default stdout, stderr)
   */
  async run(args: string[], env?: CliEnv, io: BenchCommandIo = STD_IO): Promise<number> {
    if (args.includes('--help') || args.includes('-h')) {
      io.out(USAGE);
      return 0;
    }
    let parsed: BenchArgs;
    try {
      parsed = parseBenchArgs(args);
    } catch (e) {
      if (!(e instanceof BenchUsageError)) throw e;
      io.err(`bench: ${e.message}\n\nusage: ${USAGE}`);
      return 2;
    }
    if (parsed.jsonPath) {
      try {
        checkOutputFile('--json', parsed.jsonPath);
      } catch (e) {
        if (!(e instanceof CliInputError)) throw e;
        io.err(`bench: ${e.message}`);
        return 2;
      }
    }
    const gpu = env ? await env.gpu() : await openNodeGpu();
    try {
      const points = sweepPoints(parsed.sweep);
      const options: DecodeBenchOptions = {
        timing: parsed.timing,
        onProgress: (done, total, point) => io.err(formatProgress(done, total, point)),
      };
      if (parsed.probeBytes !== undefined) options.probeBytes = parsed.probeBytes;
      if (parsed.maxCacheBytes !== undefined) options.maxCacheBytes = parsed.maxCacheBytes;
      if (parsed.capacityBudgetBytes !== undefined) options.capacityBudgetBytes = parsed.capacityBudgetBytes;
      if (parsed.decodeTuning !== undefined) options.decodeTuning = parsed.decodeTuning;
      if (parsed.decodeKernel !== undefined) options.decodeKernel = parsed.decodeKernel;
      if (parsed.mergeInDispatch !== undefined) options.mergeInDispatch = parsed.mergeInDispatch;
      io.err(`bench: ${points.length} points; measuring the bandwidth probe and the two dispatch floors first`);
      const run = await runDecodeBench(gpu, points, options);
      const report = buildBenchReport(gpu, run, { quick: parsed.quick });
      io.out(formatBenchTable(report));
      if (parsed.jsonPath) {
        writeFileAtomic(parsed.jsonPath, `${reportToJson(report)}\n`);
        io.err(`bench: wrote ${parsed.jsonPath}`);
      }
      if (report.points.some((p) => p.status === 'failed')) return 1;
      if (!report.points.some((p) => p.status === 'ok')) {
        io.err('bench: no point was measured (every point was skipped; the reasons are above)');
        return 2;
      }
      return 0;
    } finally {
      if (!env) gpu.device.destroy();
    }
  },
};
