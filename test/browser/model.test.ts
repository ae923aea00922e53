/**
 * The model section, in headless Chromium on WebGPU (SwiftShader without a GPU), at a desktop
 * (1400 × 900) and a phone (390 × 844) width: nothing of the model is fetched before a button is
 * pressed; an invalid token count disables Run with its reason; a short greedy continuation (4 tokens:
 * SwiftShader runs this model at ~10 tokens/s) fills three columns, FP16 / INT4 / INT4 + Hadamard,
 * whose texts are the decoded ids and whose divergence marker sits where the ids first leave FP16's;
 * once the tokenizer is loaded, prompt + tokens are checked against the context as they are typed;
 * Cancel keeps the methods that finished; at phone width the columns stack and nothing is wider than
 * its box; the perplexity button (3 methods × 256 tokens: ~35 s on SwiftShader) fills its table row by
 * row, FP16 KV within 0.5 % of PyTorch; a model file missing from the server is named in the error.
 * The prompt and token count live in the URL: a link opens with them, an edit rewrites the address in
 * place, and a link's bad value (100 kB, control characters, bytes that are not UTF-8, a count out of
 * range) is named in the page's URL notice and leaves the default; a prompt too long for a link (over
 * MAX_URL_PROMPT_BYTES encoded) is left out of the address, with a note under the field saying so. Weights over the device's limits
 * (a device reporting a 2 MiB binding limit) stop the run with a readable message naming the buffer.
 * In Node: the table's rows and cells from given numbers, the size limit and the gunzip of the loader.
 */
import { resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import type { PerplexityResult } from '../../src/model/model-perplexity';
import { firstDivergence } from '../../src/model/model-generate';
import { readTokenizer } from '../../src/model/model-files';
import { contextProblem, formatPercent, MODEL_METHODS, perplexityColumns, perplexityRows } from '../../src/app/model-panel';
import { fetchAsset, gunzip, MAX_WEIGHTS_BYTES, MODEL_ASSETS, tooBigMessage, type ModelAsset } from '../../src/app/model-loader';
import { ModelFileError } from '../../src/model/model-config';
import { DEFAULT_MODEL_SETTINGS } from '../../src/app/model-settings';
import { columnNumbers, readTable, RUN_TIMEOUT_MS, readyPageForSuite, waitForGpu } from './page-helpers';

const DESKTOP = { width: 1400, height: 900 };
const PHONE = { width: 390, height: 844 };
const METHOD_IDS = ['fp16', 'int4', 'int4-hadamard-b128'];
/** The quick slice, 3 methods × 256 tokens: ~35 s on SwiftShader alone; the suite shares the CPU between two files. */
const PPL_TIMEOUT_MS = 240_000;
const { tokenizer } = readTokenizer(resolve(import.meta.dirname, '../../model'));

/** The value of `key` in the page's address, once it is `want` (the model section writes it a moment after the last keystroke). */
async function waitForQuery(page: Page, key: string, want: string): Promise<void> {
  await page.waitForFunction(([k, v]) => new URLSearchParams(location.search).get(k) === v, [key, want] as const, { timeout: 10_000, polling: 50 });
}

async function setField(page: Page, id: string, value: string): Promise<void> {
  await page.fill(`#${id}`, value);
  await page.locator(`#${id}`).dispatchEvent('change');
}

/** Clicks a model button and waits for the section's progress line to say the run ended; returns that line. */
async function clickAndWait(page: Page, id: 'model-run' | 'model-ppl', timeoutMs = RUN_TIMEOUT_MS): Promise<string> {
  await page.click(`#${id}`);
  await page.waitForFunction(
    () => /^(Done in|Cancelled|The run stopped)/.test(document.getElementById('model-progress-text')?.textContent ?? ''),
    null,
    { timeout: timeoutMs, polling: 200 },
  );
  return (await page.textContent('#model-progress-text')) ?? '';
}

/** Records the number of rows of the perplexity table every time it changes (set up before a run). */
async function recordPerplexityRows(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: number[] = [];
    (window as unknown as { pplRows: number[] }).pplRows = seen;
    const box = document.getElementById('model-ppl-table')!;
    new MutationObserver(() => {
      const n = box.querySelectorAll(':scope > .table-scroll tbody tr').length;
      if (seen[seen.length - 1] !== n) seen.push(n);
    }).observe(box, { childList: true, subtree: true });
  });
}

