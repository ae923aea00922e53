/**
 * The real CLI bundle for tests that run it as a user would (test/cli-inputs.test.ts,
 * test/model-cli.test.ts): built once per test file into a private folder (other suites rebuild
 * dist-cli/), under the project so that `webgpu` resolves, and removed afterwards with a scratch folder.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

export const ROOT = resolve(__dirname, '..');

export interface CliBundle {
  /** Runs the CLI with `args` from the project root. */
  run(args: string[]): { status: number | null; stdout: string; stderr: string };
  /** A scratch folder for output files (exists from beforeAll until afterAll). */
  readonly work: string;
}

/** Registers beforeAll/afterAll hooks that build the bundle (named `name`) and a scratch folder. */
export function useCliBundle(name: string, timeoutMs: number): CliBundle {
  let cli = '';
  let work = '';
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), `${name}-`));
    const outDir = join(ROOT, 'node_modules/.cache', name, String(process.pid));
    mkdirSync(outDir, { recursive: true });
    const build = spawnSync('npx', ['vite', 'build', '-c', 'vite.cli.config.ts', '--logLevel', 'warn', '--outDir', outDir], { cwd: ROOT, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`building the CLI failed:\n${build.stdout}\n${build.stderr}`);
    cli = join(outDir, 'cli.mjs');
  }, 120_000);
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
    if (cli) rmSync(join(cli, '..'), { recursive: true, force: true });
  });
  return {
    run(args) {
      const r = spawnSync(process.execPath, [cli, ...args], { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs });
      if (r.error) throw r.error;
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    },
    get work() {
      return work;
    },
  };
}
