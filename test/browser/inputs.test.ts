/**
 * Strict inputs, in headless Chromium at a desktop and a phone width: a value that cannot be used
 * says why under its field and disables the runs it feeds, with the same reason next to the Run
 * buttons (nothing runs with an older value than the one shown); a K/V file sets the head_dim, so
 * the Hadamard blocks offered divide it, and a head_dim the kernels cannot take is refused at load
 * with the file input highlighted; a good file clears the stale error; the file workload without a
 * file says so.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/io/safetensors';
import { generateWorkload } from '../../src/workloads/synthetic';
import { clickRunAndWait, openAdvanced, readTable, readyPageForSuite } from './page-helpers';

const DESKTOP = { width: 1400, height: 900 };
const PHONE = { width: 390, height: 844 };

/** One layer's K/V as a model dump holds them: [T, Hkv, D] f32. A head_dim of 48 is one the kernels refuse. */
function kvFile(headDim: number): Buffer {
  const w = generateWorkload({ kind: 'outlier-keys', numQueryHeads: 8, numKvHeads: 2, headDim, contextLens: [40], seed: 5 });
  return Buffer.from(writeSafetensors({ k: { shape: [40, 2, headDim], data: w.k }, v: { shape: [40, 2, headDim], data: w.v } }));
}

async function setField(page: Page, id: string, value: string): Promise<void> {
  await page.fill(`#${id}`, value);
  await page.locator(`#${id}`).dispatchEvent('change');
}

async function runStates(page: Page): Promise<Record<string, boolean>> {
  const ids = ['run-both', 'run-accuracy', 'run-bench', 'sim-run'];
  return Object.fromEntries(await Promise.all(ids.map(async (id) => [id, await page.isDisabled(`#${id}`)] as const)));
}

/** [field, a value it refuses, the reason, the runs it disables, a value it takes]. */
const REFUSED = [
  ['context', '-5', /Context length must be a whole number from 1 to 65,536 \(got "-5"\)/, ['run-both', 'run-accuracy', 'run-bench'], '100'],
  ['seqs', '1e9', /Concurrency must be a whole number from 1 to 256 \(got "1e9"\)/, ['run-both', 'run-accuracy', 'run-bench'], '2'],
  ['seed', '-1', /Seed must be a whole number from 0 to 4,294,967,295/, ['run-both', 'run-accuracy', 'run-bench', 'sim-run'], '7'],
  ['sim-budget', '0', /KV budget must be a number of MiB above 0/, ['sim-run'], '0.25'],
] as const;

