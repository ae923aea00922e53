/**
 * Failures explained on the page, provoked for real in headless Chromium: a browser without WebGPU,
 * a file that is not a KV dump, the GPU process crashing under the page (device lost → Recover →
 * run again), and the happy path of a real K/V file (safetensors written by the library).
 */
import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/io/safetensors';
import { generateWorkload } from '../../src/workloads/synthetic';
import { clickRunAndWait, columnNumbers, openAdvanced, readTable, readyPageForSuite, waitForGpu } from './page-helpers';

/** A small run, so each rerun takes a second or two on SwiftShader. */
const QUERY = '?preset=tiny-d64&seqs=1&ctx=48&methods=int4,hadamard&block=64';

/** One layer's K/V as a model dump would hold them: [T, Hkv, D] f32, two ragged sequences. */
function kvFile(): Buffer {
  const w = generateWorkload({ kind: 'outlier-keys', numQueryHeads: 8, numKvHeads: 2, headDim: 64, contextLens: [40, 9], seed: 3 });
  const t = w.contextLens.reduce((a, b) => a + b, 0);
  const bytes = writeSafetensors({
    k: { shape: [t, 2, 64], data: w.k },
    v: { shape: [t, 2, 64], data: w.v },
    context_lens: { shape: [2], data: Int32Array.from(w.contextLens) },
  });
  return Buffer.from(bytes);
}

describe('failures explained on the page', () => {
  const suite = readyPageForSuite(QUERY);

  it('without WebGPU: says so, names the browsers and flags that enable it, and runs nothing', async () => {
    const page = await suite.served.openAnother(QUERY, () => {
      Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
    });
    try {
      await page.waitForSelector('#error-panel:not([hidden])');
      const panel = await page.textContent('#error-panel');
      expect(panel).toContain('WebGPU is not available');
      expect(panel).toMatch(/Chrome or Edge 113\+/);
      expect(panel).toContain('--enable-unsafe-webgpu');
      expect(panel).toMatch(/Safari 26\+/);
      expect(panel).toMatch(/Firefox 141\+/);
      expect(await page.getAttribute('#gpu-status', 'class')).toBe('error');
      expect(await page.isDisabled('#run-both')).toBe(true);
      // The rest of the page still explains the method.
      expect(await page.isVisible('svg.diagram')).toBe(true);
    } finally {
      await page.close();
    }
  });

  it('a throughput run whose points do not fit this GPU says so when it is done, not only in the rows', async () => {
    const page = await suite.served.openAnother('?preset=llama-3.1-8b&seqs=256&ctx=65536&methods=int4&quick=1');
    try {
      // the accuracy runs are disabled (too big for a tab); the throughput run is not
      await page.waitForSelector('#gpu-status.ok', { timeout: 60_000 });
      await page.waitForSelector('#run-bench:not([disabled])', { timeout: 60_000 });
      const done = await clickRunAndWait(page, 'run-bench');
      expect(done).toMatch(/^Done in [\d.]+ s\. (Every throughput point was|\d+ of \d+ throughput points were) skipped \(.+\); the table's Status column says what fits\.$/);
      const statuses = (await readTable(page, 'bench-table')).rows.map((r) => r.texts.status);
      expect(statuses.some((t) => t.startsWith('skipped'))).toBe(true);
    } finally {
      await page.close();
    }
  });

  it('a file that is not a KV dump: the loader says what is wrong with which file', async () => {
    const { page } = suite.served;
    await page.setInputFiles('#file-input', { name: 'notes.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('this is not a tensor file') });
    await page.waitForSelector('#error-panel:not([hidden])');
    expect(await page.textContent('#error-panel h2')).toBe('This file cannot be used');
    expect(await page.textContent('#error-panel .error-message')).toContain('notes.safetensors');
    expect(await page.inputValue('#workload')).not.toBe('file');
    await page.click('#error-panel button:has-text("Dismiss")');
    expect(await page.isVisible('#error-panel')).toBe(false);
  });

  it('a real K/V file (safetensors: k, v, context_lens) runs through the accuracy lab', async () => {
    const { page } = suite.served;
    await openAdvanced(page);
    await page.setInputFiles('#file-input', { name: 'layer3.safetensors', mimeType: 'application/octet-stream', buffer: kvFile() });
    await page.waitForFunction(() => document.getElementById('file-status')?.textContent?.startsWith('Loaded'));
    expect(await page.inputValue('#workload')).toBe('file');
    expect(await page.textContent('#file-status')).toMatch(/layer3\.safetensors: 2 seq .*Hkv=2, D=64/);
    expect(await clickRunAndWait(page, 'run-accuracy')).toMatch(/^Done in/);
    expect(await page.textContent('#acc-summary')).toContain('layer3.safetensors');
    const table = await readTable(page, 'acc-table');
    expect(table.rows.map((r) => r.values.id)).toEqual(['fp16', 'int4', 'int4-hadamard-b64']);
    expect(columnNumbers(table, 'rel_l2_vs_exact').every(Number.isFinite)).toBe(true);
    await page.click('#file-clear');
    expect(await page.inputValue('#workload')).toBe('outlier-keys');
  });

  it('device lost (the GPU process crashes): explained, Recover re-opens the device, and a rerun works', async () => {
    const { page } = suite.served;
    const cdp = await suite.served.browser.newBrowserCDPSession();
    await cdp.send('Browser.crashGpuProcess');
    await page.waitForSelector('#error-panel:not([hidden])', { timeout: 30_000 });
    expect(await page.textContent('#error-panel h2')).toBe('The GPU device was lost');
    expect(await page.isDisabled('#run-both')).toBe(true);
    await page.click('#recover');
    await waitForGpu(page);
    expect(await page.isVisible('#error-panel')).toBe(false);
    expect(await clickRunAndWait(page, 'run-accuracy')).toMatch(/^Done in/);
    expect(columnNumbers(await readTable(page, 'acc-table'), 'rel_l2_vs_exact').every(Number.isFinite)).toBe(true);
  });

  it('logs no console errors', () => {
    expect(suite.served.errors).toEqual([]);
  });
});
