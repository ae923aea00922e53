/**
 * The model commands through the real CLI bundle on the trained model: `perplexity --quick` (its
 * table, the JSON contract, and FP16 KV's perplexity within 0.5 % of PyTorch's; FP16 only: ~25 s on
 * SwiftShader), `generate` (the table, each method's continuation, the JSON), and
 * bad command lines and model folders refused before any work (exit 2, one line, no stack, no device).
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, useCliBundle } from './cli-bundle';

/** FP16 KV perplexity vs PyTorch fp32 (exact K/V) on the quick slice, relative: the bound (measured +0.01 %). */
const PERPLEXITY_REL_TOL = 0.005;
const bundle = useCliBundle('model-cli-test', 300_000);
const run = bundle.run;

describe('model commands: refused before any work (exit 2, one line, no stack, no device)', () => {
  const noWeights = () => {
    const dir = join(bundle.work, 'run-without-weights');
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(ROOT, 'model/run/reference.json'), join(dir, 'reference.json'));
    return dir;
  };
  const cases: [string, () => string[], RegExp][] = [
    ['perplexity --methods of no method', () => ['perplexity', '--quick', '--methods', 'int3'], /perplexity: --methods: unknown method 'int3'; known: fp16, int4/],
    ['perplexity --batch 0', () => ['perplexity', '--batch', '0'], /--batch "0": expected an integer in \[1, 65535\]/],
    ['perplexity --page-size 4', () => ['perplexity', '--page-size', '4'], /--page-size 4: expected an integer in \[8, 128\]/],
    ['perplexity --json into a missing folder', () => ['perplexity', '--json', join(bundle.work, 'missing', 'p.json')], /--json .*: folder .*missing does not exist/],
    ['perplexity --run of an empty folder', () => ['perplexity', '--run', bundle.work], /reference\.json not found \(the run's PyTorch reference\)/],
    ['perplexity --run without the weights', () => ['perplexity', '--run', noWeights()], /model\.safetensors not found: the trained weights/],
    ['generate without --prompt', () => ['generate'], /generate: --prompt TEXT is required/],
    ['generate past the context length', () => ['generate', '--prompt', 'x', '--tokens', '600'], /--prompt has 2 tokens \(with <bos>\) and --tokens 600: together more than the model's context of 512; at most 511 tokens/],
    ['generate --methods with a block larger than head_dim', () => ['generate', '--prompt', 'x', '--methods', 'int4-hadamard-b256'], /Hadamard block 256 is not offered/],
  ];
  for (const [name, args, message] of cases) {
    it(name, () => {
      const before = readdirSync(bundle.work).length;
      const r = run(args());
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n').filter((l) => !l.startsWith('Warning:'))).toHaveLength(1);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stderr).not.toMatch(/^adapter:/m);
      expect(readdirSync(bundle.work).length).toBeLessThanOrEqual(before + 1); // at most the folder the case made
    });
  }
});

describe('the commands on the trained model', () => {
  it('perplexity --quick: a row per method beside PyTorch, and {"tokens", "referencePerplexity", "methods": {id: {"perplexity"}}}', () => {
    const out = join(bundle.work, 'ppl.json');
    const r = run(['perplexity', '--quick', '--methods', 'fp16', '--json', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^quick slice: 256 targets; PyTorch fp32 \(exact K\/V\) perplexity \d+\.\d{4}$/m);
    expect(r.stdout).toMatch(/^method\s+perplexity\s+vs FP16 KV\s+vs PyTorch\s+loss\s+bits\/el\s+tokens\/s$/m);
    expect(r.stdout).toMatch(/^fp16\s+\d+\.\d{4}\s+–\s+[+-]0\.\d\d %/m);
    const json = JSON.parse(readFileSync(out, 'utf8'));
    const reference = JSON.parse(readFileSync(join(ROOT, 'model/run/reference.json'), 'utf8'));
    expect(json.tokens).toBe(256);
    expect(json.slice).toBe('quick');
    expect(json.referencePerplexity).toBe(reference.quick.perplexity);
    expect(Object.keys(json.methods)).toEqual(['fp16']);
    expect(Math.abs(json.methods.fp16.perplexity / json.referencePerplexity - 1), `FP16 KV ${json.methods.fp16.perplexity} vs PyTorch ${json.referencePerplexity}`).toBeLessThanOrEqual(PERPLEXITY_REL_TOL);
  }, 300_000);

  it('continues a prompt per method: a table, each continuation, and the JSON', () => {
    const out = join(bundle.work, 'gen.json');
    const r = run(['generate', '--prompt', '=head1 NAME\n\n', '--tokens', '6', '--methods', 'int4-hadamard', '--json', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^method\s+tokens\/s\s+prefill tokens\/s\s+first token ≠ fp16$/m);
    expect(r.stdout).toMatch(/^fp16 .* –$/m);
    expect(r.stdout).toMatch(/^int4-hadamard-b128 .* (never|\d)$/m);
    expect(r.stdout).toMatch(/^== fp16 \(FP16; the baseline\)\n=head1 NAME\n\n/m);
    const json = JSON.parse(readFileSync(out, 'utf8'));
    expect(Object.keys(json.methods)).toEqual(['fp16', 'int4-hadamard-b128']);
    expect(json.methods.fp16.ids).toHaveLength(6);
    expect(json.promptIds[0]).toBe(4094); // <bos>
    expect(json.methods['int4-hadamard-b128'].firstDivergenceFromFp16 === null || Number.isInteger(json.methods['int4-hadamard-b128'].firstDivergenceFromFp16)).toBe(true);
    expect(json.methods.fp16.tokensPerSecond).toBeGreaterThan(0);
  });
});