describe('strict inputs', () => {
  const suite = readyPageForSuite('?preset=llama-3.1-8b&seqs=2&ctx=100&methods=int4,hadamard,blocks&quick=1', DESKTOP);

  for (const viewport of [DESKTOP, PHONE]) {
    it(`an invalid field says why under it and disables the runs it feeds, with that reason (${viewport.width} px)`, async () => {
      const { page } = suite.served;
      await page.setViewportSize(viewport);
      await openAdvanced(page);
      for (const [field, bad, reason, disabled, good] of REFUSED) {
        await setField(page, field, bad);
        expect(await page.getAttribute(`#${field}`, 'aria-invalid'), field).toBe('true');
        expect(await page.isVisible(`#${field}-error`), field).toBe(true);
        expect(await page.textContent(`#${field}-error`)).toMatch(reason);
        expect(await page.getAttribute(`#${field}`, 'aria-describedby')).toContain(`${field}-error`);
        const states = await runStates(page);
        for (const id of Object.keys(states)) expect(states[id], `${field}=${bad}: ${id}`).toBe((disabled as readonly string[]).includes(id));
        const blocked = field.startsWith('sim-') ? '#sim-blocked' : '#run-blocked';
        expect(await page.isVisible(blocked)).toBe(true);
        expect(await page.textContent(blocked)).toMatch(reason);
        // The field's value is not silently replaced: what is shown is what is refused, and no plan
        // describes the last valid value instead.
        expect(await page.inputValue(`#${field}`)).toBe(bad);
        const plan = field.startsWith('sim-') ? '#sim-plan' : '#run-plan';
        expect(await page.textContent(plan), field).toMatch(/^No plan while a setting is invalid/);
        await setField(page, field, good);
        expect(await page.textContent(plan), field).not.toMatch(/^No plan/);
        expect(await page.getAttribute(`#${field}`, 'aria-invalid')).toBe('false');
        expect(await page.isVisible(`#${field}-error`)).toBe(false);
        expect(Object.values(await runStates(page)).some(Boolean), `${field}=${good}`).toBe(false);
      }
      expect(await page.isVisible('#run-blocked')).toBe(false);
    });
  }

  it('a number field holding what is not a number says so (the browser reports it as empty)', async () => {
    const { page } = suite.served;
    await openAdvanced(page);
    await page.fill('#context', '');
    await page.focus('#context');
    await page.keyboard.type('e'); // a number input takes the key but has no number
    await page.locator('#context').dispatchEvent('change');
    expect(await page.evaluate(() => (document.getElementById('context') as HTMLInputElement).validity.badInput)).toBe(true);
    expect(await page.textContent('#context-error')).toMatch(/Context length must be a whole number from 1 to 65,536 \(what was typed is not a number\)/);
    await setField(page, 'context', '');
    expect(await page.textContent('#context-error')).toMatch(/\(it is empty\)/);
    await setField(page, 'context', '100');
    expect(await page.isVisible('#context-error')).toBe(false);
  });

  it('an accuracy run too big for a tab disables only the accuracy runs, and says what to lower', async () => {
    const { page } = suite.served;
    await page.setViewportSize(DESKTOP);
    await setField(page, 'seqs', '256');
    await setField(page, 'context', '65536');
    expect(await runStates(page)).toEqual({ 'run-both': true, 'run-accuracy': true, 'run-bench': false, 'sim-run': false });
    expect(await page.textContent('#run-blocked')).toMatch(/Accuracy runs are disabled: .*float64 on the CPU.*Lower the concurrency or the context/);
    await setField(page, 'seqs', '2');
    await setField(page, 'context', '100');
    expect(await page.isVisible('#run-blocked')).toBe(false);
  });

  it('a head_dim the kernels cannot take is refused at load: explained, the file input highlighted and focused', async () => {
    const { page } = suite.served;
    await openAdvanced(page);
    await page.setInputFiles('#file-input', { name: 'd48.safetensors', mimeType: 'application/octet-stream', buffer: kvFile(48) });
    await page.waitForSelector('#error-panel:not([hidden])');
    expect(await page.textContent('#error-panel h2')).toBe('This file cannot be used');
    expect(await page.textContent('#error-panel .error-message')).toMatch(/d48\.safetensors: .*head_dim 48 is not supported: .*multiple of 32, from 32 to 256/);
    expect(await page.getAttribute('#file-input', 'class')).toContain('flagged');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('file-input');
    expect(await page.inputValue('#workload')).not.toBe('file');
  });

  it("the trained model's K/V (model/run) loads as a file: head_dim 128 and its blocks", async () => {
    const { page } = suite.served;
    await openAdvanced(page);
    await page.selectOption('#model-kv-layer', '2');
    await page.click('#model-kv-load');
    await page.waitForFunction(() => document.getElementById('file-status')?.textContent?.startsWith('Loaded'));
    expect(await page.textContent('#file-status')).toMatch(/model-kv-layer2\.safetensors: 4 seq \(lens 512, 512, 512, 512; 2048 tokens\), Hq=4, Hkv=1, D=128/);
    expect(await page.inputValue('#workload')).toBe('file');
    expect(await page.$$eval('#block option', (options) => options.map((o) => (o as HTMLOptionElement).value))).toEqual(['16', '32', '64', '128']);
    await page.click('#file-clear');
  });

  it('a file with a NaN in K is refused at load, naming the token, kv head and element (parsed in a worker)', async () => {
    const { page } = suite.served;
    await openAdvanced(page);
    const workers: string[] = [];
    page.on('worker', (w) => workers.push(w.url()));
    const w = generateWorkload({ kind: 'gaussian', numQueryHeads: 4, numKvHeads: 2, headDim: 64, contextLens: [9], seed: 2 });
    w.k[(3 * 2 + 1) * 64 + 10] = Number.NaN; // token 3, kv head 1, element 10
    const bytes = Buffer.from(writeSafetensors({ k: { shape: [9, 2, 64], data: w.k }, v: { shape: [9, 2, 64], data: w.v } }));
    await page.setInputFiles('#file-input', { name: 'nan.safetensors', mimeType: 'application/octet-stream', buffer: bytes });
    await page.waitForSelector('#error-panel:not([hidden])');
    expect(await page.textContent('#error-panel .error-message')).toMatch(/nan\.safetensors: .*not finite/);
    // the status beside the file input says why too (the panel is at the top of the page)
    expect(await page.textContent('#file-status')).toMatch(/^No file loaded: .*not finite.*\(the panel at the top of the page says more\)\.$/);
    expect(workers.some((url) => /kv-file-worker/.test(url)), `workers: ${workers.join(', ')}`).toBe(true);
    expect(await page.inputValue('#workload')).not.toBe('file');
  });

  it('a D=64 file on a D=128 preset: a good file clears the stale error, only blocks dividing 64 are offered, and it runs', async () => {
    const { page } = suite.served;
    expect(await page.inputValue('#preset')).toBe('llama-3.1-8b');
    await page.setInputFiles('#file-input', { name: 'd64.safetensors', mimeType: 'application/octet-stream', buffer: kvFile(64) });
    await page.waitForFunction(() => document.getElementById('file-status')?.textContent?.startsWith('Loaded'));
    expect(await page.isVisible('#error-panel')).toBe(false);
    expect(await page.inputValue('#workload')).toBe('file');
    expect(await page.$$eval('#block option', (options) => options.map((o) => (o as HTMLOptionElement).value))).toEqual(['16', '32', '64']);
    expect(await page.inputValue('#block')).toBe('64');
    expect(await page.textContent('#block-hint')).toContain("your file's head_dim 64");
    expect(await page.textContent('#preset-hint')).toMatch(/accuracy uses your file: 8 query heads, 2 kv heads .*head_dim 64/);
    await page.selectOption('#block', '32');
    expect(await page.textContent('#run-plan')).toMatch(/Accuracy: 5 methods \(fp16, int4, int4-hadamard-b16, int4-hadamard-b32, int4-hadamard-b64\) on your file d64\.safetensors/);
    expect(await clickRunAndWait(page, 'run-accuracy')).toMatch(/^Done in/);
    expect((await readTable(page, 'acc-table')).rows.map((r) => r.values.id)).toEqual(['fp16', 'int4', 'int4-hadamard-b16', 'int4-hadamard-b32', 'int4-hadamard-b64']);
    expect(await page.getAttribute('#hl-error', 'data-method')).toBe('int4-hadamard-b32');
    expect(await page.textContent('#hl-error')).toContain('your file d64.safetensors');
  });

  it('removing the file brings back the preset\'s blocks; the file workload without a file says so and disables only accuracy', async () => {
    const { page } = suite.served;
    await page.click('#file-clear');
    expect(await page.inputValue('#workload')).toBe('outlier-keys');
    expect(await page.$$eval('#block option', (options) => options.map((o) => (o as HTMLOptionElement).value))).toEqual(['16', '32', '64', '128']);
    await page.selectOption('#workload', 'file');
    expect(await page.inputValue('#workload')).toBe('file'); // not silently reverted
    expect(await page.textContent('#workload-error')).toMatch(/No K\/V file is loaded: pick or drop one below/);
    expect(await runStates(page)).toEqual({ 'run-both': true, 'run-accuracy': true, 'run-bench': false, 'sim-run': false });
    expect(await page.textContent('#run-blocked')).toMatch(/No K\/V file is loaded/);
    await page.selectOption('#workload', 'gaussian');
    expect(await page.isVisible('#workload-error')).toBe(false);
    expect(await page.isDisabled('#run-accuracy')).toBe(false);
  });

  it('a preset whose head_dim the block does not divide lowers the block only while it is chosen', async () => {
    const { page } = suite.served;
    await page.selectOption('#block', '128');
    await page.selectOption('#preset', 'tiny-d64');
    expect(await page.$$eval('#block option', (options) => options.map((o) => (o as HTMLOptionElement).value))).toEqual(['16', '32', '64']);
    expect(await page.inputValue('#block')).toBe('64');
    await page.selectOption('#preset', 'llama-3.1-8b');
    expect(await page.inputValue('#block')).toBe('128'); // what was asked for, not the lowered 64
    // a block picked on the small shape is the one asked for from then on
    await page.selectOption('#preset', 'tiny-d64');
    await page.selectOption('#block', '32');
    await page.selectOption('#preset', 'llama-3.1-8b');
    expect(await page.inputValue('#block')).toBe('32');
    await page.selectOption('#block', '128');
  });

  it('logs no console errors', () => {
    expect(suite.served.errors).toEqual([]);
  });
});
