/**
 * Hostile command lines through the real CLI bundle: each is refused before any work (no device
 * opened, nothing written) with exit 2 and a one-line reason, never a stack trace.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useCliBundle } from './cli-bundle';

const bundle = useCliBundle('cli-inputs-test', 60_000);
const run = bundle.run;

describe('refused before any work: exit 2, one line, no stack, no device', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['accuracy --seqs 1e9 (used to exhaust the V8 heap)', () => ['accuracy', '--seqs', '1000000000'], /--seqs 1000000000 × --context 1024 .* needs .* GiB, limit .*; try --seqs \d+ or fewer at --context 1024/],
    ['accuracy --context 1e12 (used to be a raw RangeError)', () => ['accuracy', '--context', '1000000000000'], /needs .*, limit .*; try --context \d+ or fewer at --seqs 1/],
    ['accuracy --context -5 (used to say "ambiguous")', () => ['accuracy', '--context', '-5'], /--context "-5": expected an integer ≥ 1/],
    ['accuracy --json into a missing folder', () => ['accuracy', '--json', join(bundle.work, 'missing', 'x.json')], /--json .*: folder .*missing does not exist/],
    ['accuracy --json naming a folder', () => ['accuracy', '--json', bundle.work], /--json .*: is a folder; give a file name/],
    ['bench --json into a missing folder', () => ['bench', '--json', join(bundle.work, 'missing', 'b.json')], /--json .*: folder .*missing does not exist/],
    ['bench --page-size 7 (used to skip every point and exit 0)', () => ['bench', '--page-size', '7'], /--page-size takes integers in \[8, 128\] separated by commas, got '7'/],
    ['bench --batch 1e9 (used to skip every point and exit 0)', () => ['bench', '--batch', '1e9'], /--batch takes integers in \[1, 65535\]/],
    ['bench --context -5', () => ['bench', '--context', '-5'], /--context takes integers in \[1, \d+\] separated by commas, got '-5'/],
    ['simulate --preset of no model (the shared model table)', () => ['simulate', '--preset', 'gpt5'], /--preset "gpt5": expected one of llama-3.1-8b, .*tiny-d64, small/],
    ['accuracy --batch and --seqs together (one name for one thing)', () => ['accuracy', '--batch', '2', '--seqs', '2'], /--seqs and --batch name the same thing; give one/],
    ['run-case --out naming a folder', () => ['run-case', '--in', join(bundle.work, 'none.safetensors'), '--out', bundle.work], /run-case: (cannot read --in|--out .*: is a folder)/],
  ];
  for (const [name, args, message] of cases) {
    it(name, () => {
      const r = run(args());
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/^\s+at /m); // no stack frames
      expect(r.stderr).not.toMatch(/^adapter:/m); // refused before the device was opened
      expect(readdirSync(bundle.work)).toEqual([]); // nothing written
    });
  }

  it('a missing output folder is reported without creating it', () => {
    run(['accuracy', '--json', join(bundle.work, 'missing', 'x.json')]);
    expect(existsSync(join(bundle.work, 'missing'))).toBe(false);
  });
});
