/**
 * `run-case`, the CLI contract outside checks use: (a) parseRunCase rejects every bad-input class
 * with a message naming the part at fault; (b) the real CLI bundle, run on cases written by the
 * independent numpy implementation (tools/saw_int4_reference.py), passes its `compare`; (c) a
 * tampered output fails `compare`, so (b) cannot pass vacuously; (d) the CLI exits 2 on malformed
 * input and writes nothing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvConfigError } from '../src/cache/paged-kv-cache';
import { parseRunCase, RUN_CASE_PAGE_SHUFFLE_SEED } from '../src/cli/run-case';
import { randomSigns } from '../src/reference/hadamard';
import { relativeL2 } from '../src/reference/metrics';
import { referenceDecode } from '../src/reference/saw-int4';
import { assembleSafetensors, parseSafetensors, requireTensor, TensorFileError, writeSafetensors, type TensorToWrite } from '../src/io/safetensors';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PYTHON = '/usr/bin/python3';
const REFERENCE = join(ROOT, 'tools/saw_int4_reference.py');

// ------------------------------------------------------------------------------------------------
// (a) parseRunCase, no GPU

const SOURCE = 'case.safetensors';
const D = 32;
const HQ = 4;
const HKV = 2;
const LENS = [2, 3];
const T = 5;

function ramp(n: number, step = 0.01): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7) + step * i);
}

type CaseTensors = Record<string, TensorToWrite>;
const VALID_METADATA: Record<string, string> = { method: 'int4-hadamard', hadamard_block: '32', rotate_v: 'false', page_size: '8' };

function validTensors(): CaseTensors {
  return {
    q: { shape: [LENS.length, HQ, D], data: ramp(LENS.length * HQ * D) },
    k: { shape: [T, HKV, D], data: ramp(T * HKV * D, 0.02) },
    v: { shape: [T, HKV, D], data: ramp(T * HKV * D, -0.01) },
    context_lens: { shape: [LENS.length], data: Int32Array.from(LENS) },
  };
}

/** A case file with some tensors replaced (undefined: removed) and metadata changed (undefined: removed). */
function caseBytes(tensors: Record<string, TensorToWrite | undefined> = {}, metadata: Record<string, string | undefined> = {}): Uint8Array {
  const all = Object.fromEntries(Object.entries({ ...validTensors(), ...tensors }).filter(([, t]) => t !== undefined)) as CaseTensors;
  const meta = Object.fromEntries(Object.entries({ ...VALID_METADATA, ...metadata }).filter(([, v]) => v !== undefined)) as Record<string, string>;
  return writeSafetensors(all, meta);
}

/** A safetensors file with I64 context_lens (writeSafetensors writes F32/I32/F16 only). */
function caseBytesWithI64Lens(lens: bigint[]): Uint8Array {
  const file = parseSafetensors(caseBytes({ context_lens: undefined }));
  const header: Record<string, unknown> = { __metadata__: file.metadata };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of file.tensors) {
    const raw = new Uint8Array(t.data.buffer.slice(0));
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + raw.length] };
    chunks.push(raw);
    offset += raw.length;
  }
  const lensRaw = new Uint8Array(new BigInt64Array(lens).buffer);
  header.context_lens = { dtype: 'I64', shape: [lens.length], data_offsets: [offset, offset + lensRaw.length] };
  chunks.push(lensRaw);
  return assembleSafetensors(header, chunks);
}

/** The error parseRunCase throws for `bytes`; fails the test when it does not throw. */
function parseError(bytes: Uint8Array): Error {
  try {
    parseRunCase(bytes, SOURCE);
  } catch (err) {
    expect((err as Error).message.startsWith(`${SOURCE}: `), `message names the file: ${(err as Error).message}`).toBe(true);
    return err as Error;
  }
  throw new Error('parseRunCase accepted a bad case');
}

function expectFileError(bytes: Uint8Array, pattern: RegExp): void {
  const err = parseError(bytes);
  expect(err).toBeInstanceOf(TensorFileError);
  expect(err.message).toMatch(pattern);
}

