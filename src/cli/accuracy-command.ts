/**
 * `accuracy`: the accuracy lab (src/accuracy/accuracy-lab.ts) from the command line. Runs KV methods
 * through the real kernels on a synthetic workload or on KV data from files, prints a table, and
 * writes the JSON report. Registered in src/cli/commands.ts as `accuracy: accuracyCommand`.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ACCURACY_HOST_BYTES_PER_ELEMENT, runAccuracy, type AccuracyReport, type AccuracyWorkload } from '../accuracy/accuracy-lab';
import { DEFAULT_QUERY_GROUP, KV_FILE_LAYOUTS, loadKvNpy, loadKvSafetensors, type KvFileLayout } from '../accuracy/kv-file';
import { METHOD_GROUPS, methodFitsHeadDim, resolveMethods, UnknownMethodError, type MethodSpec } from '../accuracy/methods';
import { defaultHadamardBlock, DEFAULT_PAGE_SIZE } from '../layout';
import { channelStats, spread } from '../accuracy/channel-stats';
import { generateWorkload, isWorkloadKind, WORKLOAD_KINDS, type WorkloadKind } from '../workloads/synthetic';
import { describePresets, findPreset, MODEL_PRESETS, PRESET_NAMES } from '../models';
import type { CliCommand } from './commands';
import { checkOutputFile, writeFileAtomic } from './output-file';
import { hostLimits, MAX_ARRAY_BYTES, requireWithin } from './size-limits';

const DEFAULTS = { workload: 'outlier-keys', methods: 'paper', preset: 'small', seqs: 2, context: 1024, seed: 1 } as const;

export const ACCURACY_USAGE = `Usage: accuracy [--workload KIND | --file PATH] [--methods LIST] [--json OUT.json]
                [--preset NAME] [--seqs N] [--context L] [--seed N]
                [--layout t_hkv_d|hkv_t_d] [--query-group G] [--page-size P] [--top-k K]

Runs KV-cache methods through the real kernels (paged cache write, then decode attention) and reports
their error against exact float64 attention and against the GPU's FP16 run.

Data (one of):
  --workload KIND    synthetic workload (default ${DEFAULTS.workload}): ${WORKLOAD_KINDS.map((k) => k.id).join(', ')}
    --preset NAME    attention shape (default ${DEFAULTS.preset}): ${describePresets()}
    --seqs N         sequences decoded together (default ${DEFAULTS.seqs}; --batch N, as in bench, is the same)
    --context L      tokens per sequence (default ${DEFAULTS.context})
    --seed N         workload seed (default ${DEFAULTS.seed}; with --file: the sampled queries' seed)
  --file PATH        real KV data: a .safetensors file (tensors k, v, optional q, context_lens), or a
                     folder (or its k.npy) holding k.npy, v.npy, optional q.npy, context_lens.npy.
                     k, v: [T, Hkv, D], or [Hkv, T, D] with --layout hkv_t_d (README: "Real KV data")
    --layout L       axis order of k and v: t_hkv_d (default) or hkv_t_d
    --query-group G  without q in the data: sample Hkv × G queries (default ${DEFAULT_QUERY_GROUP})
Methods:
  --methods LIST     comma-separated ids or groups (default ${DEFAULTS.methods}); ids: fp16, int4, int8,
                     int4-g32, int4-hadamard-b{16,32,64,128}[-kv][-signs]; groups: ${Object.keys(METHOD_GROUPS).join(', ')}.
                     fp16 always runs: it is the baseline. Blocks larger than head_dim are skipped.
Output:
  --json OUT.json    also write the full report (JSON)
  --page-size P      tokens per page (default ${DEFAULT_PAGE_SIZE});  --top-k K  top-k overlap (default 8)
Exit codes: 0 done; 2 bad flags or data; 1 GPU failure.`;

function usageError(problem: string): number {
  process.stderr.write(`accuracy: ${problem}\n${ACCURACY_USAGE.split('\n')[0]}\n(accuracy --help describes the flags)\n`);
  return 2;
}

/** A positive integer flag, or a message. */
function positiveInt(flag: string, text: string | undefined, fallback: number): number | string {
  if (text === undefined) return fallback;
  const value = Number(text);
  return /^\d+$/.test(text) && Number.isSafeInteger(value) && value >= 1 ? value : `--${flag} ${JSON.stringify(text)}: expected an integer ≥ 1`;
}

