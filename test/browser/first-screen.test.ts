/**
 * The page as a new user meets it, at a desktop (1400 × 900) and a phone (390 × 844) viewport, in
 * headless Chromium on WebGPU (SwiftShader without a GPU): Run and the three main settings in the
 * first screen; after one click a headline card there too, holding the numbers of this run; rows and
 * bench points appearing as they finish; tables that fit their box; charts whose values a reader can
 * check; and a Cancel that keeps what finished.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { clickRunAndWait, columnNumbers, readTable, readyPageForSuite, tableOverflows, type TableData } from './page-helpers';

/** Small enough for SwiftShader: tiny-d64 (D 64), 2 sequences of 100 tokens; 5 accuracy methods, 9 bench points. */
const QUERY = '?preset=tiny-d64&workload=outlier-keys&seqs=2&ctx=100&page=8&block=32&rotv=0&methods=int4,hadamard,blocks&seed=7&quick=1';
const ACCURACY_IDS = ['fp16', 'int4', 'int4-hadamard-b16', 'int4-hadamard-b32', 'int4-hadamard-b64'];
const BENCH_POINTS = 9;
const DESKTOP = { width: 1400, height: 900 };
const PHONE = { width: 390, height: 844 };

/** The bottom edge of `selector` in page coordinates, with the page scrolled to the top. */
async function bottomOf(page: Page, selector: string): Promise<number> {
  await page.evaluate(() => window.scrollTo(0, 0));
  const box = await page.locator(selector).boundingBox();
  if (!box) throw new Error(`${selector} is not laid out`);
  return box.y + box.height;
}

/** Records the number of rows of each results table every time it changes (set up before a run). */
async function recordRowCounts(page: Page): Promise<void> {
  await page.evaluate(() => {
    const counts: Record<string, number[]> = { 'acc-table': [], 'bench-table': [] };
    (window as unknown as { rowCounts: typeof counts }).rowCounts = counts;
    for (const id of Object.keys(counts)) {
      const box = document.getElementById(id)!;
      new MutationObserver(() => {
        const n = box.querySelectorAll(':scope > .table-scroll tbody tr').length;
        const seen = counts[id];
        if (seen[seen.length - 1] !== n) seen.push(n);
      }).observe(box, { childList: true, subtree: true });
    }
  });
}

function rowCounts(page: Page): Promise<Record<string, number[]>> {
  return page.evaluate(() => (window as unknown as { rowCounts: Record<string, number[]> }).rowCounts);
}

/** The stat's data-* numbers (data-state as a string). */
function statData(page: Page, id: string): Promise<Record<string, string>> {
  return page.evaluate((statId) => ({ ...document.getElementById(statId)!.dataset }) as Record<string, string>, id);
}

function valueOf(table: TableData, rowKey: string, rowValue: string, key: string): number {
  const row = table.rows.find((r) => r.values[rowKey] === rowValue || r.texts[rowKey] === rowValue);
  if (!row) throw new Error(`no row ${rowKey}=${rowValue}`);
  return Number(row.values[key]);
}

