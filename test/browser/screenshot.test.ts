/**
 * The one-click promise: with the DEFAULT configuration (Llama-3.1-8B shape, 4 × 512 tokens of
 * outlier keys, FP16 vs INT4 vs INT4 + Hadamard at every block), "Run accuracy + throughput"
 * completes on SwiftShader and shows a meaningful comparison. Then the page is photographed:
 * `SCREENSHOT=1 npx vitest run test/browser/screenshot.test.ts` writes docs/screenshot.png (the whole
 * page) and docs/screenshot-phone.png (a phone's first screen); otherwise the images go to a temporary folder (so `npm test` leaves
 * the repository unchanged).
 */
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { chartCanvas, clickRunAndWait, columnNumbers, readTable, readyPageForSuite } from './page-helpers';

const OUT_DIR = process.env.SCREENSHOT ? resolve(import.meta.dirname, '../../docs') : join(tmpdir(), 'int4kv-screenshots');
mkdirSync(OUT_DIR, { recursive: true });

describe('the default configuration, one click', () => {
  const suite = readyPageForSuite('', { width: 1280, height: 900 });

  it('completes and shows INT4 + Hadamard recovering most of what naive INT4 loses', async () => {
    const { page } = suite.served;
    const started = Date.now();
    expect(await clickRunAndWait(page, 'run-both')).toMatch(/^Done in/);
    console.info(`default run: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const acc = await readTable(page, 'acc-table');
    const ids = acc.rows.map((r) => r.values.id);
    expect(ids).toEqual(['fp16', 'int4', 'int4-hadamard-b16', 'int4-hadamard-b32', 'int4-hadamard-b64', 'int4-hadamard-b128']);
    const relL2 = Object.fromEntries(ids.map((id, i) => [id, columnNumbers(acc, 'rel_l2_vs_exact')[i]]));
    expect(Object.values(relL2).every(Number.isFinite)).toBe(true);
    // Seeded workload: naive INT4 is hurt by the outlier channels, the full-head rotation halves its error.
    expect(relL2['int4-hadamard-b128']).toBeLessThan(0.7 * relL2.int4);
    expect(relL2.fp16).toBeLessThan(relL2['int4-hadamard-b128'] / 10);
    const bench = await readTable(page, 'bench-table');
    expect(bench.rows).toHaveLength(12);
    expect(columnNumbers(bench, 'step_us').every((v) => Number.isFinite(v) && v > 0)).toBe(true);
    for (const box of ['acc-chart-methods', 'acc-chart-blocks', 'bench-chart-batch', 'bench-chart-context']) {
      const canvas = await chartCanvas(page, box);
      expect(canvas && canvas.width * canvas.height, box).toBeGreaterThan(0);
    }
    expect(suite.served.errors).toEqual([]);
  });

  it('photographs the page after the run (desktop and phone widths)', async () => {
    const { page } = suite.served;
    const desktop = join(OUT_DIR, 'screenshot.png');
    const image = await page.screenshot({ path: desktop, fullPage: true });
    expect(image.byteLength).toBeGreaterThan(50_000);
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(150); // charts follow the width
    await page.evaluate(() => window.scrollTo(0, 0)); // the first screen: controls and the headline
    const phone = await page.screenshot({ path: join(OUT_DIR, 'screenshot-phone.png') });
    expect(phone.byteLength).toBeGreaterThan(10_000);
    console.info(`screenshots in ${OUT_DIR}`);
  });
});
