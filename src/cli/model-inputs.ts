/**
 * What the model commands (`perplexity`, `generate`) share: the --model/--run folders, --methods in
 * the accuracy lab's ids (fp16 first: the baseline), integer flags, and reading the trained model with
 * every file problem turned into one line and exit 2 (CliInputError).
 */
import { METHOD_GROUPS, methodFitsHeadDim, resolveMethods, UnknownMethodError, type MethodSpec } from '../accuracy/methods';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MIN_PAGE_SIZE } from '../layout';
import { ModelFileError } from '../model/model-config';
import { DEFAULT_MODEL_DIR, DEFAULT_RUN_DIR, readModelRun, type ModelRun } from '../model/model-files';
import { CliInputError } from './output-file';

export const MODEL_FLAGS_USAGE = `  --model DIR       the model folder (default ${DEFAULT_MODEL_DIR}): config.json, tokenizer.json, corpus/heldout.txt.gz
  --run DIR         the trained run (default ${DEFAULT_RUN_DIR}): reference.json and its F16 weights`;
export const PAGE_SIZE_USAGE = `  --page-size P     tokens per cache page, ${MIN_PAGE_SIZE}..${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE})`;

/** The parseArgs options MODEL_FLAGS_USAGE describes. */
export const MODEL_FLAG_OPTIONS = { model: { type: 'string' }, run: { type: 'string' } } as const;

export const METHODS_USAGE = (fallback: string) => `  --methods LIST    comma-separated accuracy-lab ids or groups (default ${fallback}): fp16, int4, int8,
                    int4-g32, int4-q8, int4-hadamard[-q8], int4-hadamard-b{16,32,64,128}[-kv][-signs][-q8];
                    groups: ${Object.keys(METHOD_GROUPS).join(', ')}. fp16 always runs first: it is the baseline`;

/** The methods of --methods (repeatable, comma-separated), fp16 first; refuses unknown ids. */
export function parseMethods(values: string[] | undefined, fallback: string): MethodSpec[] {
  const list = (values ?? [fallback]).flatMap((m) => m.split(',')).map((m) => m.trim()).filter(Boolean);
  let specs: MethodSpec[];
  try {
    specs = resolveMethods(['fp16', ...list]);
  } catch (err) {
    if (err instanceof UnknownMethodError) throw new CliInputError(`--methods: ${err.message}`);
    throw err;
  }
  return specs;
}

/** Refuses methods whose Hadamard block does not divide the model's head_dim. */
export function checkMethodsFit(specs: readonly MethodSpec[], headDim: number): void {
  const unfit = specs.filter((s) => !methodFitsHeadDim(s, headDim));
  if (unfit.length) throw new CliInputError(`--methods: ${unfit.map((s) => s.id).join(', ')}: Hadamard block larger than the model's head_dim ${headDim}`);
}

/** --page-size (PAGE_SIZE_USAGE): an integer in [MIN_PAGE_SIZE, MAX_PAGE_SIZE], DEFAULT_PAGE_SIZE when absent. */
export function pageSizeFlag(text: string | undefined): number {
  const pageSize = positiveIntFlag('page-size', text, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
  if (pageSize < MIN_PAGE_SIZE) throw new CliInputError(`--page-size ${pageSize}: expected an integer in [${MIN_PAGE_SIZE}, ${MAX_PAGE_SIZE}]`);
  return pageSize;
}

/** A positive integer flag (at most `max`), or `fallback` when absent. */
export function positiveIntFlag(flag: string, text: string | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new CliInputError(`--${flag} ${JSON.stringify(text)}: expected an integer in [1, ${max}]`);
  }
  return value;
}

/** The trained model (config, tokenizer, reference, weights); a missing or mismatched file exits 2 naming it. */
export function loadModelRun(modelDir: string | undefined, runDir: string | undefined): ModelRun {
  try {
    return readModelRun(modelDir ?? DEFAULT_MODEL_DIR, runDir ?? DEFAULT_RUN_DIR);
  } catch (err) {
    if (err instanceof ModelFileError) throw new CliInputError(err.message);
    throw err; // TensorFileError: exit 2 through the entry point
  }
}

/** "+1.23 %" (or "–" for a missing value). */
export function percent(x: number | null): string {
  if (x === null || !Number.isFinite(x)) return '–';
  return `${x >= 0 ? '+' : ''}${x.toFixed(2)} %`;
}

/** A fixed-width text table; the first column left-aligned, the others right-aligned. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