function expectConfigError(bytes: Uint8Array, pattern: RegExp): void {
  const err = parseError(bytes);
  expect(err).toBeInstanceOf(KvConfigError);
  expect(err.message).toMatch(pattern);
}

describe('parseRunCase: a valid case', () => {
  it('returns the tensors, the defaults and a shuffled pool that fits the case', () => {
    const c = parseRunCase(caseBytes(), SOURCE);
    expect([c.method, c.numSeqs, c.numQueryHeads, c.numKvHeads, c.headDim, c.totalTokens]).toEqual(['int4-hadamard', 2, HQ, HKV, D, T]);
    expect(c.contextLens).toEqual(LENS);
    expect(c.scale).toBeCloseTo(1 / Math.sqrt(D), 15);
    expect(c.k).toEqual(validTensors().k.data);
    expect(c.cacheConfig).toMatchObject({ pageSize: 8, hadamardBlock: 32, rotateV: false, hadamardSignSeed: null, pageShuffleSeed: RUN_CASE_PAGE_SHUFFLE_SEED });
    expect(c.cacheConfig.numPages).toBeGreaterThanOrEqual(LENS.length);
  });

  it('takes scale, hadamard_sign_seed and I64 context_lens', () => {
    const c = parseRunCase(caseBytes({}, { scale: '0.0625', hadamard_sign_seed: '4294967295', rotate_v: 'true' }), SOURCE);
    expect(c.scale).toBe(0.0625);
    expect(c.cacheConfig.hadamardSignSeed).toBe(4294967295);
    expect(c.cacheConfig.rotateV).toBe(true);
    expect(parseRunCase(caseBytesWithI64Lens([2n, 3n]), SOURCE).contextLens).toEqual(LENS);
  });

  it('ignores rotate_v for methods that do not rotate (as the numpy tool does)', () => {
    const c = parseRunCase(caseBytes({}, { method: 'int4', rotate_v: 'true' }), SOURCE);
    expect(c.cacheConfig.rotateV).toBe(false);
  });

  it('decodes a Node Buffer that shares its memory pool (readFileSync of a small file)', () => {
    const bytes = caseBytes();
    const pooled = Buffer.concat([Buffer.from('padding bytes before the file'), Buffer.from(bytes)]).subarray(29);
    expect(pooled.byteOffset).toBeGreaterThan(0);
    const c = parseRunCase(pooled, SOURCE);
    expect(c.contextLens).toEqual(LENS);
    expect(c.q).toEqual(validTensors().q.data);
  });
});

