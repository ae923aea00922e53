/**
 * Browser-test helper: builds the page with Vite, serves the build on 127.0.0.1, and opens it in
 * Debian's Chromium (headless, driven by playwright-core; WebGPU on SwiftShader when there is no GPU).
 * Never downloads a browser: a missing /usr/bin/chromium fails the test with the install command.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Flags for a closed network (docs/design.md, "Testing") plus WebGPU. */
export const CHROMIUM_FLAGS = [
  '--enable-unsafe-webgpu',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface ServedPage {
  page: Page;
  url: string;
  /** Console errors and page errors seen so far (on every page opened through this object). */
  errors: string[];
  browser: Browser;
  /**
   * Opens another page of the same site in the same browser (so the same GPU process), after
   * `initScript` (run before the page's own scripts, e.g. to hide navigator.gpu) when given.
   */
  openAnother(query?: string, initScript?: () => void): Promise<Page>;
  close(): Promise<void>;
}

function collectErrors(page: Page, errors: string[]): void {
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
}

let built: Promise<string> | null = null;

/** Builds the site once per test file into a temporary folder. */
function buildSite(): Promise<string> {
  built ??= (async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'int4kv-site-'));
    await build({ logLevel: 'error', build: { outDir, emptyOutDir: true } });
    return outDir;
  })();
  return built;
}

export async function openPage(query = ''): Promise<ServedPage> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`);
  }
  const outDir = await buildSite();
  const server: PreviewServer = await preview({ logLevel: 'error', build: { outDir }, preview: { host: '127.0.0.1', port: 0, strictPort: false } });
  const address = server.httpServer.address();
  if (!address || typeof address === 'string') throw new Error('preview server has no port');
  const url = `http://127.0.0.1:${address.port}/${query}`;
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_FLAGS,
  });
  const page = await browser.newPage();
  const errors: string[] = [];
  collectErrors(page, errors);
  await page.goto(url);
  const base = `http://127.0.0.1:${address.port}/`;
  return {
    page,
    url,
    errors,
    browser,
    async openAnother(nextQuery = '', initScript) {
      const other = await browser.newPage();
      collectErrors(other, errors);
      if (initScript) await other.addInitScript(initScript);
      await other.goto(`${base}${nextQuery}`);
      return other;
    },
    async close() {
      await browser.close();
      await new Promise<void>((resolve) => server.httpServer.close(() => resolve()));
    },
  };
}
