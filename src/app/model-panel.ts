/**
 * The model section: the small Llama-style model trained here (model/) continues a prompt with each
 * KV cache, FP16, naive INT4 and INT4 + Hadamard (B = 128), side by side, and scores the quick slice
 * of the held-out text (perplexity per method, beside PyTorch's). Every prompt and generated token goes
 * through the library's WGSL forward pass and the paged cache's append + attention (generateGreedy,
 * runPerplexity: the CLI's `generate` and `perplexity` run the same functions).
 *
 * The model's files are fetched the first time the section runs (model-loader.ts), uploaded to the
 * page's GPU device once, and kept for later runs. Each method's column (or table row) appears when
 * that method finishes; a cancelled run keeps them.
 */
import { bitsPerElement, methodSpec, type MethodSpec } from '../accuracy/methods';
import { GpuError, type GpuContext } from '../gpu/gpu-context';
import { formatBytes } from '../kernels/gpu-buffers';
import { GpuModel } from '../model/gpu-model';
import { firstDivergence, generateGreedy, type GenerationResult } from '../model/model-generate';
import { runPerplexity, type PerplexityResult } from '../model/model-perplexity';
import type { ModelRun } from '../model/model-run';
import type { BpeTokenizer } from '../model/tokenizer';
import type { ProgressFn } from './accuracy-panel';
import { byId, el, emptyReason, plural } from './dom';
import { isAbort } from './errors';
import { softwareAdapterName } from './headline';
import { fetchModelRun, fetchQuickStream, MODEL_ASSETS, type ModelAsset } from './model-loader';
import { MAX_GENERATE_TOKENS, MAX_PROMPT_CHARS, parseTokensField, promptFault, promptUrlNote, type ModelSettings } from './model-settings';
import { formatNumber, renderTable, type Column } from './tables';
import { showFieldProblem, type Problem } from './validation';

/** The three caches compared: the baseline first (the others are compared with its continuation). */
export const MODEL_METHODS: readonly MethodSpec[] = ['fp16', 'int4', 'int4-hadamard'].map(methodSpec);

const nextFrame = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/**
 * The section's prompt box and token count, validated as they are typed (an invalid value disables
 * Run with its reason, and leaves the last usable value in `settings`, as the other forms do). A prompt
 * too long for the page's link gets a note under the field (#model-prompt-link); it still runs.
 */
export class ModelControls {
  private current: ModelSettings;
  private problemList: Problem[] = [];
  private tokenizer: { tok: BpeTokenizer; contextLength: number } | null = null;

  /** @param onChange called after every change of a field (valid or not: the page re-checks what may run and writes the URL) */
  constructor(initial: ModelSettings, private readonly onChange: () => void) {
    this.current = { ...initial };
    const prompt = byId<HTMLTextAreaElement>('model-prompt');
    const tokens = byId<HTMLInputElement>('model-tokens');
    prompt.value = initial.prompt;
    tokens.value = String(initial.tokens);
    tokens.max = String(MAX_GENERATE_TOKENS);
    prompt.maxLength = MAX_PROMPT_CHARS;
    for (const field of [prompt, tokens]) {
      field.addEventListener('input', () => this.read());
      field.addEventListener('change', () => this.read());
    }
    this.validate();
  }

  get problems(): Problem[] {
    return [...this.problemList];
  }

  /** The last usable value of each field: the ones shown when `problems` is empty, and the ones the URL keeps. */
  get settings(): ModelSettings {
    return { ...this.current };
  }

  /** The prompt's token ids: `<bos>` then the text's (as the model's documents start). */
  static promptIds(tok: BpeTokenizer, prompt: string): number[] {
    return [tok.bosId, ...tok.encode(prompt)];
  }

  /** Once the model is loaded, prompt + tokens are checked against its context as they are typed. */
  setTokenizer(tok: BpeTokenizer, contextLength: number): void {
    this.tokenizer = { tok, contextLength };
    this.read();
  }

  setDisabled(disabled: boolean): void {
    byId<HTMLFieldSetElement>('model-fieldset').disabled = disabled;
  }

  private read(): void {
    this.validate();
    this.onChange();
  }

