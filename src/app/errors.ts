/**
 * Failures explained on the page: each error the library raises becomes a title, the library's own
 * message (which says what went wrong and, for limits, what would fit) and what to do about it.
 */
import { UnknownMethodError } from '../accuracy/methods';
import { KvCacheFullError } from '../cache/page-allocator';
import { KvConfigError } from '../cache/paged-kv-cache';
import { GpuError, type GpuContext } from '../gpu/gpu-context';
import { TensorFileError } from '../io/safetensors';
import { ModelFileError } from '../model/model-config';
import { RequestSpecError } from '../serving/requests';
import { SchedulerError } from '../serving/scheduler';
import { el } from './dom';

/** Which browsers run WebGPU, and the flags that turn it on elsewhere. */
export const WEBGPU_HELP = [
  'Chrome or Edge 113+ on Windows, macOS and ChromeOS; on Linux start Chrome with --enable-unsafe-webgpu (and enable chrome://flags/#enable-vulkan if the GPU is not found).',
  'Chrome 121+ on Android 12+ with a recent Qualcomm or ARM GPU.',
  'Safari 26+ (macOS, iOS, iPadOS); earlier Safari: Develop → Feature Flags → WebGPU.',
  'Firefox 141+ on Windows; elsewhere set dom.webgpu.enabled to true in about:config (Nightly).',
  'Still nothing? chrome://gpu (or about:support) says whether the GPU is blocklisted.',
];

export interface ExplainedError {
  /** Short heading. */
  title: string;
  /** The library's message. */
  message: string;
  /** What to do. */
  help: string[];
  /** The device is gone: offer to re-open it. */
  recover: boolean;
}

/** True for the rejection an aborted run throws. */
export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === 'AbortError';
}

/** Throws an AbortError when `signal` is aborted (checked between steps of a run). */
export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new DOMException('The run was cancelled.', 'AbortError');
}

/** Turns any error of a run (or of opening the GPU) into what the page shows. */
export function explainError(e: unknown, ctx: GpuContext | null): ExplainedError {
  const message = e instanceof Error ? e.message : String(e);
  if (ctx?.lostReason || (e instanceof GpuError && e.kind === 'device-lost')) {
    return {
      title: 'The GPU device was lost',
      message: ctx?.lostReason ?? message,
      help: [
        'The browser or driver reset the GPU (a driver crash, a timeout of a long dispatch, another tab, or the system sleeping).',
        'Press Recover to open a new device, then run again; smaller context or concurrency keeps each dispatch short.',
      ],
      recover: true,
    };
  }
  if (e instanceof GpuError && e.kind === 'no-webgpu') return { title: 'WebGPU is not available in this browser', message, help: WEBGPU_HELP, recover: false };
  if (e instanceof GpuError && e.kind === 'out-of-memory') {
    return {
      title: 'Too big for this GPU',
      message,
      help: ['The cache or a buffer exceeds what this adapter allows (phones often bind at most 128 MiB). Lower the context length or the concurrency.'],
      recover: false,
    };
  }
  if (e instanceof GpuError) {
    return { title: `GPU ${e.kind} error`, message, help: ['This is a bug or a driver problem: please report it with the GPU details shown above.'], recover: false };
  }
  if (e instanceof KvCacheFullError) {
    return {
      title: 'Out of KV-cache pages',
      message,
      help: [`At most ${e.tokensThatFit} tokens fit now: lower the context length or the concurrency, or raise the page budget.`],
      recover: false,
    };
  }
  if (e instanceof ModelFileError) {
    return {
      title: "The trained model's files cannot be used",
      message,
      help: [
        'The page fetches model/config.json, model/tokenizer.json, model/run/reference.json, model/run/model.safetensors and model/corpus/heldout.txt.gz from its own server (npm run build copies them into dist/assets).',
        'A file that is missing, too big or does not match the others means this build does not match the repository: rebuild it (npm run build), or serve it with npm run dev.',
      ],
      recover: false,
    };
  }
  if (e instanceof TensorFileError) {
    return {
      title: 'This file cannot be used',
      message,
      help: ['Expected one .safetensors file with tensors k and v ([T, Hkv, D] or [Hkv, T, D]), optional q and context_lens; or .npy files k.npy, v.npy (optional q.npy, context_lens.npy). The README section "Real KV data" shows how to dump them.'],
      recover: false,
    };
  }
  if (e instanceof KvConfigError || e instanceof UnknownMethodError || e instanceof RangeError || e instanceof RequestSpecError || e instanceof SchedulerError) {
    return { title: 'This configuration is not supported', message, help: ['Change the setting it names and run again.'], recover: false };
  }
  return { title: 'Something went wrong', message, help: ['The browser console may say more.'], recover: false };
}