/** Refuses a synthetic workload this machine cannot hold (CliInputError: needs, limit, what fits). */
function checkSyntheticSize(seqs: number, context: number, preset: { numKvHeads: number; headDim: number }): void {
  const elementsPerToken = preset.numKvHeads * preset.headDim;
  const host = hostLimits();
  const limits = [
    { what: 'one f64 array of K', bytesPerToken: elementsPerToken * 8, limit: MAX_ARRAY_BYTES, name: "Node's largest array" },
    { what: 'K, V, their copies and references', bytesPerToken: elementsPerToken * 2 * ACCURACY_HOST_BYTES_PER_ELEMENT, limit: host.bufferBytes, name: host.bufferSource },
  ];
  const maxTokens = Math.min(...limits.map((l) => Math.floor(l.limit / l.bytesPerToken)));
  const suggestion = maxTokens >= context ? `--seqs ${Math.floor(maxTokens / context)} or fewer at --context ${context}` : `--context ${Math.max(1, maxTokens)} or fewer at --seqs 1`;
  for (const l of limits) requireWithin(`--seqs ${seqs} × --context ${context} (${l.what})`, seqs * context * l.bytesPerToken, l.limit, l.name, suggestion);
}

/** Reads KV data from --file (safetensors, or a folder / k.npy with sibling .npy files). */
function loadFile(path: string, layout: KvFileLayout | undefined, queryGroup: number, querySeed: number): AccuracyWorkload {
  const options = { layout, queryGroup, querySeed };
  if (path.endsWith('.safetensors')) return loadKvSafetensors(readFileSync(path), { ...options, source: basename(path) });
  const folder = statSync(path).isDirectory() ? path : dirname(path);
  const optional = (name: string) => (existsSync(join(folder, name)) ? readFileSync(join(folder, name)) : undefined);
  for (const required of ['k.npy', 'v.npy']) {
    if (!existsSync(join(folder, required))) throw new Error(`--file ${path}: ${join(folder, required)} not found (expected k.npy and v.npy, or a .safetensors file)`);
  }
  return loadKvNpy(
    { k: readFileSync(join(folder, 'k.npy')), v: readFileSync(join(folder, 'v.npy')), q: optional('q.npy'), contextLens: optional('context_lens.npy') },
    { ...options, source: folder },
  );
}

function fmt(x: number | null, digits = 4): string {
  if (x === null) return 'lossless';
  if (!Number.isFinite(x)) return String(x);
  return Math.abs(x) !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e4) ? x.toExponential(2) : x.toFixed(digits);
}