  private validate(): void {
    const problems: Problem[] = [];
    const prompt = byId<HTMLTextAreaElement>('model-prompt').value;
    const fault = promptFault(prompt);
    const promptMessage = fault && `The prompt ${fault}.`;
    showFieldProblem('model-prompt', promptMessage);
    if (promptMessage) problems.push({ field: 'model-prompt', message: promptMessage, blocks: 'model' });
    else this.current.prompt = prompt;
    // About the prompt the link would keep: the last usable one.
    const linkNote = promptUrlNote(this.current.prompt);
    const note = byId('model-prompt-link');
    note.textContent = linkNote ?? '';
    note.hidden = linkNote === null;
    const tokensField = byId<HTMLInputElement>('model-tokens');
    const parsed = parseTokensField(tokensField.value, emptyReason(tokensField));
    if ('value' in parsed) this.current.tokens = parsed.value;
    const tokensMessage = 'problem' in parsed ? parsed.problem : null;
    const tooLong = !tokensMessage && !promptMessage && this.tokenizer && 'value' in parsed ? contextProblem(ModelControls.promptIds(this.tokenizer.tok, prompt).length, parsed.value, this.tokenizer.contextLength) : null;
    if (tooLong?.field === 'model-prompt') showFieldProblem('model-prompt', tooLong.message);
    const countMessage = tokensMessage ?? (tooLong?.field === 'model-tokens' ? tooLong.message : null);
    showFieldProblem('model-tokens', countMessage);
    if (countMessage) problems.push({ field: 'model-tokens', message: countMessage, blocks: 'model' });
    if (tooLong?.field === 'model-prompt') problems.push({ field: 'model-prompt', message: tooLong.message, blocks: 'model' });
    this.problemList = problems;
  }
}

/**
 * Why `promptTokens` (with `<bos>`) and `tokens` to generate do not fit the model's context, and the
 * field to fix (null: they fit): the prompt when it leaves no room for a single token, else the count.
 */
export function contextProblem(promptTokens: number, tokens: number, contextLength: number): { field: 'model-prompt' | 'model-tokens'; message: string } | null {
  if (promptTokens + tokens - 1 <= contextLength) return null;
  const most = contextLength - promptTokens + 1;
  if (most < 1) {
    return { field: 'model-prompt', message: `The prompt is too long: ${promptTokens} tokens with <bos>, and the model's context is ${contextLength} tokens, prompt and continuation together; shorten it to at most ${contextLength} tokens.` };
  }
  return { field: 'model-tokens', message: `Tokens to generate: at most ${most} after this prompt (${promptTokens} tokens with <bos>; the model's context is ${contextLength} tokens), got ${tokens}.` };
}

// ---------------------------------------------------------------- the model, loaded once

let files: ModelRun | null = null;
let onGpu: { ctx: GpuContext; model: GpuModel } | null = null;
let quickStream: Int32Array | null = null;

/** The model's files (fetched on first use) and its weights on `ctx`'s device (uploaded again after a device loss). */
async function ensureModel(ctx: GpuContext, signal: AbortSignal, progress: ProgressFn, onLoaded: (run: ModelRun) => void): Promise<{ run: ModelRun; model: GpuModel }> {
  if (!files) {
    progress(null, 1, `Model: fetching its config, tokenizer and reference…`);
    const fetched = await fetchModelRun(signal, (asset: ModelAsset, bytes, total) => {
      progress(total === null ? null : bytes, total ?? 1, `Model: fetching ${asset.what} (${asset.path}), ${formatBytes(bytes)}${total === null ? '' : ` of ${formatBytes(total)}`}…`);
    });
    files = fetched;
    onLoaded(fetched);
  }
  if (!onGpu || onGpu.ctx !== ctx) {
    onGpu?.model.destroy();
    onGpu = null;
    progress(null, 1, 'Model: uploading the weights to the GPU…');
    await nextFrame();
    try {
      onGpu = { ctx, model: await GpuModel.create(ctx, files.weights) };
    } catch (e) {
      if (e instanceof GpuError && e.kind === 'out-of-memory') {
        throw new GpuError(`the model's weights (${MODEL_ASSETS.weights.path}) do not fit this GPU: ${e.message}`, 'out-of-memory', e.beforeWork);
      }
      throw e;
    }
  }
  return { run: files, model: onGpu.model };
}

/** The software adapter's caveat, shown before a run's numbers. */
function showCaveat(ctx: GpuContext): void {
  const software = softwareAdapterName(ctx);
  const caveat = byId('model-caveat');
  caveat.hidden = software === null;
  caveat.textContent = software
    ? `Running on ${software}, a CPU pretending to be a GPU: the tokens/s below are not meaningful (the texts and perplexities hold on every adapter).`
    : '';
}