/** Which form a failed run was configured by: the run section's, the serving section's or the model section's. */
export type ErrorScope = 'run' | 'serving' | 'model';

/** Settings a message may name, by the words that name them (checked in order). */
const FIELD_WORDS: Record<ErrorScope, [RegExp, string][]> = {
  run: [[/hadamard block|\bblock\b|head_?dim/i, 'block'], [/concurrency|sequences|\bbatch\b/i, 'seqs'], [/context|tokens/i, 'context'], [/page size|\bpage\b/i, 'page-size']],
  model: [[/prompt/i, 'model-prompt'], [/generated|tokens to generate/i, 'model-tokens']],
  serving: [[/budget/i, 'sim-budget'], [/\bcaps?\b|concurrency/i, 'sim-caps'], [/scale|regime|prompt|output/i, 'sim-scale'], [/steps/i, 'sim-steps'], [/page size/i, 'page-size']],
};

/**
 * The settings (element ids) an error is about, for the page to highlight and focus: a file the
 * loader refused names the file input; a configuration error the fields its message names. Empty
 * for failures no setting fixes (the GPU, a bug).
 */
export function fieldsForError(e: unknown, scope: ErrorScope): string[] {
  if (e instanceof TensorFileError) return ['file-input'];
  const config = e instanceof KvConfigError || e instanceof UnknownMethodError || e instanceof RangeError || e instanceof RequestSpecError ||
    e instanceof SchedulerError || e instanceof KvCacheFullError || (e instanceof GpuError && e.kind === 'out-of-memory');
  if (!config) return [];
  const message = e instanceof Error ? e.message : String(e);
  const fields = FIELD_WORDS[scope].filter(([words]) => words.test(message)).map(([, id]) => id);
  // Too big, with no setting named: the size settings are what shrink it.
  if (fields.length === 0 && (e instanceof KvCacheFullError || e instanceof GpuError)) return scope === 'run' ? ['context', 'seqs'] : scope === 'serving' ? ['sim-budget'] : [];
  return [...new Set(fields)];
}

/** Fills the error panel; `onRecover` is wired to the Recover button when the device is lost. */
export function showError(panel: HTMLElement, explained: ExplainedError, onRecover: () => void): void {
  const dismiss = el('button', { type: 'button', class: 'secondary' }, 'Dismiss');
  dismiss.addEventListener('click', () => clearError(panel));
  const actions = el('div', { class: 'actions' });
  if (explained.recover) {
    const recover = el('button', { type: 'button', id: 'recover', class: 'primary' }, 'Recover');
    recover.addEventListener('click', onRecover);
    actions.append(recover);
  }
  actions.append(dismiss);
  panel.replaceChildren(
    el('h2', {}, explained.title),
    el('p', { class: 'error-message' }, explained.message),
    el('ul', {}, ...explained.help.map((h) => el('li', {}, h))),
    actions,
  );
  panel.hidden = false;
  panel.focus();
}

export function clearError(panel: HTMLElement): void {
  panel.replaceChildren();
  panel.hidden = true;
}
