/**
 * End to end through the UI, in headless Chromium on WebGPU (SwiftShader without a GPU): a small
 * accuracy comparison and a quick benchmark started by clicking, then the tables, plots, sorting,
 * downloads, URL state and cancellation (which keeps what finished) checked as a user would see them.
 */
import { describe, expect, it } from 'vitest';
import { chartCanvas, chartHasInk, clickRunAndWait, columnNumbers, downloadText, openAdvanced, readTable, readyPageForSuite, tableOverflows, waitForGpu } from './page-helpers';

/** Small enough for SwiftShader: tiny-d64 (Hq 16, Hkv 4, D 64), 2 sequences of 100 tokens (ragged over 8-token pages). */
const QUERY = '?preset=tiny-d64&workload=rope-outliers&seqs=2&ctx=100&page=8&block=32&rotv=0&methods=int4,hadamard,blocks&seed=7&quick=1';
/** fp16, int4, and every block dividing 64 (16, 32, 64; the chosen 32 among them). */
const ACCURACY_IDS = ['fp16', 'int4', 'int4-hadamard-b16', 'int4-hadamard-b32', 'int4-hadamard-b64'];
/** Concurrency 1, 2 at context 100, and context 32 at concurrency 2; three methods each. */
const BENCH_POINTS = 9;

const ACCURACY_NUMERIC = [
  'bits_per_element', 'compression_vs_fp16', 'rel_l2_vs_exact', 'cosine_vs_exact', 'max_abs_vs_exact', 'rel_l2_vs_fp16',
  'k_path_rel_l2', 'kl_mean', 'top_k_overlap', 'k_snr_db', 'v_snr_db', 'kernel_rel_l2', 'gpu_ms',
];
const BENCH_POSITIVE = ['append_us', 'attention_us', 'step_us', 'tokens_per_s', 'attention_gbps', 'pct_of_roofline', 'bytes_per_token', 'splits'];

