/**
 * Hostile command lines through the real CLI bundle: each is refused before any work (no device
 * opened, nothing written) with exit 2 and a one-line reason, never a stack trace.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..');
let cli = '';
let work = '';

function run(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'cli-inputs-test-'));
  // A private bundle (other suites rebuild dist-cli/); under the project so that `webgpu` resolves.
  const outDir = join(ROOT, 'node_modules/.cache/cli-inputs-test', String(process.pid));
  mkdirSync(outDir, { recursive: true });
  const build = spawnSync('npx', ['vite', 'build', '-c', 'vite.cli.config.ts', '--logLevel', 'warn', '--outDir', outDir], { cwd: ROOT, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`building the CLI failed:\n${build.stdout}\n${build.stderr}`);
  cli = join(outDir, 'cli.mjs');
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
  if (cli) rmSync(join(cli, '..'), { recursive: true, force: true });
});

describe('refused before any work: exit 2, one line, no stack, no device', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['accuracy --seqs 1e9 (used to exhaust the V8 heap)', () => ['accuracy', '--seqs', '1000000000'], /--seqs 1000000000 × --context 1024 .* needs .* GiB, limit .*; try --seqs \d+ or fewer at --context 1024/],
    ['accuracy --context 1e12 (used to be a raw RangeError)', () => ['accuracy', '--context', '1000000000000'], /needs .*, limit .*; try --context \d+ or fewer at --seqs 1/],
    ['accuracy --context -5 (used to say "ambiguous")', () => ['accuracy', '--context', '-5'], /--context "-5": expected an integer ≥ 1/],
    ['accuracy --json into a missing folder', () => ['accuracy', '--json', join(work, 'missing', 'x.json')], /--json .*: folder .*missing does not exist/],
    ['accuracy --json naming a folder', () => ['accuracy', '--json', work], /--json .*: is a folder; give a file name/],
    ['bench --json into a missing folder', () => ['bench', '--json', join(work, 'missing', 'b.json')], /--json .*: folder .*missing does not exist/],
    ['bench --page-size 7 (used to skip every point and exit 0)', () => ['bench', '--page-size', '7'], /--page-size takes integers in \[8, 128\] separated by commas, got '7'/],
    ['bench --batch 1e9 (used to skip every point and exit 0)', () => ['bench', '--batch', '1e9'], /--batch takes integers in \[1, 65535\]/],
    ['bench --context -5', () => ['bench', '--context', '-5'], /--context takes integers in \[1, \d+\] separated by commas, got '-5'/],
    ['simulate --preset of no model (the shared model table)', () => ['simulate', '--preset', 'gpt5'], /--preset "gpt5": expected one of llama-3.1-8b, .*tiny-d64, small/],
    ['accuracy --batch and --seqs together (one name for one thing)', () => ['accuracy', '--batch', '2', '--seqs', '2'], /--seqs and --batch name the same thing; give one/],
    ['run-case --out naming a folder', () => ['run-case', '--in', join(work, 'none.safetensors'), '--out', work], /run-case: (cannot read --in|--out .*: is a folder)/],
  ];
  for (const [name, args, message] of cases) {
    it(name, () => {
      const r = run(args());
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/^\s+at /m); // no stack frames
      expect(r.stderr).not.toMatch(/^adapter:/m); // refused before the device was opened
      expect(readdirSync(work)).toEqual([]); // nothing written
    });
  }

  it('a missing output folder is reported without creating it', () => {
    run(['accuracy', '--json', join(work, 'missing', 'x.json')]);
    expect(existsSync(join(work, 'missing'))).toBe(false);
  });
});