/** The report as a fixed-width text table, one row per method. */
export function formatAccuracyTable(report: AccuracyReport): string {
  const header = ['method', 'bits/el', 'vs FP16 size', 'relL2 exact', 'cos exact', 'relL2 FP16', 'K-path relL2', 'KL mean', `top-${report.settings.topK}`, 'K SNR dB', 'V SNR dB'];
  const rows = report.methods.map((m) => [
    m.id,
    m.bitsPerElement.toFixed(2),
    `${m.compressionVsFp16.toFixed(2)}×`,
    fmt(m.vsExact.relL2),
    fmt(m.vsExact.cosine, 5),
    fmt(m.vsFp16.relL2),
    fmt(m.kOnly.relL2),
    fmt(m.klMean),
    fmt(m.topKOverlap, 3),
    fmt(m.kSnrDb, 2),
    fmt(m.vSnrDb, 2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export const accuracyCommand: CliCommand = {
  summary: 'accuracy of INT4/INT8 KV methods vs FP16 and exact attention (synthetic or real KV data)',
  usage: ACCURACY_USAGE,
  async run(args, env) {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        workload: { type: 'string' },
        file: { type: 'string' },
        methods: { type: 'string', multiple: true },
        json: { type: 'string' },
        preset: { type: 'string' },
        seqs: { type: 'string' },
        batch: { type: 'string' },
        context: { type: 'string' },
        seed: { type: 'string' },
        layout: { type: 'string' },
        'query-group': { type: 'string' },
        'page-size': { type: 'string' },
        'top-k': { type: 'string' },
      },
    });
    // --batch is bench's name for the same thing as --seqs
    if (values.batch !== undefined) {
      if (values.seqs !== undefined) return usageError('--seqs and --batch name the same thing; give one');
      values.seqs = values.batch;
    }
    if (values.file !== undefined) {
      const synthetic = (['workload', 'preset', 'seqs', 'context'] as const).filter((flag) => values[flag] !== undefined);
      if (synthetic.length) return usageError(`--${synthetic[0]} describes a synthetic workload; with --file the data decides the shape`);
    }
    const methodList = (values.methods ?? [DEFAULTS.methods]).flatMap((m) => m.split(',')).map((m) => m.trim()).filter(Boolean);
    let specs: MethodSpec[];
    try {
      specs = resolveMethods(methodList);
    } catch (err) {
      if (err instanceof UnknownMethodError) return usageError(`--methods: ${err.message}`);
      throw err;
    }
    const ints: Record<string, number> = {};
    for (const [flag, fallback] of [['seqs', DEFAULTS.seqs], ['context', DEFAULTS.context], ['seed', DEFAULTS.seed], ['query-group', DEFAULT_QUERY_GROUP], ['page-size', DEFAULT_PAGE_SIZE], ['top-k', 8]] as const) {
      const parsed = positiveInt(flag, values[flag], fallback);
      if (typeof parsed === 'string') return usageError(parsed);
      ints[flag] = parsed;
    }
    if (values.json !== undefined) checkOutputFile('--json', values.json);

    let workload: AccuracyWorkload;
    if (values.file !== undefined) {
      if (!existsSync(values.file)) return usageError(`--file ${values.file} does not exist`);
      if (values.layout !== undefined && !(KV_FILE_LAYOUTS as readonly string[]).includes(values.layout)) {
        return usageError(`--layout ${JSON.stringify(values.layout)}: expected ${KV_FILE_LAYOUTS.join(' or ')}`);
      }
      try {
        workload = loadFile(values.file, values.layout as KvFileLayout | undefined, ints['query-group'], ints.seed);
      } catch (err) {
        if (err instanceof RangeError || (err instanceof Error && err.message.startsWith('--file'))) return usageError(err.message);
        throw err; // TensorFileError: exit 2 through the entry point
      }
    } else {
      const kind = values.workload ?? DEFAULTS.workload;
      if (!isWorkloadKind(kind)) return usageError(`--workload ${JSON.stringify(kind)}: expected one of ${WORKLOAD_KINDS.map((k) => k.id).join(', ')}`);
      const presetName = values.preset ?? DEFAULTS.preset;
      const presetKey = findPreset(presetName);
      if (presetKey === null) return usageError(`--preset ${JSON.stringify(presetName)}: expected one of ${PRESET_NAMES.join(', ')}`);
      const preset = MODEL_PRESETS[presetKey];
      checkSyntheticSize(ints.seqs, ints.context, preset);
      workload = generateWorkload({
        kind: kind as WorkloadKind,
        numQueryHeads: preset.numQueryHeads,
        numKvHeads: preset.numKvHeads,
        headDim: preset.headDim,
        contextLens: Array.from({ length: ints.seqs }, () => ints.context),
        seed: ints.seed,
      });
      workload.description = `${workload.description}; preset ${presetKey}`;
    }

    // Hadamard blocks larger than head_dim cannot run: skip them with a note (e.g. 'all' at D = 64).
    const skipped = specs.filter((spec) => !methodFitsHeadDim(spec, workload.headDim));
    if (skipped.length) process.stderr.write(`accuracy: skipping ${skipped.map((s) => s.id).join(', ')}: Hadamard block larger than head_dim ${workload.headDim}\n`);
    const runnable = specs.filter((spec) => methodFitsHeadDim(spec, workload.headDim)).map((spec) => spec.id);
    if (runnable.length === 0) return usageError(`--methods: none of ${methodList.join(', ')} runs at head_dim ${workload.headDim}`);

    const ctx = await env.gpu();
    process.stderr.write(`accuracy: ${workload.description}\n`);
    const report = await runAccuracy(ctx, workload, runnable, { pageSize: ints['page-size'], topK: ints['top-k'] }, (p) => {
      if (p.stage === 'done') process.stderr.write(`  [${p.index + 1}/${p.total}] ${p.methodId} (${Math.round(p.result?.gpuMs ?? 0)} ms on the GPU)\n`);
    });
    process.stdout.write(`${formatAccuracyTable(report)}\n`);
    // why the rotation helps (or not) on this data: the K channels of one kv head before and after it
    const block = defaultHadamardBlock(workload.headDim);
    const channels = channelStats(workload, block);
    process.stdout.write(`K channel RMS, kv head ${channels.kvHead}: largest / median ${spread(channels.before).toFixed(2)} before the rotation, ${spread(channels.after).toFixed(2)} after Hadamard B=${block}\n`);
    if (values.json !== undefined) {
      const kChannels = { ...channels, spreadBefore: spread(channels.before), spreadAfter: spread(channels.after) };
      writeFileAtomic(values.json, `${JSON.stringify({ ...report, kChannels }, null, 2)}\n`);
      process.stderr.write(`accuracy: wrote ${values.json}\n`);
    }
    return 0;
  },
};
