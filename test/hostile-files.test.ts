/**
 * Hostile tensor files: every one is refused with a TensorFileError (TS) / ValueError (the Python
 * tool) whose message is one line, bounded and names the problem; never another error, never a hang.
 *  - the committed corpus test/fixtures/hostile (written by tools/make_hostile_corpus.py, which must
 *    reproduce it byte for byte), fed to src/io and to tools/saw_int4_reference.py;
 *  - in-memory regressions too big to commit (a header nested 10^5 deep, 10^6 tensor names);
 *  - a seeded mutation fuzzer over valid safetensors and .npy files, whose safetensors mutants the
 *    Python reader must accept or refuse exactly as the TS reader does;
 *  - `compare` of tools/saw_int4_reference.py on extreme cases (exact agreement against a nan bound).
 * As test/io.test.ts: Debian's /usr/bin/python3 with numpy is required; without it these tests FAIL
 * (never skipped).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { NPY_MAX_HEADER_BYTES, parseNpy, writeNpy } from '../src/io/npy';
import {
  MAX_ERROR_MESSAGE_CHARS,
  MAX_JSON_DEPTH,
  TensorFileError,
  assembleSafetensors,
  elementCount,
  parseSafetensors,
  requireTensor,
  writeSafetensors,
} from '../src/io/safetensors';

const PYTHON = '/usr/bin/python3';
const TOOLS_DIR = fileURLToPath(new URL('../tools/', import.meta.url));
const CORPUS_DIR = fileURLToPath(new URL('./fixtures/hostile/', import.meta.url));
const INSTALL_HINT = "install Debian's python3-numpy (apt-get install python3-numpy) and run the tests again";
/** The brief's bound on a message; the readers cut at MAX_ERROR_MESSAGE_CHARS, below it. */
const MESSAGE_LIMIT = 2000;

interface CorpusEntry {
  about: string;
  expect: 'refuse' | 'accept';
  /** Fragment of the TS message (refused files). */
  ts?: string;
  /** Fragment of the Python message (refused .safetensors files). */
  py?: string;
}
const MANIFEST = JSON.parse(readFileSync(join(CORPUS_DIR, 'manifest.json'), 'utf8')) as { files: Record<string, CorpusEntry> };

// ---------------------------------------------------------------------------------------------
// helpers

/** Parses `bytes` with the reader for `name`'s extension. */
function readTensorFile(name: string, bytes: Uint8Array): unknown {
  return name.endsWith('.npy') ? parseNpy(bytes, name) : parseSafetensors(bytes, name);
}

/** A message fit for a person: one line, bounded. */
function expectTidyMessage(message: string, what: string): void {
  expect(message, `${what}: one line`).not.toMatch(/[\n\r\u2028\u2029]/);
  expect(message.length, `${what}: message length`).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_CHARS);
  expect(message.length, `${what}: message length`).toBeLessThan(MESSAGE_LIMIT);
}

/** Runs `fn`; it must throw a TensorFileError with a tidy message, which is returned. */
function refusal(fn: () => unknown, what: string): TensorFileError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof TensorFileError)) {
    expect.fail(`${what}: expected a TensorFileError, got ${caught === undefined ? 'success' : `${(caught as Error)?.name}: ${String((caught as Error)?.message).slice(0, 300)}`}`);
  }
  expectTidyMessage(caught.message, what);
  return caught;
}

function requirePythonWithNumpy(): void {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} not found: ${INSTALL_HINT}`);
  const r = spawnSync(PYTHON, ['-c', 'import numpy'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${PYTHON} cannot import numpy (${(r.stderr || String(r.error)).trim()}): ${INSTALL_HINT}`);
}

