import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPage, type ServedPage } from './browser-harness';

describe('demo page in headless Chromium (WebGPU)', () => {
  let served: ServedPage;
  beforeAll(async () => {
    served = await openPage();
  });
  afterAll(async () => {
    await served?.close();
  });

  it('shows the adapter and its features', async () => {
    const { page } = served;
    await page.waitForSelector('#gpu-status.ok', { timeout: 60_000 });
    const status = await page.textContent('#gpu-status');
    expect(status).toMatch(/WebGPU ready/);
    const details = await page.textContent('#gpu-details');
    expect(details).toMatch(/Adapter/);
    for (const feature of ['shader-f16', 'subgroups', 'timestamp-query']) expect(details).toContain(`Feature ${feature}`);
    expect(details).toMatch(/maxStorageBufferBindingSize/);
  });

  it('runs a real WGSL kernel in the browser (the bandwidth probe self-check)', async () => {
    const { page } = served;
    await page.waitForFunction(() => document.getElementById('gpu-details')?.textContent?.includes('Kernel self-check'), null, { timeout: 60_000 });
    expect(await page.textContent('#gpu-details')).toMatch(/Kernel self-check.*passed/);
  });

  it('logs no console errors', () => {
    expect(served.errors).toEqual([]);
  });
});
