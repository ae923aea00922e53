/**
 * The serving section end to end, in headless Chromium on WebGPU (SwiftShader without a GPU): the
 * DEFAULT serving configuration (1/64 of the short regime, a quarter MiB per layer of Llama-3.1-8B's
 * shape, caps 1, 2, 4, 8, 20 steps, 3 repeats of each run) run by one click, then the fits table, the
 * three charts (the throughput plot with the min–max over the repeats: whiskers on the canvas, values in
 * the legend, the values list and the aria-label), the runs table, the downloads, Cancel and the URL
 * state checked as a user would see them.
 */
import { describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { chartCanvas, chartHasInk, clickRunAndWait, columnNumbers, downloadText, readTable, readyPageForSuite, tableOverflows } from './page-helpers';

const METHODS = ['fp16', 'int4', 'int4-hadamard'];
const CAPS = [1, 2, 4, 8];
const RUNS = METHODS.length * CAPS.length;
const REPEATS = 3;
/** The default sweep: 12 runs × 3 repeats × 20 steps of Llama-3.1-8B's heads, ~70 s on SwiftShader alone. */
const SWEEP_TIMEOUT_MS = 300_000;

/** "1234 (1200–1260)" → its three numbers (uPlot legend, values list, aria-label: formatNumber text). */
function spreadTriples(text: string): { median: number; lo: number; hi: number }[] {
  const num = (t: string) => Number(t.replace(/,/g, ''));
  return [...text.matchAll(/([\d.,e+-]+) \(([\d.,e+-]+)–([\d.,e+-]+)\)/g)].map((m) => ({ median: num(m[1]), lo: num(m[2]), hi: num(m[3]) }));
}

/** The whiskers the throughput chart drew (canvas pixels) and, per whisker, whether its pixels have ink away from the median's dot. */
function whiskers(page: Page): Promise<{ series: number; x: number; top: number; bottom: number; inked: boolean }[]> {
  return page.evaluate(() => {
    const box = document.getElementById('sim-chart-throughput')!;
    const canvas = box.querySelector<HTMLCanvasElement>('.uplot canvas')!;
    const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    const alpha = (x: number, y: number) => pixels.data[4 * (Math.round(y) * canvas.width + Math.round(x)) + 3];
    const list = JSON.parse(box.dataset.spreadWhiskers ?? '[]') as { series: number; x: number; top: number; bottom: number }[];
    // The caps at both ends are drawn across the whisker: ink one pixel left and right of it at top and bottom.
    return list.map((w) => ({ ...w, inked: [w.top, w.bottom].every((y) => alpha(w.x - 2, y) > 0 && alpha(w.x + 2, y) > 0) }));
  });
}
/** Columns that hold a finite number in every run. */
const FINITE = [
  'cap', 'steps', 'finished', 'refused', 'preemptions', 'peak_running', 'mean_decode_batch', 'decode_tokens', 'decode_tokens_per_s',
  'output_tokens_per_s', 'median_step_us', 'append_ms', 'attention_ms', 'prefill_ms', 'mean_page_fraction', 'peak_page_fraction',
  'slot_utilisation', 'recomputed_tokens',
];
/** Of those, the ones every run that decoded makes positive. */
const POSITIVE = ['steps', 'decode_tokens', 'decode_tokens_per_s', 'output_tokens_per_s', 'median_step_us', 'attention_ms', 'mean_decode_batch'];

describe('the serving section (headless Chromium, WebGPU)', () => {
  const suite = readyPageForSuite('', { width: 1200, height: 900 });

  it('shows the default configuration and says what a step is and how to scale it', async () => {
    const { page } = suite.served;
    expect(await page.inputValue('#sim-regime')).toBe('short');
    expect(await page.inputValue('#sim-scale')).toBe(String(1 / 64));
    expect(await page.inputValue('#sim-budget')).toBe('0.25');
    expect(await page.inputValue('#sim-caps')).toBe('1,2,4,8');
    expect(await page.inputValue('#sim-steps')).toBe('20');
    expect(await page.inputValue('#sim-repeats')).toBe(String(REPEATS));
    for (const m of METHODS) expect(await page.isChecked(`#sim-method-${m}`)).toBe(true);
    expect(await page.textContent('#serving')).toMatch(/A step is one layer's KV append \+ paged decode attention/);
    const plan = await page.textContent('#sim-plan');
    expect(plan).toMatch(/12 runs of 20 steps, each repeated 3 times \(the plot shows the spread\), 16 requests of 4 in \/ 16 out, one layer of Llama-3\.1-8B/);
    expect(plan).toMatch(/For all 32 layers: ×32 memory and step time, tokens\/s ÷32/);
  });

  it('Tab moves from the serving controls to its run button', async () => {
    const { page } = suite.served;
    await page.focus('#sim-steps');
    let focused = '';
    for (let i = 0; i < 8 && focused !== 'sim-run'; i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement?.id ?? '');
    }
    expect(focused).toBe('sim-run');
  });

  it('runs the default sweep from one click, locking every control while it runs', { timeout: SWEEP_TIMEOUT_MS + 10_000 }, async () => {
    const { page } = suite.served;
    const started = Date.now();
    const run = clickRunAndWait(page, 'sim-run', SWEEP_TIMEOUT_MS);
    await page.waitForSelector('#sim-cancel:not([hidden])');
    expect(await page.isVisible('#sim-progress')).toBe(true);
    expect(await page.isDisabled('#sim-budget')).toBe(true);
    expect(await page.isDisabled('#run-both')).toBe(true);
    expect(await run).toMatch(/^Done in/);
    console.info(`default serving run: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(await page.isVisible('#sim-cancel')).toBe(false);
    expect(await page.isDisabled('#sim-run')).toBe(false);
    expect(await page.isVisible('#error-panel')).toBe(false);
  });

  it('INT4 fits more concurrency than FP16 in the same budget, and runs a larger batch at the largest cap', async () => {
    const fits = await readTable(suite.served.page, 'sim-fits');
    expect(fits.rows.map((r) => r.values.method)).toEqual(METHODS);
    const [fp16, int4, hadamard] = columnNumbers(fits, 'fits_at_full_length');
    expect(fp16).toBeGreaterThanOrEqual(1);
    expect(int4).toBeGreaterThan(fp16);
    expect(hadamard).toBe(int4); // the rotation costs no memory
    const runs = await readTable(suite.served.page, 'sim-table');
    const at = (method: string, cap: number, key: string) => Number(runs.rows.find((r) => r.values.method === method && r.values.cap === String(cap))!.values[key]);
    expect(at('int4', 8, 'mean_decode_batch')).toBeGreaterThan(at('fp16', 8, 'mean_decode_batch'));
  });

  it('the runs table holds every (method, cap), its figures finite numbers', async () => {
    const table = await readTable(suite.served.page, 'sim-table');
    expect(table.rows).toHaveLength(RUNS);
    expect(table.rows.map((r) => `${r.values.method}@${r.values.cap}`)).toEqual(METHODS.flatMap((m) => CAPS.map((c) => `${m}@${c}`)));
    for (const key of FINITE) {
      const values = columnNumbers(table, key);
      expect(values.every(Number.isFinite), `${key}: ${values}`).toBe(true);
      if (POSITIVE.includes(key)) expect(values.every((v) => v > 0), `${key}: ${values}`).toBe(true);
    }
    expect(await suite.served.page.textContent('#sim-summary')).toMatch(/regime short \(256 in \/ 1k out\) scaled ×1\/64 → 4 in \/ 16 out/);
  });

  it('draws the three uPlot charts (a sized canvas with ink, one legend entry per series)', async () => {
    for (const [box, series] of [['sim-chart-throughput', 3], ['sim-chart-pages', 3], ['sim-chart-running', 4]] as const) {
      const canvas = await chartCanvas(suite.served.page, box);
      expect(canvas, box).not.toBeNull();
      expect(canvas!.width * canvas!.height, box).toBeGreaterThan(0);
      expect(canvas!.boxWidth * canvas!.boxHeight, box).toBeGreaterThan(0);
      expect(canvas!.series, box).toBeGreaterThanOrEqual(series);
      expect(await chartHasInk(suite.served.page, box), box).toBe(true);
    }
    expect(await suite.served.page.textContent('#sim-chart-running')).toContain('cap 8');
  });

  it('the throughput plot draws the min–max over the 3 repeats: a whisker per point, inked, inside the y range, listed and announced', async () => {
    const { page } = suite.served;
    const drawn = await whiskers(page);
    expect(drawn).toHaveLength(RUNS);
    expect(new Set(drawn.map((w) => w.series))).toEqual(new Set([0, 1, 2]));
    for (const w of drawn) {
      expect(w.top, JSON.stringify(w)).toBeLessThanOrEqual(w.bottom); // hi above lo on the canvas
      expect(w.inked, JSON.stringify(w)).toBe(true);
    }
    // The values list and the aria-label give each point as "median (min–max)", min ≤ median ≤ max,
    // and they are the JSON's spread.
    const list = (await page.textContent('#sim-chart-throughput-values'))!;
    expect(list).toMatch(/^In parentheses: min–max over 3 repeats\./);
    const triples = spreadTriples(list);
    expect(triples).toHaveLength(RUNS);
    for (const t of triples) {
      expect(t.lo, JSON.stringify(t)).toBeLessThanOrEqual(t.median);
      expect(t.median, JSON.stringify(t)).toBeLessThanOrEqual(t.hi);
    }
    const aria = (await page.getAttribute('#sim-chart-throughput', 'aria-label'))!;
    expect(aria).toMatch(/median and min–max of 3 repeats\. Values with their min–max over 3 repeats in parentheses\./);
    expect(spreadTriples(aria)).toEqual(triples);
    const json = JSON.parse((await downloadText(page, '#sim-downloads a[download$=".json"]')).text);
    expect(json.repeats).toBe(REPEATS);
    const spreads = json.methods.flatMap((m: { runs: { repeats: unknown[]; spread: { decodeTokensPerSec: { min: number; median: number; max: number } } }[] }) => m.runs.map((r) => {
      expect(r.repeats).toHaveLength(REPEATS);
      return r.spread.decodeTokensPerSec;
    }));
    spreads.forEach((s: { min: number; median: number; max: number }, i: number) => {
      for (const [shown, exact] of [[triples[i].median, s.median], [triples[i].lo, s.min], [triples[i].hi, s.max]]) expect(Math.abs(shown - exact) / exact, `point ${i}`).toBeLessThan(0.005);
    });
    // The drawn y range holds every whisker's bounds.
    const range = await page.evaluate(() => ({ ...document.getElementById('sim-chart-throughput')!.dataset }));
    expect(Number(range.yMin)).toBeLessThanOrEqual(Math.min(...spreads.map((s: { min: number }) => s.min)));
    expect(Number(range.yMax)).toBeGreaterThanOrEqual(Math.max(...spreads.map((s: { max: number }) => s.max)));
  });

  it('hovering a point shows its median and min–max in the legend', async () => {
    const { page } = suite.served;
    // The middle series' whisker (not dodged) at the second cap: inside the plot area.
    const w = (await whiskers(page)).filter((x) => x.series === 1)[1];
    await page.locator('#sim-chart-throughput').scrollIntoViewIfNeeded();
    const box = (await page.locator('#sim-chart-throughput .u-over').boundingBox())!;
    const canvasBox = (await page.locator('#sim-chart-throughput .uplot canvas').boundingBox())!;
    const ratio = await page.evaluate(() => devicePixelRatio);
    // Canvas pixels → page coordinates (the .u-over overlay receives the pointer).
    await page.mouse.move(canvasBox.x + w.x / ratio, Math.min(box.y + box.height - 2, Math.max(box.y + 2, canvasBox.y + (w.top + w.bottom) / 2 / ratio)));
    await page.waitForFunction(() => /\(.+–.+\)/.test(document.querySelector('#sim-chart-throughput .u-legend')?.textContent ?? ''));
    // One value cell per series (after the x entry): "median (min–max)".
    const cells = await page.$$eval('#sim-chart-throughput .u-legend .u-series .u-value', (els) => els.slice(1).map((e) => e.textContent ?? ''));
    expect(cells).toHaveLength(METHODS.length);
    for (const cell of cells) {
      const [t] = spreadTriples(cell);
      expect(t, cell).toBeDefined();
      expect(t.lo <= t.median && t.median <= t.hi, cell).toBe(true);
    }
    await page.mouse.move(0, 0);
  });

  it('its tables fit their boxes at desktop and phone widths (key columns first, the rest under More columns)', async () => {
    const { page } = suite.served;
    await page.evaluate(() => document.querySelectorAll<HTMLDetailsElement>('#serving details.more-columns').forEach((d) => (d.open = true)));
    try {
      for (const width of [1400, 390]) {
        await page.setViewportSize({ width, height: 900 });
        await page.waitForTimeout(100);
        const tables = (await tableOverflows(page)).filter((t) => t.box.startsWith('sim-'));
        expect(tables.length, String(width)).toBe(3);
        for (const t of tables) expect(t.scroll, `${width}: ${t.box}`).toBeLessThanOrEqual(t.client);
      }
    } finally {
      await page.setViewportSize({ width: 1200, height: 900 });
    }
  });

  it('a budget that cannot be used (0) says why and disables the serving run, not the others', async () => {
    const { page } = suite.served;
    await page.fill('#sim-budget', '0');
    expect(await page.textContent('#sim-budget-error')).toMatch(/KV budget must be a number of MiB above 0/);
    expect(await page.isDisabled('#sim-run')).toBe(true);
    expect(await page.textContent('#sim-blocked')).toMatch(/Run is disabled: .*KV budget must be/);
    expect(await page.isDisabled('#run-both')).toBe(false);
    await page.fill('#sim-budget', '0.000001'); // a number, but it holds no page
    expect(await page.textContent('#sim-budget-error')).toMatch(/KV budget cannot be used: .*holds no fp16 page/);
    expect(await page.isDisabled('#sim-run')).toBe(true);
    await page.fill('#sim-budget', '0.25');
    expect(await page.isDisabled('#sim-run')).toBe(false);
    expect(await page.isVisible('#sim-blocked')).toBe(false);
    await page.fill('#sim-repeats', '0');
    expect(await page.textContent('#sim-repeats-error')).toMatch(/Repeats must be a whole number from 1 to 20/);
    expect(await page.isDisabled('#sim-run')).toBe(true);
    await page.fill('#sim-repeats', '3');
    expect(await page.isDisabled('#sim-run')).toBe(false);
  });

  it('a budget of 1 TiB per layer is refused before any allocation, naming the buffers this GPU binds and a budget that fits', async () => {
    const { page } = suite.served;
    await page.fill('#sim-budget', '1048576');
    expect(await page.isDisabled('#sim-run')).toBe(false); // a number of MiB the page takes; the GPU decides
    await page.click('#sim-run');
    await page.waitForSelector('#error-panel:not([hidden])', { timeout: 30_000 });
    expect(await page.textContent('#error-panel h2')).toBe('This configuration is not supported');
    const message = (await page.textContent('#error-panel .error-message'))!;
    expect(message).toMatch(/^a KV budget of 1024\.00 GiB \(\d+ fp16 pages\) needs a K pool of 512\.00 GiB \(and as much for V\) over \d+ storage buffers of ≤ [\d.]+ [GM]iB \(\w+\); limit \d+ buffers? per pool.*; try a budget ≤ [\d.]+ MiB/);
    expect(await page.evaluate(() => document.getElementById('sim-budget')!.classList.contains('flagged'))).toBe(true);
    expect(await page.textContent('#sim-progress-text')).not.toMatch(/^Done/);
    await page.fill('#sim-budget', '0.25');
    expect(await page.isVisible('#error-panel')).toBe(false); // a changed setting clears the stale error
  });

  it('exports the CLI JSON and the table as CSV', async () => {
    const { page } = suite.served;
    const json = JSON.parse((await downloadText(page, '#sim-downloads a[download$=".json"]')).text);
    expect(json.kind).toBe('simulate');
    expect(json.methods.map((m: { method: string }) => m.method)).toEqual(METHODS);
    expect(json.caps).toEqual(CAPS);
    const csv = (await downloadText(page, '#sim-downloads a[download$=".csv"]')).text.trim().split(/\r\n/);
    expect(csv[0].split(',')).toEqual(expect.arrayContaining(['decode_tokens_per_s', 'decode_tokens_per_s_min', 'decode_tokens_per_s_max', 'repeats']));
    expect(csv).toHaveLength(RUNS + 1);
  });

  it('cancels a sweep between runs and stays usable', async () => {
    const { page } = suite.served;
    await page.click('#sim-run');
    await page.click('#sim-cancel');
    await page.waitForFunction(() => /^(Cancelled|Done in)/.test(document.getElementById('sim-progress-text')?.textContent ?? ''), null, { timeout: 60_000 });
    expect(await page.textContent('#sim-progress-text')).toMatch(/^Cancelled/);
    expect(await page.isDisabled('#sim-run')).toBe(false);
    expect(await page.isVisible('#error-panel')).toBe(false);
  });

  it('keeps the serving configuration in the URL: a change is written, and the link reproduces it', async () => {
    const { page } = suite.served;
    await page.selectOption('#sim-regime', 'long');
    await page.selectOption('#sim-scale', String(1 / 128));
    await page.fill('#sim-budget', '2.5');
    await page.fill('#sim-caps', '4, 1,16');
    await page.fill('#sim-steps', '0');
    await page.fill('#sim-repeats', '5');
    await page.uncheck('#sim-method-int4');
    const url = new URL(page.url());
    expect(Object.fromEntries(url.searchParams)).toMatchObject({
      'sim-regime': 'long', 'sim-scale': '1/128', 'sim-budget': '2.5', 'sim-caps': '1,4,16', 'sim-steps': '0', 'sim-repeats': '5', 'sim-methods': 'fp16,int4-hadamard',
      preset: 'llama-3.1-8b', page: '16',
    });
    expect(await page.textContent('#sim-plan')).toMatch(/2 methods × 3 caps .* 32 requests of 128 in \/ 8 out/);
    const other = await suite.served.openAnother(url.search);
    try {
      expect(await other.inputValue('#sim-regime')).toBe('long');
      expect(await other.inputValue('#sim-scale')).toBe(String(1 / 128));
      expect(await other.inputValue('#sim-budget')).toBe('2.5');
      expect(await other.inputValue('#sim-caps')).toBe('1,4,16');
      expect(await other.inputValue('#sim-steps')).toBe('0');
      expect(await other.inputValue('#sim-repeats')).toBe('5');
      expect(await other.isChecked('#sim-method-int4')).toBe(false);
      expect(await other.isChecked('#sim-method-int4-hadamard')).toBe(true);
      expect(await other.isVisible('#url-notice')).toBe(false);
    } finally {
      await other.close();
    }
    const bad = await suite.served.openAnother('?sim-caps=0,x&sim-scale=3&sim-budget=2');
    try {
      await bad.waitForSelector('#url-notice:not([hidden])');
      const notice = await bad.textContent('#url-notice');
      expect(notice).toContain('sim-caps="0,x"');
      expect(notice).toContain('sim-scale="3"');
      expect(await bad.inputValue('#sim-caps')).toBe('1,2,4,8');
      expect(await bad.inputValue('#sim-budget')).toBe('2');
    } finally {
      await bad.close();
    }
  });

  it('logs no console errors', () => {
    expect(suite.served.errors).toEqual([]);
  });
});