// ---------------------------------------------------------------- generation, side by side

export type ColumnState = 'waiting' | 'running' | 'done' | 'cancelled' | 'failed';

export interface GenerationColumn {
  spec: MethodSpec;
  state: ColumnState;
  result: GenerationResult | null;
}

/** A continuation cut at the first token where it leaves the baseline's: the text before, that token, the rest. */
export interface ContinuationParts {
  before: string;
  token: string;
  after: string;
}

/**
 * The text of `ids` in three parts around token `at` (null: all of it in `before`). The parts are
 * decoded from prefixes, so a character split over tokens stays whole where the parts allow it.
 */
export function continuationParts(tok: BpeTokenizer, ids: readonly number[], at: number | null): ContinuationParts {
  if (at === null || at >= ids.length) return { before: tok.decode(ids), token: '', after: '' };
  const full = tok.decode(ids);
  const before = tok.decode(ids.slice(0, at));
  const through = tok.decode(ids.slice(0, at + 1));
  if (through.startsWith(before) && full.startsWith(through)) return { before, token: through.slice(before.length), after: full.slice(through.length) };
  return { before, token: tok.decode(ids.slice(at, at + 1)), after: tok.decode(ids.slice(at + 1)) };
}

/** Token `id` as the divergence note quotes it: its text in quotes (newlines and tabs escaped), or the special's name. */
export function tokenLabel(tok: BpeTokenizer, id: number): string {
  if (id === tok.eosId) return '<eos>';
  if (id === tok.bosId) return '<bos>';
  return JSON.stringify(tok.decode([id]));
}

function columnElement(tok: BpeTokenizer, column: GenerationColumn, baseline: GenerationResult | null, software: boolean, headDim: number): HTMLElement {
  const { spec, state, result } = column;
  const isBaseline = spec.id === MODEL_METHODS[0].id;
  const diverge = result && baseline && !isBaseline ? firstDivergence(baseline.tokens, result.tokens) : null;
  const attrs: Record<string, string | undefined> = { class: 'model-column', 'data-method': spec.id, 'data-state': state };
  const body: (Node | string)[] = [
    el('h3', {}, spec.displayName, el('small', { class: 'hint' }, ` · ${formatNumber(bitsPerElement(spec, headDim), 3)} bits / K,V element`)),
  ];
  if (!result) {
    const text = { waiting: 'Waiting for the methods before it…', running: 'Generating…', cancelled: 'Cancelled before it finished.', failed: 'Stopped by the error above.', done: '' }[state];
    body.push(el('p', { class: 'model-note' }, text));
    return el('article', attrs, ...body);
  }
  attrs['data-ids'] = JSON.stringify(result.tokens);
  attrs['data-tokens-per-s'] = String(result.tokensPerSecond);
  attrs['data-diverge'] = isBaseline ? undefined : diverge === null ? 'none' : String(diverge);
  const speed = result.tokens.length > 1 ? `${formatNumber(result.tokensPerSecond, 3)} tokens/s` : 'tokens/s: — (one token)';
  body.push(el('p', { class: 'model-stats' },
    el('strong', {}, speed), ` decode, prefill ${formatNumber(result.prefillTokensPerSecond, 3)} tokens/s${software ? ' (software adapter: not meaningful)' : ''}`));
  let note: string;
  if (isBaseline) note = `The baseline: ${result.tokens.length} tokens, greedy.`;
  else if (diverge === null) note = `Identical to FP16 for all ${result.tokens.length} tokens.`;
  else {
    const theirs = baseline && diverge < baseline.tokens.length ? tokenLabel(tok, baseline.tokens[diverge]) : 'no token';
    note = `Leaves FP16's continuation at generated token ${diverge + 1} of ${result.tokens.length} (highlighted): ${tokenLabel(tok, result.tokens[diverge])} where FP16 has ${theirs}.`;
  }
  body.push(el('p', { class: 'model-note' }, note));
  const parts = continuationParts(tok, result.tokens, diverge);
  const text = el('div', { class: 'model-text', role: 'region', tabindex: 0, 'aria-label': `${spec.displayName} continuation` }, el('span', { class: 'model-same' }, parts.before));
  if (diverge !== null) {
    // A whitespace token gets a visible sign (CSS ::before, so the text itself stays the continuation).
    // (a special token such as <eos> decodes to no text at all).
    const blank = parts.token === '' ? '<special token>' : parts.token.trim() === '' ? parts.token.replace(/\n/g, '⏎').replace(/\t/g, '⇥').replace(/ /g, '␣') : undefined;
    text.append(
      el('mark', { class: blank ? 'model-diverge blank' : 'model-diverge', 'data-shown': blank, title: `first token that differs from FP16 (generated token ${diverge + 1})` }, parts.token),
      el('span', { class: 'model-after' }, parts.after),
    );
  }
  body.push(text);
  return el('article', attrs, ...body);
}