function runPython(script: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  requirePythonWithNumpy();
  const result = spawnSync(PYTHON, [join(TOOLS_DIR, script), ...args], { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
  if (result.error) throw new Error(`could not run ${PYTHON} ${script}: ${result.error.message}; ${INSTALL_HINT}`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

interface PythonOutcome {
  outcome: 'accepted' | 'refused' | 'crashed';
  message?: string;
}

/** tools/make_hostile_corpus.py check: the Python reader's outcome for each file (by base name). */
function pythonOutcomes(paths: string[]): Record<string, PythonOutcome> {
  const r = runPython('make_hostile_corpus.py', ['check', ...paths]);
  if (r.status !== 0 && r.status !== 1) expect.fail(`make_hostile_corpus.py check exited ${r.status}\n${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, PythonOutcome>;
}

const scratch: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A safetensors file from header text and data bytes. */
function rawSafetensors(headerText: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const header = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('the hostile corpus (test/fixtures/hostile)', () => {
  const names = Object.keys(MANIFEST.files);

  it('lists every file it holds, each a few KB at most', () => {
    const present = readdirSync(CORPUS_DIR).filter((n) => n !== 'manifest.json').sort();
    expect(present).toEqual([...names].sort());
    expect(names.filter((n) => MANIFEST.files[n].expect === 'refuse').length).toBeGreaterThanOrEqual(90);
    for (const name of present) expect(readFileSync(join(CORPUS_DIR, name)).length, name).toBeLessThanOrEqual(16 * 1024);
  });

  it('is exactly what tools/make_hostile_corpus.py writes', () => {
    const dir = tempDir('hostile-corpus-');
    const r = runPython('make_hostile_corpus.py', ['write', '--dir', dir]);
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(readdirSync(CORPUS_DIR).sort());
    for (const name of readdirSync(dir)) {
      const made = readFileSync(join(dir, name));
      if (!made.equals(readFileSync(join(CORPUS_DIR, name)))) expect.fail(`${name} differs from what the generator writes: run tools/make_hostile_corpus.py write --dir test/fixtures/hostile`);
    }
  });

  it('the TS readers refuse every hostile file with a TensorFileError naming the problem, and accept the tricky valid ones', () => {
    for (const [name, entry] of Object.entries(MANIFEST.files)) {
      const bytes = new Uint8Array(readFileSync(join(CORPUS_DIR, name)));
      if (entry.expect === 'accept') {
        expect(() => readTensorFile(name, bytes), `${name} (${entry.about})`).not.toThrow();
        continue;
      }
      const err = refusal(() => readTensorFile(name, bytes), `${name} (${entry.about})`);
      expect(err.message.startsWith(`${name}: `), `${name}: the message names the file: ${err.message}`).toBe(true);
      expect(err.message, `${name} (${entry.about})`).toContain(entry.ts);
    }
  });

  it('tools/saw_int4_reference.py refuses the same safetensors files (ValueError, same problem named) and accepts the same valid ones', () => {
    const outcomes = pythonOutcomes([CORPUS_DIR]);
    const safetensors = Object.entries(MANIFEST.files).filter(([name]) => name.endsWith('.safetensors'));
    expect(Object.keys(outcomes).sort()).toEqual(safetensors.map(([name]) => name).sort());
    for (const [name, entry] of safetensors) {
      const got = outcomes[name];
      const what = `${name} (${entry.about}), Python`;
      if (entry.expect === 'accept') {
        expect(got.outcome, `${what}: ${got.message}`).toBe('accepted');
        continue;
      }
      expect(got.outcome, `${what}: ${got.message}`).toBe('refused');
      expectTidyMessage(got.message!, what);
      expect(got.message, what).toContain(entry.py);
    }
  });
});

describe('regressions too big for the corpus', () => {
  it('a header nested 10^5 deep is refused before any recursion (was a RangeError: stack overflow)', () => {
    const deep = 100_000;
    for (const [what, text] of [
      ['arrays in a tensor', `{"a":${'['.repeat(deep)}${']'.repeat(deep)}}`],
      ['arrays as the header', `${'['.repeat(deep)}${']'.repeat(deep)}`],
      ['objects', `${'{"a":'.repeat(deep)}0${'}'.repeat(deep)}`],
      ['a shape', `{"a":{"dtype":"F32","shape":${'['.repeat(deep)}${']'.repeat(deep)},"data_offsets":[0,0]}}`],
    ] as const) {
      const err = refusal(() => parseSafetensors(rawSafetensors(text), 'deep.safetensors'), what);
      expect(err.message).toContain(`more than ${MAX_JSON_DEPTH} levels deep`);
    }
    // a .npy header that deep is longer than np.load's limit; one just inside the limit is nested too deep
    const npyDeep = `{'descr': '<f4', 'fortran_order': False, 'shape': ${'('.repeat(NPY_MAX_HEADER_BYTES / 2 - 40)}${')'.repeat(NPY_MAX_HEADER_BYTES / 2 - 40)}}`;
    const npy = writeNpy(new Float32Array(1), [1]);
    const header = new TextEncoder().encode(npyDeep.padEnd(Math.ceil((npyDeep.length + 11) / 64) * 64 - 11, ' ') + '\n');
    const bytes = new Uint8Array(10 + header.length);
    bytes.set(npy.subarray(0, 8));
    new DataView(bytes.buffer).setUint16(8, header.length, true);
    bytes.set(header, 10);
    expect(refusal(() => parseNpy(bytes, 'deep.npy'), 'deep npy').message).toContain(`more than ${MAX_JSON_DEPTH} levels deep`);
  });

  it('2 x 10^5 tensor names: messages list a few names and "… and N more" (10^6 made an 8.9 MB message)', () => {
    const count = 200_000; // enough to show the cut; 10^6 takes seconds in JSON.parse alone
    const entries: string[] = [];
    for (let i = 0; i < count; i++) entries.push(`"tensor_${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
    const file = parseSafetensors(rawSafetensors(`{${entries.join(',')}}`), 'many.safetensors');
    expect(file.tensors.size).toBe(count);
    const err = refusal(() => requireTensor(file, 'q', 'float', 3, 'many.safetensors'), 'requireTensor');
    expect(err.message).toContain("many.safetensors: tensor 'q': missing; file has: tensor_0, tensor_1,");
    expect(err.message).toContain(`… and ${count - 8} more`);
    // the same file with one bad entry last: the message names that one only
    entries.push('"bad":{"dtype":"X99","shape":[0],"data_offsets":[0,0]}');
    const bad = refusal(() => parseSafetensors(rawSafetensors(`{${entries.join(',')}}`), 'many.safetensors'), 'bad entry');
    expect(bad.message).toBe(
      "many.safetensors: tensor 'bad' dtype: \"X99\" is not a safetensors dtype; expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U32, U16, U8, BOOL",
    );
  });

  it('the Python tool cuts long lists too (10^5 names in the output file compare reads)', () => {
    const dir = tempDir('hostile-names-');
    const entries: string[] = [];
    for (let i = 0; i < 100_000; i++) entries.push(`"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
    const gotPath = join(dir, 'got.safetensors');
    writeFileSync(gotPath, rawSafetensors(`{${entries.join(',')}}`));
    const casePath = join(dir, 'case.safetensors');
    const made = runPython('saw_int4_reference.py', ['make-case', '--out', casePath, '--method', 'fp16', '--head-dim', '32', '--context-lens', '3']);
    expect(made.status, made.stderr).toBe(0);
    const r = runPython('saw_int4_reference.py', ['compare', '--case', casePath, '--got', gotPath]);
    expect(r.status, r.stderr).toBe(2);
    const message = r.stderr.trim();
    expectTidyMessage(message, 'Python compare');
    expect(message).toContain("tensor 'out' missing; file has: t0, t1, t2");
    expect(message).toContain('… and 99992 more');
  });

  it('duplicate tensor names are refused, not resolved to the last (JSON.parse keeps the last)', () => {
    const data = new Uint8Array(16);
    const text = '{"k":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"k":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}';
    expect(refusal(() => parseSafetensors(rawSafetensors(text, data)), 'duplicate').message).toContain("tensor 'k': appears more than once in the header");
    // brackets, braces and quotes inside strings are not structure
    const tricky = '{"__metadata__":{"a":"[{\\"k\\":1,\\"k\\":2}]","[":"{"},"k":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const file = parseSafetensors(rawSafetensors(tricky, new Uint8Array(8)));
    expect(file.metadata).toEqual({ a: '[{"k":1,"k":2}]', '[': '{' });
  });
});

// ---------------------------------------------------------------------------------------------
// mutation fuzzer

/** mulberry32: a small seeded PRNG, [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Valid files to mutate. No I64/U32 tensors: their int32 range check is TS-only (numpy reads them). */
function baseSafetensors(): Uint8Array[] {
  const ramp = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 3);
  const plain = writeSafetensors(
    {
      q: { shape: [2, 3], data: ramp(6) },
      context_lens: { shape: [2], data: Int32Array.from([3, 5]) },
      half: { dtype: 'F16', shape: [4], data: Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x8000]) },
      scalar: { shape: [], data: new Float32Array([2.5]) },
      empty: { shape: [0, 4], data: new Float32Array(0) },
    },
    { method: 'int4-hadamard', note: 'caf\u00e9 [x] {"y"}' },
  );
  const header = {
    u8: { dtype: 'U8', shape: [3], data_offsets: [0, 3] },
    bf16: { dtype: 'BF16', shape: [2], data_offsets: [3, 7] },
    f64: { dtype: 'F64', shape: [1], data_offsets: [7, 15] },
    i16: { dtype: 'I16', shape: [2, 1], data_offsets: [15, 19] },
    bool: { dtype: 'BOOL', shape: [1], data_offsets: [19, 20] },
  };
  const raw = new Uint8Array(20).map((_, i) => (i * 37) & 0xff);
  return [plain, assembleSafetensors(header, [raw])];
}

function baseNpy(): Uint8Array[] {
  const v3 = writeNpy(Int32Array.from([1, -2, 3]), [3]);
  v3[6] = 3; // a version 3.0 file: the same layout but a u32 header length
  const v3bytes = new Uint8Array(v3.length + 2);
  v3bytes.set(v3.subarray(0, 8));
  new DataView(v3bytes.buffer).setUint32(8, new DataView(v3.buffer).getUint16(8, true), true);
  v3bytes.set(v3.subarray(10), 12);
  return [writeNpy(Float32Array.from([1.5, -2, 0, 7, 8, 9]), [2, 3]), writeNpy(new Float32Array([3]), []), v3bytes];
}

/** Tokens to splice into headers: structure, numbers at the edges, names, dtypes. */
const TOKENS = [
  '{', '}', '[', ']', ',', ':', '"', '\\', '"a"', '"q"', '"__metadata__"', '"dtype"', '"shape"', '"data_offsets"', '"F32"', '"I64"', '"U32"',
  '"X"', '0', '-1', '1e400', '9007199254740993', '2.5', '24', 'null', 'true', 'NaN', '[0,4]', '[[[[', '}}}}', '\u00e9', '\ufeff', '\u0000',
  "'", '(', ')', 'True', 'False', "'<f4'", "'>f8'", "'descr'", "'shape'", '(2,)', '(-1,)', '1L',
];

/** Header range of a file: [start, end) of the JSON (safetensors) or dict text (npy). */
function headerRange(bytes: Uint8Array, npy: boolean): [number, number] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (npy) {
    const v1 = bytes[6] === 1;
    return [v1 ? 10 : 12, (v1 ? 10 : 12) + (v1 ? view.getUint16(8, true) : view.getUint32(8, true))];
  }
  return [8, 8 + Number(view.getBigUint64(0, true))];
}

/** `bytes` with its header replaced by `header` and the length field fixed up. */
function withHeader(bytes: Uint8Array, npy: boolean, header: Uint8Array): Uint8Array {
  const [start, end] = headerRange(bytes, npy);
  const out = new Uint8Array(start + header.length + bytes.length - end);
  out.set(bytes.subarray(0, start));
  out.set(header, start);
  out.set(bytes.subarray(end), start + header.length);
  const view = new DataView(out.buffer);
  if (!npy) view.setBigUint64(0, BigInt(header.length), true);
  else if (start === 10) view.setUint16(8, Math.min(header.length, 0xffff), true);
  else view.setUint32(8, header.length, true);
  return out;
}

/**
 * A structural edit of a safetensors header that keeps it valid JSON and keeps spans consistent, so
 * that the tiling and duplicate rules are reached: shift a tensor, repeat or drop one, add an empty one.
 */
function editEntries(headerText: string, rand: () => number): string {
  const pick = (n: number) => Math.floor(rand() * n);
  const header = JSON.parse(headerText) as Record<string, { data_offsets?: number[] }>;
  const names = Object.keys(header).filter((n) => n !== '__metadata__');
  const name = names[pick(names.length)];
  const entry = header[name];
  const shifted = () => ({ ...entry, data_offsets: (entry.data_offsets ?? [0, 0]).map((o) => Math.max(0, o + [1, -1, 2, 4, -4, 8, -8][pick(7)])) });
  const body = Object.entries(header).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
  switch (pick(5)) {
    case 0: // shift one tensor's bytes (gap, overlap, past the end)
      return JSON.stringify({ ...header, [name]: shifted() });
    case 1: // the same name twice, at the same or other bytes
      return `{${[...body, `${JSON.stringify(name)}:${JSON.stringify(rand() < 0.5 ? entry : shifted())}`].join(',')}}`;
    case 2: { // drop a tensor (a gap, or bytes after the last tensor)
      const { [name]: _dropped, ...rest } = header;
      return JSON.stringify(rest);
    }
    case 3: { // an empty tensor at some offset (fine at a boundary, an overlap inside a tensor)
      const at = (entry.data_offsets ?? [0, 0])[pick(2)] + pick(3) - 1;
      return JSON.stringify({ ...header, [`e${pick(100)}`]: { dtype: 'F32', shape: [0], data_offsets: [Math.max(0, at), Math.max(0, at)] } });
    }
    default: { // rename a tensor to another one's name
      const other = names[pick(names.length)];
      return `{${Object.entries(header).map(([k, v]) => `${JSON.stringify(k === name ? other : k)}:${JSON.stringify(v)}`).join(',')}}`;
    }
  }
}

/** One random mutation of a valid file. */
function mutate(base: Uint8Array, npy: boolean, rand: () => number): Uint8Array {
  const pick = (n: number) => Math.floor(rand() * n);
  const bytes = base.slice();
  const [hStart, hEnd] = headerRange(bytes, npy);
  const enc = new TextEncoder();
  switch (pick(npy ? 9 : 11)) {
    case 9:
    case 10: // safetensors only: structural edits of the (valid) header
      return withHeader(bytes, npy, enc.encode(editEntries(new TextDecoder().decode(bytes.subarray(hStart, hEnd)), rand)));
    case 0: { // random bytes anywhere
      for (let k = 1 + pick(4); k > 0; k--) bytes[pick(bytes.length)] = pick(256);
      return bytes;
    }
    case 1: { // bit flips in the header
      for (let k = 1 + pick(3); k > 0; k--) bytes[hStart + pick(hEnd - hStart)] ^= 1 << pick(8);
      return bytes;
    }
    case 2: // truncation
      return bytes.subarray(0, pick(bytes.length));
    case 3: { // extra bytes at the end
      const out = new Uint8Array(bytes.length + 1 + pick(16));
      out.set(bytes);
      for (let i = bytes.length; i < out.length; i++) out[i] = pick(256);
      return out;
    }
    case 4: { // a lying header length
      const view = new DataView(bytes.buffer);
      const delta = pick(33) - 16;
      if (npy) view.setUint16(8, Math.max(0, (hEnd - hStart + delta) & 0xffff), true);
      else view.setBigUint64(0, rand() < 0.1 ? 0xffffffffffffffffn : BigInt(Math.max(0, hEnd - hStart + delta)), true);
      return bytes;
    }
    default: { // header text edits with a consistent length: delete, duplicate or insert
      const text = Array.from(bytes.subarray(hStart, hEnd), (b) => String.fromCharCode(b)).join('');
      const at = pick(text.length + 1);
      const span = 1 + pick(24);
      let edited: string;
      const op = pick(4);
      if (op === 0) edited = text.slice(0, at) + text.slice(at + span);
      else if (op === 1) edited = text.slice(0, at) + text.slice(at, at + span) + text.slice(at);
      else if (op === 2) edited = text.slice(0, at) + TOKENS[pick(TOKENS.length)] + text.slice(at);
      else { // change a number: offsets, dims, lengths
        const numbers = [...text.matchAll(/\d+/g)];
        if (numbers.length === 0) return bytes;
        const m = numbers[pick(numbers.length)];
        const value = Number(m[0]) + [1, -1, 4, -4, 8, 1 << 20][pick(6)];
        edited = text.slice(0, m.index) + String(Math.max(0, value)) + text.slice(m.index + m[0].length);
      }
      // latin-1 bytes as the header was read, except for inserted non-latin-1 tokens (UTF-8)
      const header = /[^\u0000-\u00ff]/.test(edited) ? enc.encode(edited) : Uint8Array.from(edited, (c) => c.charCodeAt(0));
      return withHeader(bytes, npy, header);
    }
  }
}

describe('mutation fuzzer: every outcome is a parse or a TensorFileError', () => {
  const SEED = 20260101;
  const SAFETENSORS_MUTANTS = 2500;
  const NPY_MUTANTS = 1500;
  /** Every DIFFERENTIAL_EVERY-th safetensors mutant also goes to the Python reader. */
  const DIFFERENTIAL_EVERY = 5;
  const mutantsForPython: { name: string; bytes: Uint8Array; tsAccepted: boolean; tsMessage: string }[] = [];

  function fuzz(bases: Uint8Array[], npy: boolean, count: number, seed: number): { accepted: number; refused: number } {
    const rand = prng(seed);
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < count; i++) {
      const base = bases[i % bases.length];
      const bytes = mutate(base, npy, rand);
      const what = `${npy ? 'npy' : 'safetensors'} mutant ${i} (seed ${seed})`;
      let tsAccepted = true;
      let tsMessage = '';
      try {
        const parsed = npy ? parseNpy(bytes, 'm.npy') : parseSafetensors(bytes, 'm.safetensors');
        const arrays = 'tensors' in parsed ? [...parsed.tensors.values()] : [parsed];
        for (const a of arrays) expect(a.data.length, `${what}: data length matches the shape`).toBe(elementCount(a.shape));
        accepted++;
      } catch (err) {
        if (!(err instanceof TensorFileError)) expect.fail(`${what}: ${(err as Error)?.name}: ${String((err as Error)?.message).slice(0, 300)}`);
        expectTidyMessage(err.message, what);
        tsAccepted = false;
        tsMessage = err.message;
        refused++;
      }
      if (!npy && i % DIFFERENTIAL_EVERY === 0) mutantsForPython.push({ name: `m${String(i).padStart(5, '0')}.safetensors`, bytes, tsAccepted, tsMessage });
    }
    return { accepted, refused };
  }

  it(`${SAFETENSORS_MUTANTS} safetensors and ${NPY_MUTANTS} .npy mutants`, { timeout: 60_000 }, () => {
    const st = fuzz(baseSafetensors(), false, SAFETENSORS_MUTANTS, SEED);
    const np = fuzz(baseNpy(), true, NPY_MUTANTS, SEED + 1);
    // not vacuous: both outcomes occur often
    for (const [what, r] of [['safetensors', st], ['npy', np]] as const) {
      expect(r.accepted, `${what}: some mutants still parse`).toBeGreaterThan(50);
      expect(r.refused, `${what}: most mutants are refused`).toBeGreaterThan(r.accepted);
    }
  });

  it('the Python reader accepts and refuses the same safetensors mutants', { timeout: 120_000 }, () => {
    expect(mutantsForPython.length).toBe(Math.ceil(SAFETENSORS_MUTANTS / DIFFERENTIAL_EVERY));
    const dir = tempDir('hostile-fuzz-');
    for (const m of mutantsForPython) writeFileSync(join(dir, m.name), m.bytes);
    const outcomes = pythonOutcomes([dir]);
    const disagreements: string[] = [];
    for (const m of mutantsForPython) {
      const py = outcomes[m.name];
      if (py.outcome === 'crashed') {
        disagreements.push(`${m.name}: Python crashed: ${py.message}`);
        continue;
      }
      if (py.outcome === 'refused') expectTidyMessage(py.message!, `${m.name}, Python`);
      // The one rule that is the TS reader's own: I64/U32 values must fit int32 (numpy reads them).
      const int32Only = !m.tsAccepted && m.tsMessage.includes('does not fit in int32') && py.outcome === 'accepted';
      if ((py.outcome === 'accepted') !== m.tsAccepted && !int32Only) {
        disagreements.push(`${m.name}: TS ${m.tsAccepted ? 'accepts' : `refuses (${m.tsMessage})`}, Python ${py.outcome}${py.message ? ` (${py.message})` : ''}`);
      }
    }
    expect(disagreements, disagreements.slice(0, 5).join('\n')).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('tools/saw_int4_reference.py compare on extreme cases', () => {
  const S = 2;
  const HQ = 4;
  const HKV = 2;
  const D = 32;
  const LENS = [3, 5];
  const T = 8;

  function writeCase(dir: string, name: string, qScale: number, zeroK: boolean): string {
    const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + 1));
    const q = wave(S * HQ * D, 0.37).map((x) => x * qScale);
    const k = zeroK ? new Float32Array(T * HKV * D) : wave(T * HKV * D, 0.91);
    const path = join(dir, name);
    writeFileSync(
      path,
      writeSafetensors(
        {
          q: { shape: [S, HQ, D], data: q },
          k: { shape: [T, HKV, D], data: k },
          v: { shape: [T, HKV, D], data: wave(T * HKV * D, 0.53) },
          context_lens: { shape: [S], data: Int32Array.from(LENS) },
        },
        { method: 'int4', page_size: '16' },
      ),
    );
    return path;
  }

  it('an output exactly equal to the reference passes, also where the bound is nan (|q| = 1e20); a changed one fails with the reason', () => {
    const dir = tempDir('hostile-compare-');
    for (const zeroK of [true, false]) {
      const casePath = writeCase(dir, `case-${zeroK}.safetensors`, 1e20, zeroK);
      const expectedPath = join(dir, `expected-${zeroK}.safetensors`);
      const made = runPython('saw_int4_reference.py', ['expect', '--case', casePath, '--out', expectedPath]);
      expect(made.status, made.stderr).toBe(0);
      const same = runPython('saw_int4_reference.py', ['compare', '--case', casePath, '--got', expectedPath]);
      const report = JSON.parse(same.stdout); // strict JSON: a nan bound is written as "nan"
      expect(same.status, `zero K ${zeroK}: ${same.stdout}`).toBe(0);
      expect(report.passed).toBe(true);
      if (!zeroK) {
        // one-hot softmax: the bound's error terms overflow to nan, the f32 output is the reference exactly
        expect(report.tolerance.non_finite_bound_elements).toBeGreaterThan(0);
        expect(report.tolerance.max_ratio).toBe(0);
        expect(report.tolerance.exactly_equal_elements).toBe(S * HQ * D);
      }

      const out = requireTensor(parseSafetensors(new Uint8Array(readFileSync(expectedPath))), 'out', 'F32', 3);
      const changed = out.data.slice();
      changed[0] += 1e-3 * Math.max(1, Math.abs(changed[0]));
      const changedPath = join(dir, `changed-${zeroK}.safetensors`);
      writeFileSync(changedPath, writeSafetensors({ out: { shape: out.shape, data: changed } }));
      const r = runPython('saw_int4_reference.py', ['compare', '--case', casePath, '--got', changedPath]);
      expect(r.status, `zero K ${zeroK}: ${r.stdout}${r.stderr}`).toBe(1);
      const failed = JSON.parse(r.stdout);
      expect(failed.passed).toBe(false);
      expect(failed.reason).toMatch(zeroK ? /exceeds the bound/ : /the conformance bound is nan .* beyond what the error model can bound/);
    }
  });

  it('a non-finite --tol-factor or case value is refused clearly (exit 2, one line)', () => {
    const dir = tempDir('hostile-compare-');
    const casePath = writeCase(dir, 'case.safetensors', 1, false);
    const expectedPath = join(dir, 'expected.safetensors');
    expect(runPython('saw_int4_reference.py', ['expect', '--case', casePath, '--out', expectedPath]).status).toBe(0);
    for (const factor of ['nan', 'inf', '-1']) {
      const r = runPython('saw_int4_reference.py', ['compare', '--case', casePath, '--got', expectedPath, '--tol-factor', factor]);
      expect(r.status, r.stdout + r.stderr).toBe(2);
      expect(r.stderr.trim()).toMatch(/--tol-factor is .*; expected a finite number >= 0$/);
    }
    const infCase = join(dir, 'inf.safetensors');
    const q = new Float32Array(S * HQ * D).fill(1);
    q[5] = Infinity;
    writeFileSync(
      infCase,
      writeSafetensors(
        {
          q: { shape: [S, HQ, D], data: q },
          k: { shape: [T, HKV, D], data: new Float32Array(T * HKV * D) },
          v: { shape: [T, HKV, D], data: new Float32Array(T * HKV * D) },
          context_lens: { shape: [S], data: Int32Array.from(LENS) },
        },
        { method: 'fp16', scale: 'nan' },
      ),
    );
    const r = runPython('saw_int4_reference.py', ['expect', '--case', infCase, '--out', join(dir, 'x.safetensors')]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trim()).toMatch(/tensor 'q' element \[0, 0, 5\] is inf .*expected finite values$/);
  });
});