describe('parseRunCase: bad input names the tensor or field and what was expected', () => {
  const f16 = (shape: number[]): TensorToWrite => ({ dtype: 'F16', shape, data: new Uint16Array(shape.reduce((a, b) => a * b, 1)) });

  it('a file that is not safetensors', () => {
    expectFileError(new Uint8Array([1, 2, 3]), /header length.*at least 8 bytes/);
    expectFileError(caseBytes().subarray(0, 100), /header length.*only \d+ bytes follow/);
  });

  it('missing tensors', () => {
    for (const name of ['q', 'k', 'v', 'context_lens']) expectFileError(caseBytes({ [name]: undefined }), new RegExp(`tensor '${name}': missing; file has: `));
  });

  it('wrong ranks', () => {
    expectFileError(caseBytes({ q: { shape: [LENS.length * HQ, D], data: ramp(LENS.length * HQ * D) } }), /tensor 'q' shape: is \[8, 32\] \(rank 2\); expected rank 3/);
    expectFileError(caseBytes({ k: { shape: [T, HKV, D, 1], data: ramp(T * HKV * D) } }), /tensor 'k' shape: .*rank 4\); expected rank 3/);
    expectFileError(caseBytes({ context_lens: { shape: [2, 1], data: Int32Array.from(LENS) } }), /tensor 'context_lens' shape: .*expected rank 1/);
  });

  it('wrong dtypes', () => {
    expectFileError(caseBytes({ q: f16([LENS.length, HQ, D]) }), /tensor 'q' dtype: is F16; expected F32/);
    expectFileError(caseBytes({ v: f16([T, HKV, D]) }), /tensor 'v' dtype: is F16; expected F32/);
    expectFileError(caseBytes({ context_lens: { shape: [2], data: Float32Array.from(LENS) } }), /tensor 'context_lens' dtype: is F32; expected I32 or I64/);
  });

  it('shape mismatches: head dims, v vs k, GQA, one length per sequence', () => {
    expectFileError(caseBytes({ k: { shape: [T, HKV, 64], data: ramp(T * HKV * 64) } }), /tensor 'k' shape: .*head dim \(last axis\) 64 differs from q's 32/);
    expectFileError(caseBytes({ v: { shape: [T, 1, 2 * D], data: ramp(T * HKV * D) } }), /tensor 'v' shape: is \[5, 1, 64\]; expected \[5, 2, 32\], the shape of k/);
    expectFileError(caseBytes({ q: { shape: [2, 3, D], data: ramp(2 * 3 * D) } }), /Hq = 3 query heads, not a multiple of Hkv = 2 kv heads/);
    expectFileError(caseBytes({ context_lens: { shape: [3], data: Int32Array.from([1, 1, 3]) } }), /tensor 'context_lens' shape: is \[3\]; expected \[2\], one length per sequence/);
    expectFileError(caseBytes({ q: { shape: [0, HQ, D], data: new Float32Array(0) }, context_lens: { shape: [0], data: new Int32Array(0) } }), /tensor 'q' shape: is \[0, 4, 32\]; expected .* S, Hq, D >= 1/);
  });

  it('context lengths: zero, negative, a sum that is not T', () => {
    expectFileError(caseBytes({ context_lens: { shape: [2], data: Int32Array.from([0, 5]) } }), /context_lens' data: element 0 \(sequence 0\) is 0; expected every length >= 1/);
    expectFileError(caseBytes({ context_lens: { shape: [2], data: Int32Array.from([6, -1]) } }), /element 1 \(sequence 1\) is -1/);
    expectFileError(caseBytes({ context_lens: { shape: [2], data: Int32Array.from([2, 4]) } }), /sums to 6 but k and v hold T = 5 tokens/);
    expectFileError(caseBytesWithI64Lens([2n, 3n + (1n << 40n)]), /context_lens' data: element 1 .* does not fit in int32/);
  });

  it('missing metadata fields', () => {
    for (const key of ['method', 'hadamard_block', 'rotate_v', 'page_size']) {
      expectFileError(caseBytes({}, { [key]: undefined }), new RegExp(`__metadata__\\['${key}'\\]: missing; expected .*The metadata has: `));
    }
  });

  it('unparseable metadata: method, integers, rotate_v, scale, sign seed', () => {
    expectFileError(caseBytes({}, { method: 'int8' }), /__metadata__\['method'\]: is "int8"; expected one of fp16, int4, int4-hadamard/);
    for (const text of ['16.5', 'sixteen', '', '1e1']) expectFileError(caseBytes({}, { page_size: text }), /__metadata__\['page_size'\]: is .*; expected an integer string/);
    expectFileError(caseBytes({}, { hadamard_block: '0x80' }), /__metadata__\['hadamard_block'\]: is "0x80"; expected an integer string/);
    expectFileError(caseBytes({}, { rotate_v: 'True' }), /__metadata__\['rotate_v'\]: is "True"; expected "true" or "false"/);
    for (const text of ['abc', 'inf', 'NaN', '', '1e999']) expectFileError(caseBytes({}, { scale: text }), /__metadata__\['scale'\]: is .*; expected a finite number/);
    for (const text of ['-1', '4294967296', 'seven']) expectFileError(caseBytes({}, { hadamard_sign_seed: text }), /__metadata__\['hadamard_sign_seed'\]: is .*; expected an integer string in \[0, 4294967295\]/);
  });

  it('what the paged cache rejects comes with its KvConfigError message', () => {
    expectConfigError(caseBytes({}, { page_size: '4' }), /paged KV cache does not take this case: pageSize must be an integer in \[8, 128\], got 4/);
    expectConfigError(caseBytes({}, { hadamard_block: '12' }), /Hadamard block 12 is not a power of two/);
    expectConfigError(caseBytes({}, { hadamard_block: '64' }), /Hadamard block 64 must be ≥ 2 and divide headDim 32/);
    expectConfigError(caseBytes({}, { method: 'int4', hadamard_sign_seed: '3' }), /hadamardSignSeed needs method int4-hadamard/);
    const d48 = { q: { shape: [2, HQ, 48], data: ramp(2 * HQ * 48) }, k: { shape: [T, HKV, 48], data: ramp(T * HKV * 48) }, v: { shape: [T, HKV, 48], data: ramp(T * HKV * 48) } };
    expectConfigError(caseBytes(d48, { hadamard_block: '16' }), /headDim 48 must be a multiple of 32/);
  });

  it('values that are not finite, or beyond what the cache stores in float16', () => {
    const k = ramp(T * HKV * D);
    k[HKV * D + 5] = NaN;
    expectFileError(caseBytes({ k: { shape: [T, HKV, D], data: k } }), /tensor 'k' data: element \[1, 0, 5\] is NaN; expected finite values/);
    const v = ramp(T * HKV * D);
    v[7] = 1e5;
    expectFileError(caseBytes({ v: { shape: [T, HKV, D], data: v } }, { method: 'fp16' }), /tensor 'v' data: token 0, kv head 0, element 7 is 100000: beyond the float16 range/);
    const wide = ramp(T * HKV * D);
    wide[D] = -6e5; // (max - min)/15 > 65504 on token 0, kv head 1
    expectFileError(caseBytes({ k: { shape: [T, HKV, D], data: wide } }, { method: 'int4' }), /tensor 'k' data: token 0, kv head 1: .*INT4 min or scale .* beyond the float16 range/);
  });
});

// ------------------------------------------------------------------------------------------------
// (b)–(d) the real CLI bundle against the numpy implementation

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[]): Run {
  const r = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A file's bytes in a fresh Uint8Array (parseSafetensors mis-decodes pooled Node Buffers). */
function readBytes(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

function python(args: string[]): Run {
  return run(PYTHON, [REFERENCE, ...args]);
}

interface CompareReport {
  passed: boolean;
  reason?: string;
  vs_reference: { rel_l2: number; max_abs: number };
  vs_exact: { rel_l2: number };
  tolerance: { max_ratio: number; bound_rel_l2: number };
}

/**
 * Largest (error vs the numpy reference) / (error vs exact attention), relative L2: the kernels must
 * reproduce the quantised reference, not merely approximate attention. Measured (SwiftShader and an
 * H200): int4 methods 1e-6..3e-4 (the top from INT4 codes flipped at rounding midpoints, f32 vs
 * float64, on a 2018-token case), fp16 about 4e-4. 1e-2 keeps a 25x margin and still separates
 * "reproduces the reference" from "is roughly attention" by two orders of magnitude.
 */
const MAX_REFERENCE_TO_EXACT_RATIO = 1e-2;

interface EndToEndCase {
  name: string;
  makeCase: string[];
  cliFlags?: string[];
}

const CASES: EndToEndCase[] = [
  { name: 'fp16, D 64, GQA 4, a length of 1, page 8', makeCase: ['--method', 'fp16', '--head-dim', '64', '--q-heads', '8', '--kv-heads', '2', '--context-lens', '1,21', '--page-size', '8'] },
  { name: 'int4, D 128, GQA 4 (one kv head), lengths not multiples of 16, given scale', makeCase: ['--method', 'int4', '--head-dim', '128', '--q-heads', '4', '--kv-heads', '1', '--context-lens', '17,5,32', '--page-size', '16', '--scale', '0.05'] },
  { name: 'int4-hadamard B 128, K only, D 128, a 300-token sequence (split-K)', makeCase: ['--method', 'int4-hadamard', '--head-dim', '128', '--hadamard-block', '128', '--rotate-v', 'false', '--q-heads', '8', '--kv-heads', '2', '--context-lens', '9,300', '--page-size', '16'] },
  { name: 'int4-hadamard B 16, K and V, D 64, GQA 4, a length of 1, page 32', makeCase: ['--method', 'int4-hadamard', '--head-dim', '64', '--hadamard-block', '16', '--rotate-v', 'true', '--q-heads', '8', '--kv-heads', '2', '--context-lens', '1,40', '--page-size', '32'] },
  { name: 'int4-hadamard B 64, K and V, D 128, GQA 4, without subgroups', makeCase: ['--method', 'int4-hadamard', '--head-dim', '128', '--hadamard-block', '64', '--rotate-v', 'true', '--q-heads', '16', '--kv-heads', '4', '--context-lens', '3,19,1', '--page-size', '8'], cliFlags: ['--disable-feature', 'subgroups'] },
  { name: 'int4, D 64, GQA 8, without subgroups', makeCase: ['--method', 'int4', '--head-dim', '64', '--q-heads', '8', '--kv-heads', '1', '--context-lens', '65', '--page-size', '16'], cliFlags: ['--disable-feature', 'subgroups'] },
  // the tensor-core kernel (its software step here; tensor cores where the adapter has them)
  { name: 'int4-hadamard B 128, D 128, GQA 4, --kernel matrix', makeCase: ['--method', 'int4-hadamard', '--head-dim', '128', '--hadamard-block', '128', '--rotate-v', 'true', '--q-heads', '8', '--kv-heads', '2', '--context-lens', '9,300', '--page-size', '16'], cliFlags: ['--kernel', 'matrix'] },
  { name: 'fp16, D 64, GQA 4, --kernel matrix', makeCase: ['--method', 'fp16', '--head-dim', '64', '--q-heads', '8', '--kv-heads', '2', '--context-lens', '1,21', '--page-size', '8'], cliFlags: ['--kernel', 'matrix'] },
];

describe('run-case CLI against tools/saw_int4_reference.py', () => {
  let work = '';
  let cli = '';
  const outputs = new Map<string, { casePath: string; outPath: string }>();
  /** Per method: the largest relative L2 error vs the numpy reference and max_ratio of compare. */
  const worst = new Map<string, { relL2: number; maxRatio: number }>();

  beforeAll(() => {
    const numpy = spawnSync(PYTHON, ['-c', 'import numpy'], { encoding: 'utf8' });
    if (numpy.error || numpy.status !== 0) {
      throw new Error(
        `${PYTHON} with numpy is needed to check the CLI against the independent reference ` +
          `(${numpy.error?.message ?? numpy.stderr.trim()}). Install Debian's python3-numpy: ` +
          '`sudo apt-get install python3-numpy` (or `sudo bash scripts/install-debian-deps.sh`).',
      );
    }
    work = mkdtempSync(join(tmpdir(), 'run-case-test-'));
    // A private bundle: other suites may rebuild dist-cli/ (emptyOutDir) while this one runs. It
    // stays under the project so that its one external import, `webgpu`, resolves from node_modules.
    const outDir = join(ROOT, 'node_modules/.cache/run-case-test', String(process.pid));
    mkdirSync(outDir, { recursive: true });
    const build = run('npx', ['vite', 'build', '-c', 'vite.cli.config.ts', '--logLevel', 'warn', '--outDir', outDir]);
    if (build.status !== 0) throw new Error(`building the CLI failed:\n${build.stdout}\n${build.stderr}`);
    cli = join(outDir, 'cli.mjs');
  });

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
    if (cli) rmSync(join(cli, '..'), { recursive: true, force: true });
    if (worst.size > 0) {
      const lines = [...worst].map(([method, w]) => `  ${method}: rel L2 ${w.relL2.toExponential(2)}, max |got - ref| / bound ${w.maxRatio.toExponential(2)}`);
      console.log(`run-case vs tools/saw_int4_reference.py, worst per method:\n${lines.join('\n')}`);
    }
  });

  it.each(CASES.map((c, i) => [c.name, c, i] as const))('%s', (_name, c, i) => {
    const casePath = join(work, `case-${i}.safetensors`);
    const outPath = join(work, `out-${i}.safetensors`);
    const made = python(['make-case', '--out', casePath, '--seed', String(i + 1), ...c.makeCase]);
    expect(made.status, made.stderr).toBe(0);

    const cliRun = run('node', [cli, 'run-case', '--in', casePath, '--out', outPath, ...(c.cliFlags ?? [])]);
    expect(cliRun.status, cliRun.stderr).toBe(0);
    const adapterLine = cliRun.stderr.split('\n').find((l) => l.startsWith('adapter: '));
    expect(adapterLine, cliRun.stderr).toBeDefined();
    if (c.cliFlags?.includes('subgroups')) expect(adapterLine).not.toMatch(/features:.*subgroups/);

    const written = parseSafetensors(readBytes(outPath), outPath);
    const method = c.makeCase[c.makeCase.indexOf('--method') + 1];
    expect(written.metadata.method).toBe(method);
    expect(written.metadata.adapter).toBe(adapterLine?.slice('adapter: '.length));
    expect(written.metadata.kernel).toBe(c.cliFlags?.includes('--kernel') ? c.cliFlags[c.cliFlags.indexOf('--kernel') + 1] : 'auto');
    const qShape = requireTensor(parseSafetensors(readBytes(casePath)), 'q', 'F32', 3).shape;
    expect(requireTensor(written, 'out', 'F32', 3).shape).toEqual(qShape);

    const compared = python(['compare', '--case', casePath, '--got', outPath]);
    expect(compared.status, `${compared.stdout}\n${compared.stderr}`).toBe(0);
    const report = JSON.parse(compared.stdout) as CompareReport;
    expect(report.passed).toBe(true);
    expect(report.vs_reference.rel_l2).toBeLessThan(MAX_REFERENCE_TO_EXACT_RATIO * report.vs_exact.rel_l2);
    outputs.set(method + (c.cliFlags ? ` (${c.cliFlags.join(' ')})` : ''), { casePath, outPath });
    const before = worst.get(method) ?? { relL2: 0, maxRatio: 0 };
    worst.set(method, { relL2: Math.max(before.relL2, report.vs_reference.rel_l2), maxRatio: Math.max(before.maxRatio, report.tolerance.max_ratio) });
  });

  it('hadamard_sign_seed: the output follows the randomized rotation (float64 TS reference; numpy has no signs)', () => {
    const casePath = join(work, 'signed-case.safetensors');
    const made = python(['make-case', '--out', casePath, '--seed', '11', '--method', 'int4-hadamard', '--head-dim', '64', '--hadamard-block', '64',
      '--rotate-v', 'true', '--q-heads', '4', '--kv-heads', '2', '--context-lens', '7,26', '--page-size', '8']);
    expect(made.status, made.stderr).toBe(0);
    const file = parseSafetensors(readBytes(casePath));
    const tensors = Object.fromEntries([...file.tensors].map(([name, t]) => [name, { shape: t.shape, data: t.data }]));
    writeFileSync(casePath, writeSafetensors(tensors, { ...file.metadata, hadamard_sign_seed: '12345' }));
    const outPath = join(work, 'signed-out.safetensors');
    const cliRun = run('node', [cli, 'run-case', '--in', casePath, '--out', outPath]);
    expect(cliRun.status, cliRun.stderr).toBe(0);
    const got = requireTensor(parseSafetensors(readBytes(outPath)), 'out', 'F32', 3).data;

    const c = parseRunCase(readBytes(casePath), casePath);
    const reference = (signs: Int8Array | null) =>
      referenceDecode({ method: 'int4-hadamard', hadamardBlock: 64, rotateV: true, signs }, { ...c, contextLens: c.contextLens, scale: c.scale }).out;
    const signed = reference(randomSigns(c.headDim, 12345));
    const unsigned = reference(null);
    // The signs change the quantisation error, not the attention: the two references differ by a few %.
    expect(relativeL2(got, signed)).toBeLessThan(MAX_REFERENCE_TO_EXACT_RATIO * relativeL2(got, unsigned));
  });

  it('a tampered output fails compare (the check is not vacuous)', () => {
    for (const method of ['int4-hadamard', 'fp16']) {
      const done = outputs.get(method);
      expect(done, `the ${method} end-to-end case ran`).toBeDefined();
      const { casePath, outPath } = done!;
      const out = requireTensor(parseSafetensors(readBytes(outPath), outPath), 'out', 'F32', 3);
      const data = out.data.slice();
      // One element moved by 2 % of the output's largest magnitude: small next to the int4 methods'
      // quantisation error vs exact attention (13-67 % relative L2 on these cases), yet it must fail.
      const maxAbs = data.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      const at = Math.floor(data.length / 2);
      data[at] += 0.02 * maxAbs;
      const tamperedPath = join(work, `tampered-${method}.safetensors`);
      writeFileSync(tamperedPath, writeSafetensors({ out: { shape: out.shape, data } }));
      const compared = python(['compare', '--case', casePath, '--got', tamperedPath]);
      expect(compared.status, compared.stdout).toBe(1);
      const report = JSON.parse(compared.stdout) as CompareReport & { tolerance: { worst_at: number[] } };
      expect(report.passed).toBe(false);
      const [s, h, d] = report.tolerance.worst_at;
      expect((s * out.shape[1] + h) * out.shape[2] + d).toBe(at);
    }
  });

  it('exits 2 on a malformed case and writes no output', () => {
    const good = python(['make-case', '--out', join(work, 'good.safetensors'), '--method', 'int4', '--head-dim', '64', '--context-lens', '3']);
    expect(good.status, good.stderr).toBe(0);
    const file = parseSafetensors(readBytes(join(work, 'good.safetensors')));
    const tensors = Object.fromEntries([...file.tensors].map(([name, t]) => [name, { shape: t.shape, data: t.data }]));
    const malformed: Array<[string, Uint8Array, RegExp]> = [
      ['bad-page-size', writeSafetensors(tensors, { ...file.metadata, page_size: 'sixteen' }), /__metadata__\['page_size'\]: is "sixteen"; expected an integer string/],
      ['truncated', readBytes(join(work, 'good.safetensors')).subarray(0, 64), /header length .*bytes follow/],
      ['no-v', writeSafetensors({ q: tensors.q, k: tensors.k, context_lens: tensors.context_lens }, file.metadata), /tensor 'v': missing/],
    ];
    for (const [name, bytes, message] of malformed) {
      const dir = join(work, `malformed-${name}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'case.safetensors'), bytes);
      const outPath = join(dir, 'out.safetensors');
      const r = run('node', [cli, 'run-case', '--in', join(dir, 'case.safetensors'), '--out', outPath]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/^run-case: case\.safetensors: /m);
      expect(existsSync(outPath)).toBe(false);
      expect(readdirSync(dir)).toEqual(['case.safetensors']);
    }
  });

  it('exits 2 on unknown commands and flags, 0 with usage on --help', () => {
    const unknownCommand = run('node', [cli, 'frobnicate']);
    expect(unknownCommand.status).toBe(2);
    expect(unknownCommand.stderr).toMatch(/unknown command "frobnicate"; commands: run-case/);
    const unknownFlag = run('node', [cli, 'run-case', '--in', 'x', '--out', 'y', '--bogus']);
    expect(unknownFlag.status).toBe(2);
    expect(unknownFlag.stderr).toMatch(/run-case: Unknown option '--bogus'/);
    const badFeature = run('node', [cli, '--disable-feature', 'subgroup', 'run-case']);
    expect(badFeature.status).toBe(2);
    expect(badFeature.stderr).toMatch(/--disable-feature "subgroup" is not an optional feature .*subgroups/);
    const badToggle = run('node', [cli, '--dawn-toggle', 'Disable Robustness', 'run-case']);
    expect(badToggle.status).toBe(2);
    expect(badToggle.stderr).toMatch(/--dawn-toggle "Disable Robustness" is not a Dawn toggle name/);
    const noToggle = run('node', [cli, 'run-case', '--dawn-toggle']);
    expect(noToggle.status).toBe(2);
    expect(noToggle.stderr).toMatch(/--dawn-toggle needs a value: a Dawn toggle name/);
    const help = run('node', [cli, '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/Commands:\n {2}run-case {2}/);
    expect(run('node', [cli]).status).toBe(2);
  });
});