/** Fills #model-columns: one column per method, in MODEL_METHODS order. */
export function showGeneration(tok: BpeTokenizer, columns: readonly GenerationColumn[], software: boolean, headDim: number): void {
  byId('model-generation').hidden = false;
  const baseline = columns.find((c) => c.spec.id === MODEL_METHODS[0].id)?.result ?? null;
  byId('model-columns').replaceChildren(...columns.map((c) => columnElement(tok, c, baseline, software, headDim)));
}

/** Continues the prompt with each method in turn; each column fills when its method finishes. */
export async function runModelGeneration(ctx: GpuContext, settings: ModelSettings, controls: ModelControls, signal: AbortSignal, progress: ProgressFn): Promise<void> {
  showCaveat(ctx);
  const { run, model } = await ensureModel(ctx, signal, progress, (r) => controls.setTokenizer(r.tokenizer, r.config.contextLength));
  const tok = run.tokenizer;
  const promptIds = ModelControls.promptIds(tok, settings.prompt);
  const tooLong = contextProblem(promptIds.length, settings.tokens, run.config.contextLength);
  if (tooLong) throw new RangeError(tooLong.message); // the field it belongs to says so too (setTokenizer re-checked it)
  const software = softwareAdapterName(ctx) !== null;
  const columns: GenerationColumn[] = MODEL_METHODS.map((spec) => ({ spec, state: 'waiting', result: null }));
  byId('model-prompt-shown').textContent =
    `Prompt ${JSON.stringify(settings.prompt)} (${plural(promptIds.length, 'token')} with <bos>), continued greedily by ${plural(settings.tokens, 'token')} with each KV cache; every token goes through the paged cache's append + attention.`;
  const draw = () => showGeneration(tok, columns, software, run.config.headDim);
  draw();
  const steps = promptIds.length + settings.tokens - 1;
  try {
    for (const [i, column] of columns.entries()) {
      column.state = 'running';
      draw();
      const label = `${column.spec.displayName} (${i + 1} of ${columns.length})`;
      progress(i * steps, columns.length * steps, `Generating: ${label}, compiling its kernels…`);
      await nextFrame();
      column.result = await generateGreedy(model, promptIds, settings.tokens, column.spec, {
        signal,
        onStep: (done) => {
          const what = done < promptIds.length ? `prompt token ${done} of ${promptIds.length}` : `token ${done - promptIds.length + 1} of ${settings.tokens}`;
          progress(i * steps + done, columns.length * steps, `Generating: ${label}, ${what}`);
        },
      });
      column.state = 'done';
      draw();
    }
  } catch (e) {
    for (const c of columns) if (c.state !== 'done') c.state = isAbort(e) ? 'cancelled' : 'failed';
    draw();
    throw e;
  }
}

// ---------------------------------------------------------------- perplexity of the quick slice

/** One row of the perplexity table. */
export interface PerplexityRow {
  id: string;
  displayName: string;
  perplexity: number;
  /** 100 · (perplexity / FP16 KV's − 1); null for FP16 itself or while FP16 has not finished. */
  vsFp16Percent: number | null;
  /** 100 · (perplexity / PyTorch's − 1). */
  vsReferencePercent: number;
  bitsPerElement: number;
  tokensPerSecond: number;
}

/** The rows of `results` (FP16 first), as the CLI's `perplexity` computes them. */
export function perplexityRows(results: readonly PerplexityResult[], referencePerplexity: number, headDim: number): PerplexityRow[] {
  const fp16 = results.find((r) => r.method === 'fp16')?.perplexity ?? null;
  return results.map((r) => ({
    id: r.method,
    displayName: methodSpec(r.method).displayName,
    perplexity: r.perplexity,
    vsFp16Percent: r.method === 'fp16' || fp16 === null ? null : 100 * (r.perplexity / fp16 - 1),
    vsReferencePercent: 100 * (r.perplexity / referencePerplexity - 1),
    bitsPerElement: bitsPerElement(methodSpec(r.method), headDim),
    tokensPerSecond: r.tokensPerSecond,
  }));
}