describe('the first screen, at a desktop and a phone width', () => {
  const suite = readyPageForSuite(QUERY, DESKTOP);

  for (const viewport of [DESKTOP, PHONE]) {
    it(`holds Run and the three main settings, the rest behind Advanced (${viewport.width} × ${viewport.height})`, async () => {
      const { page } = suite.served;
      await page.setViewportSize(viewport);
      for (const selector of ['h1', '#preset', '#seqs', '#context', '#run-both', '#advanced > summary']) {
        expect(await bottomOf(page, selector), selector).toBeLessThanOrEqual(viewport.height);
      }
      expect(await page.getAttribute('#advanced', 'open')).toBeNull();
      for (const hidden of ['#block', '#page-size', '#workload', '#seed', '#method-int4']) expect(await page.isVisible(hidden), hidden).toBe(false);
      expect(await page.textContent('#advanced > summary')).toMatch(/^Advanced/);
    });
  }

  it('one click: rows and bench points appear one by one, and the headline fills in the first screen with this run\'s numbers', async () => {
    const { page } = suite.served;
    await page.setViewportSize(DESKTOP);
    await recordRowCounts(page);
    const run = clickRunAndWait(page, 'run-both');
    await page.waitForSelector('#headline:not([hidden])');
    expect(await page.getAttribute('#hl-error', 'data-state')).toBe('pending');
    expect(await run).toMatch(/^Done in/);

    // Progressive: every intermediate count was shown, not just the final table.
    const counts = await rowCounts(page);
    expect(counts['acc-table'].filter((n) => n > 0)).toEqual(ACCURACY_IDS.map((_, i) => i + 1));
    expect(counts['bench-table'].filter((n) => n > 0)).toEqual(Array.from({ length: BENCH_POINTS }, (_, i) => i + 1));

    // The headline quotes this run's rows: INT4 + Hadamard at the chosen block, naive INT4, FP16, and the bench at 2 × 100.
    const acc = await readTable(page, 'acc-table');
    const bench = await readTable(page, 'bench-table');
    const memory = await statData(page, 'hl-memory');
    expect(memory.state).toBe('done');
    expect(Number(memory.value)).toBeCloseTo(valueOf(acc, 'id', 'int4-hadamard-b32', 'compression_vs_fp16'), 10);
    const error = await statData(page, 'hl-error');
    expect(error).toMatchObject({ state: 'done', method: 'int4-hadamard-b32' });
    expect(Number(error.hadamard)).toBe(valueOf(acc, 'id', 'int4-hadamard-b32', 'rel_l2_vs_exact'));
    expect(Number(error.int4)).toBe(valueOf(acc, 'id', 'int4', 'rel_l2_vs_exact'));
    expect(Number(error.fp16)).toBe(valueOf(acc, 'id', 'fp16', 'rel_l2_vs_exact'));
    expect(Number(error.hadamard)).toBeLessThan(Number(error.int4));
    const speed = await statData(page, 'hl-speed');
    expect(speed).toMatchObject({ state: 'done', variant: 'int4-hadamard/B32' });
    const point = bench.rows.find((r) => r.values.method === 'int4-hadamard/B32' && r.values.batch === '2' && r.values.context === '100')!;
    expect(Number(speed.value)).toBe(Number(point.values.speedup_vs_fp16));
    expect(speed.kernel).toBe(point.values.kernel);
    expect(await page.textContent('#hl-speed')).toMatch(/Kernel: (subgroup|workgroup|matrix)/);
    const headline = await page.textContent('#headline');
    expect(headline).toMatch(/[0-9.]+× smaller/);
    expect(headline).toMatch(/[0-9.]+× (faster|slower)/);
    if (/swiftshader/i.test((await page.textContent('#gpu-status')) ?? '')) {
      expect(await page.textContent('#hl-caveat')).toMatch(/SwiftShader.*timings say nothing about a real GPU/);
    }
    expect(await bottomOf(page, '#headline')).toBeLessThanOrEqual(DESKTOP.height);
  });

  it('charts a reader can check: values by every method, log ranges clear of the floor, bars from zero', async () => {
    const { page } = suite.served;
    for (const metric of ['klMean', 'relL2', 'cosine']) {
      await page.selectOption('#acc-metric', metric);
      const chart = await page.evaluate(() => {
        const box = document.getElementById('acc-chart-methods')!;
        const { yMin, yMax, yLog } = box.dataset;
        return { yMin, yMax, yLog, label: box.getAttribute('aria-label') ?? '', role: box.getAttribute('role'), values: document.getElementById('acc-chart-methods-values')!.textContent ?? '' };
      });
      expect(chart.role).toBe('img');
      const listed = [...chart.values.matchAll(/([A-Z0-9±+ ]+): ([-0-9.e]+)/g)].map((m) => Number(m[2]));
      expect(listed, chart.values).toHaveLength(ACCURACY_IDS.length);
      expect(chart.label).toContain(chart.values.split(' · ')[0]);
      const [lo, hi] = [Number(chart.yMin), Number(chart.yMax)];
      if (chart.yLog === 'true') {
        // Every method sits at least a quarter decade inside the axis: none hides on the floor.
        for (const v of listed) expect(Math.log10(v / lo), `${metric} ${v} vs floor ${lo}`).toBeGreaterThanOrEqual(0.24);
        expect(new Set(listed).size).toBeGreaterThan(1); // real values, not "0, 0, 0"
      } else {
        expect(lo, metric).toBe(0); // bars start at zero
        for (const v of listed) expect(v).toBeLessThanOrEqual(hi);
      }
    }
    await page.selectOption('#acc-metric', 'relL2');
    const pareto = (await page.textContent('#acc-chart-pareto-values')) ?? '';
    for (const label of ['FP16', 'INT4', 'H16', 'H32', 'H64', 'Pareto frontier']) expect(pareto).toContain(`${label}:`);
    const caption = (await page.textContent('#acc-channels-caption')) ?? '';
    const [before, after] = [...caption.matchAll(/([0-9.]+)×/g)].map((m) => Number(m[1]));
    expect(before).toBeGreaterThan(3 * after); // the rotation flattens the outlier channels
    expect(await page.getAttribute('#acc-chart-channels', 'aria-label')).toMatch(/before .*after H/);
  });

  for (const viewport of [DESKTOP, PHONE]) {
    it(`no table is wider than its box, More columns included (${viewport.width} px)`, async () => {
      const { page } = suite.served;
      await page.setViewportSize(viewport);
      await page.evaluate(() => document.querySelectorAll<HTMLDetailsElement>('details.more-columns').forEach((d) => (d.open = true)));
      await page.waitForTimeout(100);
      const tables = await tableOverflows(page);
      expect(tables.length).toBe(4);
      for (const t of tables) expect(t.scroll, t.box).toBeLessThanOrEqual(t.client);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(viewport.width);
    });
  }

  it('on a phone the headline starts in the first screen', async () => {
    const { page } = suite.served;
    await page.setViewportSize(PHONE);
    await page.evaluate(() => window.scrollTo(0, 0));
    const box = await page.locator('#hl-memory').boundingBox();
    expect(box!.y).toBeLessThan(PHONE.height);
  });

  it('Cancel keeps the rows that finished, and the headline says what is missing (phone width)', async () => {
    const { page } = suite.served;
    await page.setViewportSize(PHONE);
    // a longer context than the default, so that the run is still going when Cancel is clicked (with warm
    // pipelines the default workload can finish in under a second)
    await page.fill('#context', '4096');
    await page.click('#run-accuracy');
    await page.waitForFunction(() => document.querySelectorAll('#acc-table > .table-scroll tbody tr').length >= 1 && !document.getElementById('accuracy-results')!.hidden, null, { timeout: 60_000 });
    await page.click('#cancel');
    await page.waitForFunction(() => /^(Cancelled|Done in)/.test(document.getElementById('progress-text')?.textContent ?? ''), null, { timeout: 60_000 });
    expect(await page.textContent('#progress-text')).toMatch(/^Cancelled/);
    const kept = await readTable(page, 'acc-table');
    expect(kept.rows.length).toBeGreaterThanOrEqual(1);
    expect(kept.rows.length).toBeLessThan(ACCURACY_IDS.length);
    expect(kept.rows[0].values.id).toBe('fp16');
    expect(columnNumbers(kept, 'rel_l2_vs_exact').every(Number.isFinite)).toBe(true);
    expect(await page.textContent('#acc-summary')).toMatch(/Cancelled: the \d methods that finished/);
    expect(await page.textContent('#acc-downloads')).toMatch(/cancelled/);
    expect(await page.getAttribute('#hl-speed', 'data-state')).toBe('not-run');
    expect(await page.isVisible('#bench-results')).toBe(false); // the last run's bench is not mixed in
    expect(await page.isDisabled('#run-accuracy')).toBe(false);
  });

  it('logs no console errors', () => {
    expect(suite.served.errors).toEqual([]);
  });
});
