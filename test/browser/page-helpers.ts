/**
 * What the browser tests do on the page, as a user would: wait for the GPU, click a run button and
 * wait for the outcome, and read tables and charts back.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { openPage, type ServedPage } from './browser-harness';

/** SwiftShader is slow and the suite may share 2 cores between files: generous, but bounded. */
export const RUN_TIMEOUT_MS = 120_000;

/** Waits until the GPU panel says WebGPU is ready and the run buttons are enabled. */
export async function waitForGpu(page: Page): Promise<void> {
  await page.waitForSelector('#gpu-status.ok', { timeout: 60_000 });
  await page.waitForSelector('#run-both:not([disabled])', { timeout: 60_000 });
}

/**
 * The page for the tests of the enclosing describe block: opened with `query` (and sized to `viewport`)
 * before them, once its GPU is ready, and closed after them. Read `.served` inside the tests.
 */
export function readyPageForSuite(query = '', viewport?: { width: number; height: number }): { readonly served: ServedPage } {
  let served: ServedPage | undefined;
  beforeAll(async () => {
    served = await openPage(query);
    if (viewport) await served.page.setViewportSize(viewport);
    await waitForGpu(served.page);
  });
  afterAll(async () => {
    await served?.close();
  });
  return {
    get served(): ServedPage {
      if (!served) throw new Error('the page opens in beforeAll: read .served inside a test');
      return served;
    },
  };
}

/**
 * Clicks a run button and waits (at most `timeoutMs`, default RUN_TIMEOUT_MS) for the progress line of
 * its section (the serving section has its own) to say the run ended; returns that line.
 */
export async function clickRunAndWait(page: Page, buttonId: 'run-both' | 'run-accuracy' | 'run-bench' | 'sim-run', timeoutMs = RUN_TIMEOUT_MS): Promise<string> {
  const textId = buttonId === 'sim-run' ? 'sim-progress-text' : 'progress-text';
  await page.click(`#${buttonId}`);
  await page.waitForFunction(
    (id) => /^(Done in|Cancelled|The run stopped)/.test(document.getElementById(id)?.textContent ?? ''),
    textId,
    { timeout: timeoutMs, polling: 200 },
  );
  return (await page.textContent(`#${textId}`)) ?? '';
}

export interface TableData {
  /** Column keys in header order. */
  keys: string[];
  /** Per row: key → data-value (absent: null) and text. */
  rows: { values: Record<string, string | null>; texts: Record<string, string> }[];
}

/**
 * Reads the sortable table inside `#containerId`, with its "More columns" table merged in: rows in
 * the order the first table shows them, each joined by its data-row with the same row of the other.
 */
export function readTable(page: Page, containerId: string): Promise<TableData> {
  return page.evaluate((id) => {
    const tables = [...document.querySelectorAll(`#${id} table`)];
    if (tables.length === 0) return { keys: [], rows: [] };
    const keys = [...new Set(tables.flatMap((t) => [...t.querySelectorAll('thead button.sort')].map((b) => b.getAttribute('data-key') ?? '')))];
    const rows = [...tables[0].querySelectorAll('tbody tr')].map((first) => {
      const values: Record<string, string | null> = {};
      const texts: Record<string, string> = {};
      const index = first.getAttribute('data-row');
      for (const table of tables) {
        const tr = table === tables[0] ? first : table.querySelector(`tbody tr[data-row="${index}"]`);
        for (const cell of tr?.children ?? []) {
          const key = cell.getAttribute('data-key') ?? '';
          values[key] = cell.getAttribute('data-value');
          texts[key] = cell.textContent ?? '';
        }
      }
      return { values, texts };
    });
    return { keys, rows };
  }, containerId);
}

/** Opens the Advanced disclosure of the run section (its settings are hidden until then). */
export async function openAdvanced(page: Page): Promise<void> {
  await page.evaluate(() => ((document.getElementById('advanced') as HTMLDetailsElement).open = true));
}

/** Widths of every table region on the page that is laid out: scrollWidth and clientWidth (a table wider than its box scrolls). */
export function tableOverflows(page: Page): Promise<{ box: string; scroll: number; client: number }[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLElement>('.table-scroll')]
      .filter((r) => r.getClientRects().length > 0)
      .map((r) => ({ box: `${r.closest('[id]')?.id}: ${r.getAttribute('aria-label')}`, scroll: r.scrollWidth, client: r.clientWidth })),
  );
}

/** The numbers of column `key`, one per row (NaN where a cell holds no number). */
export function columnNumbers(table: TableData, key: string): number[] {
  return table.rows.map((r) => (r.values[key] === null || r.values[key] === undefined ? NaN : Number(r.values[key])));
}

/** Size of the uPlot canvas inside `#boxId` (backing store and on-screen box), or null when there is none. */
export function chartCanvas(page: Page, boxId: string): Promise<{ width: number; height: number; boxWidth: number; boxHeight: number; series: number } | null> {
  return page.evaluate((id) => {
    const canvas = document.querySelector<HTMLCanvasElement>(`#${id} .uplot canvas`);
    if (!canvas) return null;
    const box = canvas.getBoundingClientRect();
    const series = document.querySelectorAll(`#${id} .u-legend .u-series`).length;
    return { width: canvas.width, height: canvas.height, boxWidth: box.width, boxHeight: box.height, series };
  }, boxId);
}

/** Whether the canvas in `#boxId` has any non-transparent pixel (something was drawn). */
export function chartHasInk(page: Page, boxId: string): Promise<boolean> {
  return page.evaluate((id) => {
    const canvas = document.querySelector<HTMLCanvasElement>(`#${id} .uplot canvas`);
    const pixels = canvas?.getContext('2d')?.getImageData(0, 0, canvas.width, canvas.height).data;
    if (!pixels) return false;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
    return false;
  }, boxId);
}

/** The text behind a download link (fetched from its blob: URL inside the page). */
export function downloadText(page: Page, selector: string): Promise<{ href: string; fileName: string; text: string }> {
  return page.evaluate(async (sel) => {
    const link = document.querySelector<HTMLAnchorElement>(sel);
    if (!link) throw new Error(`no link ${sel}`);
    const text = await (await fetch(link.href)).text();
    return { href: link.href, fileName: link.download, text };
  }, selector);
}