/** "+4.00 %" ('—' for none). */
export function formatPercent(value: number | string | null): string {
  if (value === null || typeof value === 'string' || !Number.isFinite(value)) return '—';
  return `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(2)} %`;
}

/** The table's columns; `software` marks tokens/s as not meaningful. */
export function perplexityColumns(software: boolean): Column<PerplexityRow>[] {
  return [
    { key: 'method', label: 'Method', value: (r) => r.displayName, both: true },
    { key: 'perplexity', label: 'Perplexity', title: 'exp(mean −log p) of the quick slice, teacher-forced through the paged cache', value: (r) => r.perplexity, format: (v) => (typeof v === 'number' ? v.toFixed(3) : '—') },
    { key: 'vs_fp16', label: 'Δ vs FP16 KV', title: 'Change of the perplexity against the same model with the FP16 cache', value: (r) => r.vsFp16Percent, format: formatPercent },
    { key: 'vs_pytorch', label: 'vs PyTorch', title: "Change against PyTorch's fp32 perplexity of the same slice (exact K/V), from model/run/reference.json", value: (r) => r.vsReferencePercent, format: formatPercent },
    { key: 'bits_per_element', label: 'Bits / elem', title: 'Stored bits per K or V element, scale/min included', value: (r) => r.bitsPerElement, format: (v) => formatNumber(v, 3) },
    { key: 'tokens_per_s', label: software ? 'Tokens/s (software: not meaningful)' : 'Tokens/s', title: 'Tokens through the forward pass per second', value: (r) => r.tokensPerSecond, format: (v) => formatNumber(v, 3) },
  ];
}

/** Fills the perplexity table with `rows` and the summary line above it. */
export function showPerplexity(rows: readonly PerplexityRow[], summary: string, software: boolean): void {
  byId('model-perplexity').hidden = false;
  byId('model-ppl-summary').textContent = summary;
  renderTable(byId('model-ppl-table'), 'Perplexity of the quick slice by KV cache (click a header to sort)', perplexityColumns(software), rows);
}

/** Scores the quick slice with each method in turn; each row appears when its method finishes. */
export async function runModelPerplexity(ctx: GpuContext, controls: ModelControls, signal: AbortSignal, progress: ProgressFn): Promise<void> {
  showCaveat(ctx);
  const { run, model } = await ensureModel(ctx, signal, progress, (r) => controls.setTokenizer(r.tokenizer, r.config.contextLength));
  if (!quickStream) {
    progress(null, 1, `Perplexity: fetching and tokenizing ${MODEL_ASSETS.heldout.what} (${MODEL_ASSETS.heldout.path})…`);
    quickStream = await fetchQuickStream(run, signal);
  }
  const stream = quickStream;
  const software = softwareAdapterName(ctx) !== null;
  const reference = run.reference.quick.perplexity;
  const n = run.quickTokens;
  const results: PerplexityResult[] = [];
  const summary = (state: string) =>
    `Quick slice: the first ${n} tokens of the held-out text (model/corpus/heldout.txt.gz, as model/train.py scores it), one sequence, ` +
    `teacher-forced; PyTorch's fp32 perplexity (exact K/V) is ${reference.toFixed(3)}. ${state}`;
  showPerplexity([], summary('Each row appears when its method finishes.'), software);
  try {
    for (const [i, spec] of MODEL_METHODS.entries()) {
      const label = `${spec.displayName} (${i + 1} of ${MODEL_METHODS.length})`;
      progress(i * n, MODEL_METHODS.length * n, `Perplexity: ${label}, compiling its kernels…`);
      await nextFrame();
      results.push(await runPerplexity(model, stream, [{ start: 0, length: n }], spec, {
        signal,
        onStep: (done) => progress(i * n + done, MODEL_METHODS.length * n, `Perplexity: ${label}, token ${done} of ${n}`),
      }));
      const finished = results.length === MODEL_METHODS.length;
      showPerplexity(perplexityRows(results, reference, run.config.headDim), summary(finished ? '' : `${results.length} of ${MODEL_METHODS.length} methods done so far.`), software);
    }
  } catch (e) {
    if (isAbort(e)) showPerplexity(perplexityRows(results, reference, run.config.headDim), summary(`Cancelled: the ${results.length} method${results.length === 1 ? '' : 's'} that finished.`), software);
    throw e;
  }
}
