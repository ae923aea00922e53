/**
 * The model section's settings: their defaults and bounds (the form and the URL check them with the
 * same functions) and their URL query form, next to the other sections' keys so one link reproduces
 * the page. No DOM here.
 *
 * URL keys (both optional; a bad value falls back to the default with a warning):
 *   model-prompt=TEXT (at most MAX_PROMPT_CHARS; tab and newline are the only control characters;
 *     read at any length, written only up to MAX_URL_PROMPT_BYTES encoded)
 *   model-tokens=32 (1 to MAX_GENERATE_TOKENS)
 */
import { parseIntegerField, quoteQueryValue } from './config';

/** What a generation run uses. */
export interface ModelSettings {
  prompt: string;
  tokens: number;
}

/**
 * The default prompt: a heading as the training text has it (rendered POD: `NAME` on a line of its own,
 * then a blank line). The model goes on with a module's name line and its DESCRIPTION; raw POD such as
 * `=head1 NAME` was rare in that text and is continued by every method with the same "!!!!".
 */
export const DEFAULT_MODEL_SETTINGS: Readonly<ModelSettings> = Object.freeze({ prompt: 'NAME\n\n', tokens: 32 });
/** Tokens the page generates at most per method (the model's context, 512, bounds prompt + tokens too). */
export const MAX_GENERATE_TOKENS = 256;
export const MAX_PROMPT_CHARS = 4000;
/**
 * The most bytes the prompt's encoded value may take in the page's link; a longer prompt is left out
 * of the link (the page says so under the field). Servers refuse a long URL (nginx: 8 KB request line,
 * HTTP 414; Node, so vite's dev and preview servers: 16 KiB of headers, HTTP 431), and the link also
 * carries the other sections' keys, the host and the path. A 4,000-character CJK prompt encodes to 36 KB.
 */
export const MAX_URL_PROMPT_BYTES = 2000;
export const MODEL_QUERY_KEYS = { prompt: 'model-prompt', tokens: 'model-tokens' } as const;

/**
 * Characters a prompt may not hold: control characters but tab and newline (the textarea never
 * produces \r), lone surrogates (a URL cannot carry them), and U+FFFD, which URLSearchParams puts
 * where a link's bytes are not UTF-8 (a percent-encoding cut short or re-encoded on the way).
 */
const REFUSED_CHAR = /(?![\t\n])[\p{Cc}\p{Cs}\uFFFD]/u;

function codePoint(ch: string): string {
  return `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Why `prompt` cannot be used, completing "The prompt …" (null: it can). */
export function promptFault(prompt: string): string | null {
  if (prompt.length > MAX_PROMPT_CHARS) {
    return `must be at most ${MAX_PROMPT_CHARS.toLocaleString('en')} characters (it has ${prompt.length.toLocaleString('en')})`;
  }
  const at = prompt.search(REFUSED_CHAR);
  if (at < 0) return null;
  const ch = String.fromCodePoint(prompt.codePointAt(at)!);
  const what = ch === '\uFFFD'
    ? 'U+FFFD, the mark of bytes that were not UTF-8 (in a link: a percent-encoding cut short)'
    : /\p{Cs}/u.test(ch) ? `${codePoint(ch)}, half of a surrogate pair` : `${codePoint(ch)}, a control character (tab and newline are the only ones allowed)`;
  return `must not contain ${what}: it has one at character ${at + 1}`;
}

/** The token count typed in the form: the value, or why it cannot be used. */
export function parseTokensField(text: string, emptyReason?: string): { value: number } | { problem: string } {
  return parseIntegerField(text, 'Tokens to generate', 1, MAX_GENERATE_TOKENS, emptyReason);
}

export interface ParsedModelSettings {
  settings: ModelSettings;
  /** One line per ignored parameter. */
  warnings: string[];
}

/** Reads the model keys of a query string; other keys are ignored. */
export function modelSettingsFromQuery(query: string): ParsedModelSettings {
  const params = new URLSearchParams(query);
  const settings: ModelSettings = { ...DEFAULT_MODEL_SETTINGS };
  const warnings: string[] = [];
  const prompt = params.get(MODEL_QUERY_KEYS.prompt);
  if (prompt !== null) {
    const fault = promptFault(prompt);
    if (fault) warnings.push(`Ignored ${MODEL_QUERY_KEYS.prompt}=${quoteQueryValue(prompt)}: the prompt ${fault}.`);
    else settings.prompt = prompt;
  }
  const tokens = params.get(MODEL_QUERY_KEYS.tokens);
  if (tokens !== null) {
    // As config.ts reads its integers: digits only, no spaces.
    const parsed = /^\d+$/.test(tokens) ? parseTokensField(tokens) : null;
    if (parsed && 'value' in parsed) settings.tokens = parsed.value;
    else warnings.push(`Ignored ${MODEL_QUERY_KEYS.tokens}=${quoteQueryValue(tokens)}: expected an integer in [1, ${MAX_GENERATE_TOKENS}].`);
  }
  return { settings, warnings };
}

/** The bytes of `prompt`'s value in the link, as modelSettingsToQuery encodes it ('a b' → 'a+b': 3; '中' → '%E4%B8%AD': 9). */
export function promptUrlBytes(prompt: string): number {
  return new URLSearchParams({ p: prompt }).toString().length - 'p='.length;
}

/** Whether the page's link keeps `prompt` (its encoded value is at most MAX_URL_PROMPT_BYTES). */
function linkKeepsPrompt(prompt: string): boolean {
  return promptUrlBytes(prompt) <= MAX_URL_PROMPT_BYTES;
}

/** Why the link leaves `prompt` out, as the note under the field says it (null: the link keeps it). */
export function promptUrlNote(prompt: string): string | null {
  if (linkKeepsPrompt(prompt)) return null;
  const bytes = promptUrlBytes(prompt);
  return `This prompt is too long to keep in the page's link (${bytes.toLocaleString('en')} bytes encoded, at most ${MAX_URL_PROMPT_BYTES.toLocaleString('en')}); the link opens with the default prompt.`;
}

/** The model keys of `settings`, to append to the run section's query ('&model-prompt=…'; a prompt over MAX_URL_PROMPT_BYTES is left out). */
export function modelSettingsToQuery(settings: ModelSettings): string {
  const params = new URLSearchParams();
  if (linkKeepsPrompt(settings.prompt)) params.set(MODEL_QUERY_KEYS.prompt, settings.prompt);
  params.set(MODEL_QUERY_KEYS.tokens, String(settings.tokens));
  return `&${params.toString()}`;
}