describe('a run through the UI (headless Chromium, WebGPU)', () => {
  const suite = readyPageForSuite(QUERY, { width: 1200, height: 900 });

  it('reads the configuration from the URL into the controls', async () => {
    const { page } = suite.served;
    expect(await page.inputValue('#preset')).toBe('tiny-d64');
    expect(await page.inputValue('#workload')).toBe('rope-outliers');
    expect(await page.inputValue('#seqs')).toBe('2');
    expect(await page.inputValue('#context')).toBe('100');
    expect(await page.inputValue('#page-size')).toBe('8');
    expect(await page.inputValue('#block')).toBe('32');
    expect(await page.inputValue('#seed')).toBe('7');
    expect(await page.isChecked('#rotate-v')).toBe(false);
    expect(await page.isChecked('#method-int4')).toBe(true);
    expect(await page.isChecked('#method-signs')).toBe(false);
    expect(await page.isVisible('#url-notice')).toBe(false);
    expect(await page.textContent('#run-plan')).toContain(`Throughput: ${BENCH_POINTS} timed points`);
  });

  it('runs accuracy and throughput from one click, with progress and a Cancel button while it runs', async () => {
    const { page } = suite.served;
    const run = clickRunAndWait(page, 'run-both');
    await page.waitForSelector('#cancel:not([hidden])');
    expect(await page.isVisible('#progress')).toBe(true);
    expect(await page.isDisabled('#run-accuracy')).toBe(true);
    expect(await page.isDisabled('#seqs')).toBe(true); // controls are locked during a run
    expect(await run).toMatch(/^Done in/);
    expect(await page.isVisible('#cancel')).toBe(false);
    expect(await page.isDisabled('#run-accuracy')).toBe(false);
    expect(await page.isVisible('#error-panel')).toBe(false);
  });

  it('the accuracy table holds one row per method, every metric a finite number', async () => {
    const table = await readTable(suite.served.page, 'acc-table');
    expect(table.rows.map((r) => r.values.id)).toEqual(ACCURACY_IDS);
    for (const key of ACCURACY_NUMERIC) {
      const values = columnNumbers(table, key);
      expect(values.every(Number.isFinite), `${key}: ${values}`).toBe(true);
    }
    // The numbers mean something: FP16 is far closer to exact than naive INT4.
    const relL2 = columnNumbers(table, 'rel_l2_vs_exact');
    expect(relL2[0]).toBeLessThan(relL2[1] / 10);
    expect(await suite.served.page.textContent('#acc-summary')).toContain('rope-outliers');
  });

  it('the throughput table holds every point, measured, with positive finite figures', async () => {
    const table = await readTable(suite.served.page, 'bench-table');
    expect(table.rows).toHaveLength(BENCH_POINTS);
    expect(table.rows.map((r) => r.texts.status)).toEqual(Array(BENCH_POINTS).fill('ok'));
    for (const key of BENCH_POSITIVE) {
      const values = columnNumbers(table, key);
      expect(values.every((v) => Number.isFinite(v) && v > 0), `${key}: ${values}`).toBe(true);
    }
    expect(await suite.served.page.textContent('#bench-summary')).toMatch(/Roofline: [0-9.]+ GB\/s, a read-only stream/);
  });

  it('draws the six uPlot charts (a sized canvas with ink, one legend entry per series)', async () => {
    const charts = [
      ['acc-chart-methods', 1], ['acc-chart-blocks', 3], ['acc-chart-pareto', ACCURACY_IDS.length], ['acc-chart-channels', 2],
      ['bench-chart-batch', 3], ['bench-chart-context', 3],
    ] as const;
    for (const [box, series] of charts) {
      const canvas = await chartCanvas(suite.served.page, box);
      expect(canvas, box).not.toBeNull();
      expect(canvas!.width * canvas!.height, box).toBeGreaterThan(0);
      expect(canvas!.boxWidth * canvas!.boxHeight, box).toBeGreaterThan(0);
      expect(canvas!.series, box).toBeGreaterThanOrEqual(series);
      expect(await chartHasInk(suite.served.page, box), box).toBe(true);
    }
    // The metric selector redraws with another metric.
    await suite.served.page.selectOption('#acc-metric', 'klMean');
    expect(await suite.served.page.textContent('#acc-chart-methods')).toContain('KL');
  });

  it('sorts a table from the keyboard (Tab to a header, Enter, Space)', async () => {
    const { page } = suite.served;
    const header = page.locator('#acc-table button.sort[data-key="rel_l2_vs_exact"]');
    await header.focus();
    await page.keyboard.press('Enter');
    const th = page.locator('#acc-table th:has(button[data-key="rel_l2_vs_exact"])');
    expect(await th.getAttribute('aria-sort')).toBe('ascending');
    const up = columnNumbers(await readTable(page, 'acc-table'), 'rel_l2_vs_exact');
    expect(up).toEqual([...up].sort((a, b) => a - b));
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-key'))).toBe('rel_l2_vs_exact');
    await page.keyboard.press('Space');
    expect(await th.getAttribute('aria-sort')).toBe('descending');
    const down = columnNumbers(await readTable(page, 'acc-table'), 'rel_l2_vs_exact');
    expect(down).toEqual([...up].reverse());
  });

  it('exports JSON and CSV as downloads built from Blobs', async () => {
    const { page } = suite.served;
    const accJson = await downloadText(page, '#acc-downloads a[download$=".json"]');
    expect(accJson.href).toMatch(/^blob:/);
    const report = JSON.parse(accJson.text);
    expect(report.format).toBe('webgpu-int4-kv/accuracy');
    expect(report.methods.map((m: { id: string }) => m.id)).toEqual(ACCURACY_IDS);
    const accCsv = await downloadText(page, '#acc-downloads a[download$=".csv"]');
    const lines = accCsv.text.trim().split(/\r\n/);
    expect(lines[0].split(',')).toContain('rel_l2_vs_exact');
    expect(lines).toHaveLength(ACCURACY_IDS.length + 1);
    const benchJson = JSON.parse((await downloadText(page, '#bench-downloads a[download$=".json"]')).text);
    expect(benchJson.schema).toBe('webgpu-int4-kv/bench-report@1');
    expect(benchJson.points).toHaveLength(BENCH_POINTS);
    // A real download, as a click gives it.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#bench-downloads a[download$=".csv"]')]);
    expect(download.suggestedFilename()).toMatch(/^bench-.*\.csv$/);
  });

  it('is readable on a phone: no sideways scrolling of the page, every table fits its box (cards, no hidden columns)', async () => {
    const { page } = suite.served;
    await page.setViewportSize({ width: 375, height: 800 });
    try {
      await page.waitForTimeout(100); // ResizeObserver redraws the charts
      const layout = await page.evaluate(() => ({
        page: document.documentElement.scrollWidth,
        viewport: window.innerWidth,
        chart: document.querySelector('#bench-chart-batch .uplot')!.getBoundingClientRect().width,
        cellLabel: getComputedStyle(document.querySelector('#bench-table tbody td')!, '::before').content,
      }));
      expect(layout.page).toBeLessThanOrEqual(layout.viewport);
      expect(layout.chart).toBeLessThanOrEqual(layout.viewport);
      expect(layout.cellLabel).toBe('"Conc."'); // each cell of a card says which column it is
      for (const t of await tableOverflows(page)) expect(t.scroll, t.box).toBeLessThanOrEqual(t.client);
    } finally {
      await page.setViewportSize({ width: 1200, height: 900 });
    }
  });

  it('keeps the configuration in the URL: a change is written, and the link reproduces it', async () => {
    const { page } = suite.served;
    await page.selectOption('#preset', 'llama-3.1-8b');
    await page.fill('#context', '300');
    await page.locator('#context').dispatchEvent('change');
    await openAdvanced(page);
    await page.check('#rotate-v');
    await page.uncheck('#method-blocks');
    await page.selectOption('#block', '64');
    const url = new URL(page.url());
    expect(Object.fromEntries(url.searchParams)).toMatchObject({ preset: 'llama-3.1-8b', ctx: '300', rotv: '1', methods: 'int4,hadamard', block: '64', seqs: '2', page: '8' });
    const other = await suite.served.openAnother(url.search);
    try {
      expect(await other.inputValue('#preset')).toBe('llama-3.1-8b');
      expect(await other.inputValue('#context')).toBe('300');
      expect(await other.inputValue('#block')).toBe('64');
      expect(await other.isChecked('#rotate-v')).toBe(true);
      expect(await other.isChecked('#method-blocks')).toBe(false);
      expect(await other.inputValue('#page-size')).toBe('8');
      expect(new URL(other.url()).search).toBe(url.search);
    } finally {
      await other.close();
    }
    // Back to the small run for the next test.
    await page.goto(new URL(QUERY, page.url()).href);
    await waitForGpu(page);
  });

  it('cancels a run between steps, keeps the points that finished, and stays usable', async () => {
    const { page } = suite.served;
    await page.click('#run-bench');
    await page.waitForSelector('#bench-table tbody tr', { timeout: 60_000 });
    await page.click('#cancel');
    await page.waitForFunction(() => /^(Cancelled|Done in)/.test(document.getElementById('progress-text')?.textContent ?? ''), null, { timeout: 60_000 });
    expect(await page.textContent('#progress-text')).toMatch(/^Cancelled/);
    const kept = await readTable(page, 'bench-table');
    expect(kept.rows.length).toBeGreaterThanOrEqual(1);
    expect(kept.rows.length).toBeLessThan(BENCH_POINTS);
    expect(columnNumbers(kept, 'step_us').every((v) => v > 0)).toBe(true);
    expect(await page.textContent('#bench-summary')).toMatch(/Cancelled after \d+ of 9 points/);
    expect(await page.isDisabled('#run-bench')).toBe(false);
    expect(await page.isVisible('#error-panel')).toBe(false);
  });

  it('logs no console errors', () => {
    expect(suite.served.errors).toEqual([]);
  });
});
