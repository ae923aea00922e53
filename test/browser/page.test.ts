/**
 * The page as it opens (no run): the GPU panel with its features, limits and kernel variants, a real
 * kernel's self-check, the method diagram, labelled and keyboard-reachable controls, and URL
 * parameters that cannot be used reported instead of silently dropped.
 */
import { describe, expect, it } from 'vitest';
import { readyPageForSuite } from './page-helpers';

describe('demo page in headless Chromium (WebGPU)', () => {
  const suite = readyPageForSuite();

  it('shows the adapter, its features and key limits', async () => {
    const { page } = suite.served;
    expect(await page.textContent('#gpu-status')).toMatch(/WebGPU ready/);
    const details = await page.textContent('#gpu-details');
    expect(details).toMatch(/Adapter/);
    for (const feature of ['shader-f16', 'subgroups', 'timestamp-query']) expect(details).toContain(`Feature ${feature}`);
    for (const limit of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize']) expect(details).toContain(limit);
  });

  it('says which kernel variants it will use on this adapter', async () => {
    const variants = await suite.served.page.textContent('#gpu-variants');
    const subgroups = (await suite.served.page.textContent('#gpu-details'))?.includes('Feature subgroupsyes');
    expect(variants).toContain(subgroups ? 'subgroup path' : 'workgroup-memory path');
    expect(variants).toMatch(/two halves per u32.*shader-f16 is never required/);
  });

  it('runs a real WGSL kernel in the browser (the bandwidth probe self-check)', async () => {
    const { page } = suite.served;
    await page.waitForFunction(() => document.getElementById('gpu-details')?.textContent?.includes('Kernel self-check'), null, { timeout: 60_000 });
    expect(await page.textContent('#gpu-details')).toMatch(/Kernel self-check.*passed/);
  });

  it('explains the method with a diagram of the write and decode paths', async () => {
    const { page } = suite.served;
    const svg = await page.textContent('svg.diagram');
    for (const step of ['Hadamard rotate', 'blocks of B', 'min/max INT4', 'pack nibbles', 'page of the cache', 'rotate q in-kernel', 'dequant on the fly', 'softmax · V̂']) {
      expect(svg).toContain(step);
    }
    const box = await page.locator('svg.diagram').boundingBox();
    expect(box!.width).toBeGreaterThan(300);
    expect(await page.getAttribute('svg.diagram', 'role')).toBe('img');
  });

  it('shows the default plan: a meaningful comparison in one click', async () => {
    const plan = await suite.served.page.textContent('#run-plan');
    expect(plan).toMatch(/Accuracy: 6 methods \(fp16, int4, int4-hadamard-b16, .*, int4-hadamard-b128\) on 4 × 512 tokens of outlier-keys/);
    expect(plan).toMatch(/Throughput: 12 timed points/);
  });

  it('every control has a label, and Tab reaches the run button with a visible focus ring', async () => {
    const { page } = suite.served;
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLInputElement | HTMLSelectElement>('input, select')]
        .filter((e) => (e.labels?.length ?? 0) === 0 && !e.getAttribute('aria-label'))
        .map((e) => e.id || e.outerHTML),
    );
    expect(unlabelled).toEqual([]);
    expect(await page.evaluate(() => document.querySelectorAll('[onclick], div[role=button]').length)).toBe(0);
    let focused = '';
    for (let i = 0; i < 40 && focused !== 'run-both'; i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement?.id ?? '');
    }
    expect(focused).toBe('run-both');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
    expect(outline).not.toBe('none');
  });

  it('reports URL parameters it cannot use, and keeps the rest', async () => {
    const page = await suite.served.openAnother('?preset=tiny-d64&ctx=lots&block=256');
    try {
      await page.waitForSelector('#url-notice:not([hidden])');
      const notice = await page.textContent('#url-notice');
      expect(notice).toContain('ctx="lots"');
      expect(notice).toContain('block="256"');
      expect(await page.inputValue('#preset')).toBe('tiny-d64');
      expect(await page.inputValue('#context')).toBe('512');
    } finally {
      await page.close();
    }
  });

  it('logs no console errors', () => {
    expect(suite.served.errors).toEqual([]);
  });
});
