/**
 * The serving section end to end, in headless Chromium on WebGPU (SwiftShader without a GPU): the
 * DEFAULT serving configuration (1/64 of the short regime, a quarter MiB per layer of Llama-3.1-8B's
 * shape, caps 1, 2, 4, 8, 20 steps) run by one click, then the fits table, the three charts, the runs
 * table, the downloads, Cancel and the URL state checked as a user would see them.
 */
import { describe, expect, it } from 'vitest';
import { chartCanvas, chartHasInk, clickRunAndWait, columnNumbers, downloadText, readTable, readyPageForSuite, tableOverflows } from './page-helpers';

const METHODS = ['fp16', 'int4', 'int4-hadamard'];
const CAPS = [1, 2, 4, 8];
const RUNS = METHODS.length * CAPS.length;
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
    for (const m of METHODS) expect(await page.isChecked(`#sim-method-${m}`)).toBe(true);
    expect(await page.textContent('#serving')).toMatch(/A step is one layer's KV append \+ paged decode attention/);
    const plan = await page.textContent('#sim-plan');
    expect(plan).toMatch(/12 runs of 20 steps, 16 requests of 4 in \/ 16 out, one layer of Llama-3\.1-8B/);
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

  it('runs the default sweep from one click, locking every control while it runs', async () => {
    const { page } = suite.served;
    const started = Date.now();
    const run = clickRunAndWait(page, 'sim-run');
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
  });

  it('exports the CLI JSON and the table as CSV', async () => {
    const { page } = suite.served;
    const json = JSON.parse((await downloadText(page, '#sim-downloads a[download$=".json"]')).text);
    expect(json.kind).toBe('simulate');
    expect(json.methods.map((m: { method: string }) => m.method)).toEqual(METHODS);
    expect(json.caps).toEqual(CAPS);
    const csv = (await downloadText(page, '#sim-downloads a[download$=".csv"]')).text.trim().split(/\r\n/);
    expect(csv[0].split(',')).toContain('decode_tokens_per_s');
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
    await page.uncheck('#sim-method-int4');
    const url = new URL(page.url());
    expect(Object.fromEntries(url.searchParams)).toMatchObject({
      'sim-regime': 'long', 'sim-scale': '1/128', 'sim-budget': '2.5', 'sim-caps': '1,4,16', 'sim-steps': '0', 'sim-methods': 'fp16,int4-hadamard',
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