interface ColumnData {
  method: string;
  state: string;
  ids: number[] | null;
  diverge: string | null;
  tokensPerS: number;
  text: string;
  marks: string[];
  beforeMark: string | null;
  box: { x: number; y: number; width: number };
}

function readColumns(page: Page): Promise<ColumnData[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLElement>('#model-columns .model-column')].map((c) => {
      const text = c.querySelector('.model-text');
      const marks = [...c.querySelectorAll('.model-text mark')];
      const r = c.getBoundingClientRect();
      return {
        method: c.dataset.method ?? '',
        state: c.dataset.state ?? '',
        ids: c.dataset.ids ? (JSON.parse(c.dataset.ids) as number[]) : null,
        diverge: c.dataset.diverge ?? null,
        tokensPerS: Number(c.dataset.tokensPerS),
        text: text?.textContent ?? '',
        marks: marks.map((m) => m.textContent ?? ''),
        beforeMark: marks.length ? (text?.querySelector('.model-same')?.textContent ?? '') : null,
        box: { x: r.x, y: r.y, width: r.width },
      };
    }),
  );
}

/** Elements of `#rootId` laid out wider than their box (content past the right edge) or reaching past their parent. */
function overflows(page: Page, rootId: string): Promise<string[]> {
  return page.evaluate((id) => {
    const root = document.getElementById(id)!;
    const name = (e: Element) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className && typeof e.className === 'string' ? `.${e.className.split(' ').join('.')}` : ''}`;
    const out: string[] = [];
    for (const e of [root, ...root.querySelectorAll<HTMLElement>('*')]) {
      if (e.getClientRects().length === 0 || e.closest('.visually-hidden')) continue; // clipped on purpose
      if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1) out.push(`${name(e)}: content ${e.scrollWidth} px in ${e.clientWidth} px`);
      const parent = e.parentElement;
      if (!parent || e === root) continue;
      const r = e.getBoundingClientRect();
      const p = parent.getBoundingClientRect();
      if (r.right > p.right + 1 || r.left < p.left - 1) out.push(`${name(e)}: [${Math.round(r.left)}, ${Math.round(r.right)}] outside its parent [${Math.round(p.left)}, ${Math.round(p.right)}]`);
    }
    return out;
  }, rootId);
}

describe('the model section (headless Chromium, WebGPU)', () => {
  const suite = readyPageForSuite('', DESKTOP);

  it('shows its defaults and fetches none of the model before a button is pressed', async () => {
    const { page } = suite.served;
    expect(await page.inputValue('#model-prompt')).toBe(DEFAULT_MODEL_SETTINGS.prompt);
    expect(await page.inputValue('#model-tokens')).toBe('32');
    expect(await page.isDisabled('#model-run')).toBe(false);
    expect(await page.isDisabled('#model-ppl')).toBe(false);
    expect(await page.isVisible('#model-generation')).toBe(false);
    expect(await page.isVisible('#model-perplexity')).toBe(false);
    // after the accuracy and throughput results (hidden until a run), before the serving section
    expect(await page.evaluate(() => document.getElementById('model')!.previousElementSibling?.id)).toBe('bench-results');
    const fetched = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name));
    expect(fetched.filter((url) => /model-.*\.safetensors|tokenizer-|reference-|heldout/.test(url))).toEqual([]);
  });

  for (const viewport of [DESKTOP, PHONE]) {
    it(`an invalid token count disables Run with its reason, under the field and next to Run (${viewport.width} px)`, async () => {
      const { page } = suite.served;
      await page.setViewportSize(viewport);
      for (const [bad, reason] of [
        ['0', /Tokens to generate must be a whole number from 1 to 256 \(got "0"\)/],
        ['257', /Tokens to generate must be a whole number from 1 to 256 \(got "257"\)/],
        ['', /Tokens to generate must be a whole number from 1 to 256 \(it is empty\)/],
      ] as const) {
        await setField(page, 'model-tokens', bad);
        expect(await page.getAttribute('#model-tokens', 'aria-invalid')).toBe('true');
        expect(await page.textContent('#model-tokens-error')).toMatch(reason);
        expect(await page.isDisabled('#model-run'), bad).toBe(true);
        expect(await page.isVisible('#model-blocked')).toBe(true);
        expect(await page.textContent('#model-blocked')).toMatch(reason);
        expect(await page.isDisabled('#model-ppl')).toBe(false); // the perplexity uses neither field
        expect(await page.isDisabled('#run-both')).toBe(false); // nor do the other sections
        expect(await page.inputValue('#model-tokens')).toBe(bad);
      }
      await setField(page, 'model-tokens', '4');
      expect(await page.getAttribute('#model-tokens', 'aria-invalid')).toBe('false');
      expect(await page.isVisible('#model-tokens-error')).toBe(false);
      expect(await page.isVisible('#model-blocked')).toBe(false);
      expect(await page.isDisabled('#model-run')).toBe(false);
    });
  }

  it('continues the prompt with each cache: three columns side by side, texts, tokens/s and the divergence marker agree with the ids', { timeout: 2 * RUN_TIMEOUT_MS }, async () => {
    const { page } = suite.served;
    await page.setViewportSize(DESKTOP);
    await setField(page, 'model-tokens', '4');
    const started = Date.now();
    const done = clickAndWait(page, 'model-run', 2 * RUN_TIMEOUT_MS);
    await page.waitForSelector('#model-cancel:not([hidden])');
    expect(await page.isDisabled('#model-prompt')).toBe(true); // the form is locked during a run
    expect(await page.isDisabled('#run-both')).toBe(true); // one run at a time on the page
    expect(await done).toMatch(/^Done in/);
    console.info(`model section, 3 methods × 4 tokens (model fetched and uploaded): ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(await page.isVisible('#error-panel')).toBe(false);
    expect(await page.isVisible('#model-cancel')).toBe(false);
    expect(await page.textContent('#model-prompt-shown')).toMatch(/^Prompt "NAME\\n\\n" \(\d+ tokens with <bos>\), continued greedily by 4 tokens/);

    const columns = await readColumns(page);
    expect(columns.map((c) => c.method)).toEqual(METHOD_IDS);
    const fp16 = columns[0].ids!;
    for (const c of columns) {
      expect(c.state, c.method).toBe('done');
      expect(c.ids, c.method).toHaveLength(4);
      expect(c.text.length, c.method).toBeGreaterThan(0);
      expect(c.text, c.method).toBe(tokenizer.decode(c.ids!)); // the column shows the ids it generated
      expect(Number.isFinite(c.tokensPerS) && c.tokensPerS > 0, `${c.method}: ${c.tokensPerS}`).toBe(true);
      if (c.method === 'fp16') {
        expect(c.diverge).toBeNull();
        expect(c.marks).toEqual([]);
        continue;
      }
      const at = firstDivergence(fp16, c.ids!);
      expect(c.diverge, c.method).toBe(at === null ? 'none' : String(at));
      if (at === null) {
        expect(c.marks, c.method).toEqual([]);
        expect(c.text).toBe(columns[0].text);
      } else {
        expect(c.marks, c.method).toHaveLength(1);
        expect(c.marks[0]).toBe(tokenizer.decode([c.ids![at]]));
        expect(c.beforeMark).toBe(tokenizer.decode(fp16.slice(0, at)));
        expect(columns[0].text.startsWith(c.beforeMark!)).toBe(true);
      }
    }
    // side by side: one row of three
    expect(new Set(columns.map((c) => Math.round(c.box.y))).size).toBe(1);
    expect(columns[0].box.x).toBeLessThan(columns[1].box.x);
    expect(columns[1].box.x).toBeLessThan(columns[2].box.x);
    // a software adapter says that its tokens/s mean nothing
    const software = /Software adapter\s*yes/.test((await page.textContent('#gpu-details')) ?? '');
    expect(await page.isVisible('#model-caveat')).toBe(software);
    if (software) expect(await page.textContent('#model-caveat')).toMatch(/tokens\/s below are not meaningful/);
  });

  it('once the model is loaded, a prompt too long for the tokens asked is refused as it is typed', async () => {
    const { page } = suite.served;
    const prompt = '=head1 DESCRIPTION\n\n' + 'The quick brown fox jumps over the lazy dog. '.repeat(20);
    const promptTokens = 1 + tokenizer.encode(prompt).length;
    expect(promptTokens + 256 - 1).toBeGreaterThan(512); // too long with 256 tokens
    await setField(page, 'model-prompt', prompt);
    await setField(page, 'model-tokens', '256');
    const expected = contextProblem(promptTokens, 256, 512)!;
    expect(expected.field).toBe('model-tokens');
    expect(expected.message).toMatch(/^Tokens to generate: at most \d+ after this prompt/);
    expect(await page.textContent('#model-tokens-error')).toBe(expected.message);
    expect(await page.isDisabled('#model-run')).toBe(true);
    expect(await page.textContent('#model-blocked')).toContain(expected.message);
    // a prompt that fills the context by itself is the prompt's problem, not the count's
    const huge = 'The quick brown fox jumps over the lazy dog. '.repeat(80);
    const hugeTokens = 1 + tokenizer.encode(huge).length;
    expect(hugeTokens).toBeGreaterThan(512);
    await setField(page, 'model-prompt', huge);
    const promptProblem = contextProblem(hugeTokens, 256, 512)!;
    expect(promptProblem.field).toBe('model-prompt');
    expect(await page.textContent('#model-prompt-error')).toBe(promptProblem.message);
    expect(promptProblem.message).toMatch(/^The prompt is too long: \d+ tokens with <bos>.*at most 512 tokens/);
    expect(await page.isVisible('#model-tokens-error')).toBe(false);
    expect(await page.isDisabled('#model-run')).toBe(true);
    await setField(page, 'model-prompt', '=head1 NAME');
    expect(await page.isDisabled('#model-run')).toBe(false);
    expect(await page.isVisible('#model-prompt-error')).toBe(false);
    await setField(page, 'model-tokens', '4');
  });

  it('Cancel keeps the methods that finished and marks the others', { timeout: 2 * RUN_TIMEOUT_MS }, async () => {
    const { page } = suite.served;
    await setField(page, 'model-tokens', '48');
    await page.click('#model-run');
    await page.waitForSelector('#model-columns .model-column[data-method="fp16"][data-state="done"]', { timeout: RUN_TIMEOUT_MS });
    await page.click('#model-cancel');
    await page.waitForFunction(() => /^(Cancelled|Done in|The run stopped)/.test(document.getElementById('model-progress-text')?.textContent ?? ''), null, { timeout: RUN_TIMEOUT_MS });
    expect(await page.textContent('#model-progress-text')).toBe('Cancelled. The methods that finished stay below.');
    const columns = await readColumns(page);
    expect(columns[0].state).toBe('done');
    expect(columns[0].ids).toHaveLength(48);
    expect(columns.some((c) => c.state === 'cancelled')).toBe(true);
    for (const c of columns.filter((x) => x.state === 'cancelled')) expect(c.ids).toBeNull();
    expect(await page.isDisabled('#model-run')).toBe(false);
    expect(await page.isVisible('#error-panel')).toBe(false);
    await setField(page, 'model-tokens', '4');
  });

  it('the perplexity button fills the table as each method finishes: FP16 KV within 0.5 % of PyTorch, INT4 above it', { timeout: PPL_TIMEOUT_MS + 10_000 }, async () => {
    const { page } = suite.served;
    await recordPerplexityRows(page);
    const started = Date.now();
    expect(await clickAndWait(page, 'model-ppl', PPL_TIMEOUT_MS)).toMatch(/^Done in/);
    console.info(`model section, quick-slice perplexity of 3 methods × 256 tokens: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(await page.evaluate(() => (window as unknown as { pplRows: number[] }).pplRows)).toEqual([0, 1, 2, 3]);
    const table = await readTable(page, 'model-ppl-table');
    expect(table.keys).toEqual(['method', 'perplexity', 'vs_fp16', 'vs_pytorch', 'bits_per_element', 'tokens_per_s']);
    expect(table.rows.map((r) => r.texts.method)).toEqual(MODEL_METHODS.map((m) => m.displayName));
    const ppl = columnNumbers(table, 'perplexity');
    expect(ppl.every((p) => Number.isFinite(p) && p > 1), `${ppl}`).toBe(true);
    // model/README.md: the WGSL forward pass with FP16 KV is within 0.5 % of PyTorch's fp32 perplexity
    expect(Math.abs(columnNumbers(table, 'vs_pytorch')[0])).toBeLessThan(0.5);
    expect(table.rows[0].values.vs_fp16).toBeNull();
    expect(ppl[1]).toBeGreaterThan(ppl[0]); // naive INT4 costs perplexity
    const deltas = columnNumbers(table, 'vs_fp16').slice(1);
    deltas.forEach((d, i) => expect(d).toBeCloseTo(100 * (ppl[i + 1] / ppl[0] - 1), 6));
    expect(await page.textContent('#model-ppl-summary')).toMatch(/Quick slice: the first 256 tokens of the held-out text.*PyTorch's fp32 perplexity \(exact K\/V\) is \d/);
    expect(await page.isVisible('#error-panel')).toBe(false);
  });

  it('at phone width the columns stack, and nothing in the section is wider than its box', async () => {
    const { page } = suite.served;
    await page.setViewportSize(PHONE);
    try {
      await page.waitForTimeout(100);
      const columns = await readColumns(page);
      expect(columns).toHaveLength(3);
      expect(new Set(columns.map((c) => Math.round(c.box.x))).size).toBe(1);
      expect(columns[0].box.y).toBeLessThan(columns[1].box.y);
      expect(columns[1].box.y).toBeLessThan(columns[2].box.y);
      expect(await overflows(page, 'model')).toEqual([]);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    } finally {
      await page.setViewportSize(DESKTOP);
    }
  });

  it('a link opens with its prompt and token count; an edit rewrites the address in place, and the new link reproduces it', async () => {
    const prompt = '=item B<foo>\n\tmy $x = "50% ü"; # & + ?';
    const page = await suite.served.openAnother(`?preset=tiny-d64&model-prompt=${encodeURIComponent(prompt)}&model-tokens=7`);
    try {
      expect(await page.inputValue('#model-prompt')).toBe(prompt);
      expect(await page.inputValue('#model-tokens')).toBe('7');
      expect(await page.isVisible('#url-notice')).toBe(false);
      expect(await page.getAttribute('#model-prompt', 'aria-invalid')).toBe('false');
      const entries = await page.evaluate(() => history.length);
      await page.fill('#model-prompt', 'my $y =');
      await waitForQuery(page, 'model-prompt', 'my $y =');
      await setField(page, 'model-tokens', '9');
      await waitForQuery(page, 'model-tokens', '9');
      // a value the form refuses stays out of the address: it keeps the last usable one
      await page.fill('#model-prompt', 'a\u0007b');
      expect(await page.textContent('#model-prompt-error')).toBe('The prompt must not contain U+0007, a control character (tab and newline are the only ones allowed): it has one at character 2.');
      expect(await page.textContent('#model-blocked')).toContain('U+0007');
      await setField(page, 'model-tokens', '5');
      await waitForQuery(page, 'model-tokens', '5');
      const url = new URL(page.url());
      expect(Object.fromEntries(url.searchParams)).toMatchObject({ 'model-prompt': 'my $y =', 'model-tokens': '5', preset: 'tiny-d64', 'sim-regime': 'short' });
      expect(await page.evaluate(() => history.length)).toBe(entries);
      const other = await suite.served.openAnother(url.search);
      try {
        expect(await other.inputValue('#model-prompt')).toBe('my $y =');
        expect(await other.inputValue('#model-tokens')).toBe('5');
        expect(await other.inputValue('#preset')).toBe('tiny-d64');
        expect(new URL(other.url()).search).toBe(url.search);
      } finally {
        await other.close();
      }
    } finally {
      await page.close();
    }
  });

  it('a prompt too long for the link stays out of the address with a note under the field, readable at phone width; a shorter one goes back in', async () => {
    const long = '快速的棕色狐狸跳过了懒狗。'.repeat(30); // 390 characters, 3,510 bytes encoded
    const page = await suite.served.openAnother('?model-prompt=my+%24x+%3D&model-tokens=6');
    try {
      await page.setViewportSize(PHONE);
      expect(await page.inputValue('#model-prompt')).toBe('my $x =');
      expect(await page.isVisible('#model-prompt-link')).toBe(false);
      expect(await page.getAttribute('#model-prompt', 'aria-describedby')).toContain('model-prompt-link');
      await page.fill('#model-prompt', long);
      await page.waitForFunction(() => {
        const q = new URLSearchParams(location.search);
        return !q.has('model-prompt') && q.get('model-tokens') === '6';
      }, null, { timeout: 10_000, polling: 50 });
      expect(await page.textContent('#model-prompt-link')).toBe(
        "This prompt is too long to keep in the page's link (3,510 bytes encoded, at most 2,000); the link opens with the default prompt.",
      );
      expect(await page.getAttribute('#model-prompt', 'aria-invalid')).toBe('false'); // a note, not a problem
      expect(await page.isVisible('#model-blocked')).toBe(false);
      // readable at 390 px: wrapped inside the field, on screen, at a legible size
      const note = await page.$eval('#model-prompt-link', (e) => {
        const r = e.getBoundingClientRect();
        const field = e.closest('.field')!.getBoundingClientRect();
        return { left: r.left, right: r.right, height: r.height, fieldLeft: field.left, fieldRight: field.right, fontPx: parseFloat(getComputedStyle(e).fontSize), opacity: Number(getComputedStyle(e).opacity) };
      });
      expect(note.left).toBeGreaterThanOrEqual(note.fieldLeft - 1);
      expect(note.right).toBeLessThanOrEqual(Math.min(note.fieldRight, PHONE.width) + 1);
      expect(note.height).toBeGreaterThan(note.fontPx); // wrapped over lines, not cut to one
      expect(note.fontPx).toBeGreaterThanOrEqual(12);
      expect(note.opacity).toBeGreaterThanOrEqual(0.8);
      expect(await overflows(page, 'model')).toEqual([]);
      // the address the page wrote opens with the default prompt, as the note says
      const other = await suite.served.openAnother(new URL(page.url()).search);
      try {
        expect(await other.inputValue('#model-prompt')).toBe(DEFAULT_MODEL_SETTINGS.prompt);
        expect(await other.inputValue('#model-tokens')).toBe('6');
      } finally {
        await other.close();
      }
      await page.fill('#model-prompt', long.slice(0, 100)); // 900 bytes
      await waitForQuery(page, 'model-prompt', long.slice(0, 100));
      expect(await page.isVisible('#model-prompt-link')).toBe(false);
      expect(await page.textContent('#model-prompt-link')).toBe('');
    } finally {
      await page.close();
    }
  });

  it('a link with a 100 kB prompt, control characters, bytes that are not UTF-8 or a count out of range says so, and shows the defaults', async () => {
    const page = await suite.served.openAnother();
    try {
      // The preview server (Node) refuses a request line over 16 KiB, as many servers do: the page itself still gets such a link.
      const home = new URL('/', page.url()).href;
      await page.route((url) => url.search.length > 16_000, async (route) => route.fulfill({ response: await route.fetch({ url: home }) }));
      for (const [query, expected] of [
        [`?model-prompt=${'a'.repeat(100_000)}&model-tokens=999`, [
          `Ignored model-prompt="${'a'.repeat(40)}"… (100,000 characters): the prompt must be at most 4,000 characters (it has 100,000).`,
          'Ignored model-tokens="999": expected an integer in [1, 256].',
        ]],
        ['?model-prompt=ab%07c&model-tokens=0', [
          String.raw`Ignored model-prompt="ab\u0007c": the prompt must not contain U+0007, a control character (tab and newline are the only ones allowed): it has one at character 3.`,
          'Ignored model-tokens="0": expected an integer in [1, 256].',
        ]],
        ['?model-prompt=caf%C3&model-tokens=12abc', [
          'Ignored model-prompt="caf\uFFFD": the prompt must not contain U+FFFD, the mark of bytes that were not UTF-8 (in a link: a percent-encoding cut short): it has one at character 4.',
          'Ignored model-tokens="12abc": expected an integer in [1, 256].',
        ]],
      ] as const) {
        await page.goto(new URL(query, home).href);
        await page.waitForSelector('#url-notice:not([hidden])');
        expect(await page.$$eval('#url-notice p', (ps) => ps.map((p) => p.textContent)), query.slice(0, 60)).toEqual(expected);
        expect(await page.inputValue('#model-prompt')).toBe(DEFAULT_MODEL_SETTINGS.prompt);
        expect(await page.inputValue('#model-tokens')).toBe('32');
        expect(await page.getAttribute('#model-prompt', 'aria-invalid')).toBe('false');
        expect(await page.getAttribute('#model-tokens', 'aria-invalid')).toBe('false');
      }
    } finally {
      await page.close();
    }
  });

  it('weights over the GPU\'s limits stop the run with a readable message naming the buffer, its size and the limit', async () => {
    // Chrome grants no binding limit below 128 MiB (the weights' largest buffer is 3 MiB), so this
    // page's device reports 2 MiB: a small GPU's limit; every buffer the page makes is still real.
    const page = await suite.served.openAnother('', () => {
      const real = Object.getOwnPropertyDescriptor(GPUDevice.prototype, 'limits')!.get!;
      Object.defineProperty(GPUDevice.prototype, 'limits', {
        get(this: GPUDevice) {
          const limits = real.call(this) as GPUSupportedLimits;
          return new Proxy(limits, { get: (target, key) => (key === 'maxStorageBufferBindingSize' ? 2 * 2 ** 20 : target[key as keyof GPUSupportedLimits]) });
        },
      });
    });
    try {
      await waitForGpu(page);
      expect(await page.textContent('#gpu-details')).toMatch(/maxStorageBufferBindingSize\s*2\.00 MiB/);
      expect(await clickAndWait(page, 'model-run')).toBe('The run stopped with an error (see above).');
      expect(await page.textContent('#error-panel h2')).toBe('Too big for this GPU');
      expect(await page.textContent('#error-panel .error-message')).toBe(
        "the model's weights (model/run/model.safetensors) do not fit this GPU: model.embed_tokens needs 3.00 MiB, more than this device's maxStorageBufferBindingSize of 2.00 MiB; at most 66.7% of this size would fit",
      );
      const panel = (await page.textContent('#error-panel')) ?? '';
      expect(panel).toContain("The model's weights and its small KV cache must fit this adapter's buffer limits");
      expect(panel).not.toMatch(/\bat \S+:\d+|Error:|gpu-model/); // no stack trace or source file
      expect(await page.isVisible('#model-generation')).toBe(false);
      expect(await page.isDisabled('#model-run')).toBe(false);
    } finally {
      await page.close();
    }
  });

  it('a model file missing from the server, or answered by a web page, is named in a clear error', async () => {
    // A fresh page: the model is fetched again (the first page keeps it loaded).
    const page = await suite.served.openAnother();
    try {
      await waitForGpu(page);
      await page.route(/\/assets\/model-[^/]*\.safetensors$/, (route) => route.fulfill({ status: 404, body: 'not here' }));
      expect(await clickAndWait(page, 'model-run')).toBe('The run stopped with an error (see above).');
      expect(await page.textContent('#error-panel h2')).toBe("The trained model's files cannot be used");
      expect(await page.textContent('#error-panel .error-message')).toMatch(/^model\/run\/model\.safetensors \(the F16 weights\) is not on this page's server \(HTTP 404/);
      expect(await page.textContent('#error-panel')).toContain('npm run build');
      await page.unroute(/\/assets\/model-[^/]*\.safetensors$/);
      await page.route(/\/assets\/model-[^/]*\.safetensors$/, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>index</title>' }));
      expect(await clickAndWait(page, 'model-run')).toBe('The run stopped with an error (see above).');
      expect(await page.textContent('#error-panel .error-message')).toMatch(/model\/run\/model\.safetensors \(the F16 weights\) is not on this page's server: it answered .* with a web page instead of the file/);
      expect(await page.isDisabled('#model-run')).toBe(false);
      expect(await page.isVisible('#model-generation')).toBe(false);
    } finally {
      await page.close();
    }
  });

  it('logs no console errors (beyond the 404 asked for)', () => {
    expect(suite.served.errors.filter((e) => !/404/.test(e))).toEqual([]);
  });
});

describe('the model files the page reads: refused by size before or while they arrive', () => {
  const asset = (bytes: number, maxBytes: number): ModelAsset => ({
    path: 'model/run/model.safetensors', what: 'the F16 weights', maxBytes, url: `data:application/octet-stream;base64,${Buffer.alloc(bytes).toString('base64')}`,
  });

  it('reads a file within its limit, and names the file, its size and the limit of one over it', async () => {
    expect(MODEL_ASSETS.weights.maxBytes).toBe(MAX_WEIGHTS_BYTES);
    expect((await fetchAsset(asset(3000, 4096), new AbortController().signal)).byteLength).toBe(3000);
    await expect(fetchAsset(asset(5000, 4096), new AbortController().signal)).rejects.toThrow(ModelFileError);
    await expect(fetchAsset(asset(5000, 4096), new AbortController().signal)).rejects.toThrow(
      /^model\/run\/model\.safetensors \(the F16 weights\) is (more than )?4\.9 KiB; the page reads at most 4\.0 KiB of it/,
    );
    expect(tooBigMessage(MODEL_ASSETS.weights, 80 * 2 ** 20)).toMatch(/is 80\.00 MiB; the page reads at most 64\.00 MiB of it\. .*use the CLI/);
  });

  it('gunzips the held-out text, and passes bytes that are not gzip through', async () => {
    const text = 'first document\fsecond';
    const gz = new Uint8Array(gzipSync(Buffer.from(text)));
    expect(new TextDecoder().decode(await gunzip(gz, 'x.gz'))).toBe(text);
    expect(new TextDecoder().decode(await gunzip(new TextEncoder().encode(text), 'x.gz'))).toBe(text);
    await expect(gunzip(Uint8Array.of(0x1f, 0x8b, 1, 2, 3), 'x.gz')).rejects.toThrow(/x\.gz: not a valid gzip file/);
  });
});

describe('the perplexity table, from given numbers (the README quick slice on SwiftShader)', () => {
  const result = (method: string, perplexity: number): PerplexityResult => ({
    method, perplexity, nllSum: 256 * Math.log(perplexity), targets: 256, loss: Math.log(perplexity), seconds: 25.6, tokensPerSecond: 10,
  });
  const results = [result('fp16', 7.639), result('int4', 7.945), result('int4-hadamard-b128', 7.84)];

  it('one row per method: perplexity, Δ vs FP16 KV, vs PyTorch, bits, tokens/s', () => {
    const rows = perplexityRows(results, 7.638, 128);
    expect(rows.map((r) => r.id)).toEqual(METHOD_IDS);
    expect(rows.map((r) => r.displayName)).toEqual(MODEL_METHODS.map((m) => m.displayName));
    expect(rows[0].vsFp16Percent).toBeNull();
    expect(rows[1].vsFp16Percent).toBeCloseTo(100 * (7.945 / 7.639 - 1), 10);
    expect(rows[2].vsReferencePercent).toBeCloseTo(100 * (7.84 / 7.638 - 1), 10);
    const cells = (software: boolean) => rows.map((r) => Object.fromEntries(perplexityColumns(software).map((c) => [c.key, (c.format ?? String)(c.value(r), r)])));
    expect(cells(false)).toEqual([
      { method: 'FP16', perplexity: '7.639', vs_fp16: '—', vs_pytorch: '+0.01 %', bits_per_element: '16', tokens_per_s: '10' },
      { method: 'INT4 (naive)', perplexity: '7.945', vs_fp16: '+4.01 %', vs_pytorch: '+4.02 %', bits_per_element: '4.25', tokens_per_s: '10' },
      { method: 'INT4 + Hadamard B=128', perplexity: '7.840', vs_fp16: '+2.63 %', vs_pytorch: '+2.64 %', bits_per_element: '4.25', tokens_per_s: '10' },
    ]);
    expect(perplexityColumns(true).find((c) => c.key === 'tokens_per_s')!.label).toMatch(/not meaningful/);
  });

  it('rows of a cancelled run: the ones that finished, and Δ vs FP16 only with FP16 among them', () => {
    expect(perplexityRows(results.slice(0, 1), 7.638, 128).map((r) => r.id)).toEqual(['fp16']);
    expect(perplexityRows(results.slice(1, 2), 7.638, 128)[0].vsFp16Percent).toBeNull();
    expect(formatPercent(-1.234)).toBe('−1.23 %');
    expect(formatPercent(null)).toBe('—');
  });
});
