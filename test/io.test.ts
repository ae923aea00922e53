/**
 * src/io: safetensors and .npy readers/writers.
 *  - round trips (write → parse gives back the same bits, specials included);
 *  - every malformed part gives a TensorFileError whose message names the part and what was expected;
 *  - interoperability with numpy through tools/numpy_io_fixture.py and tools/saw_int4_reference.py,
 *    run by Debian's /usr/bin/python3. Missing python3/numpy FAILS these tests (never skipped).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseNpy, writeNpy } from '../src/io/npy';
import {
  TensorFileError,
  parseSafetensors,
  requireTensor,
  writeSafetensors,
  type SafetensorsFile,
} from '../src/io/safetensors';

const PYTHON = '/usr/bin/python3';
const TOOLS_DIR = fileURLToPath(new URL('../tools/', import.meta.url));
const INSTALL_HINT = "install Debian's python3-numpy (apt-get install python3-numpy) and run the tests again";

// ---------------------------------------------------------------------------------------------
// helpers

/** Runs `fn`, requires a TensorFileError, and requires every fragment in its message. */
function expectFileError(fn: () => unknown, ...fragments: (string | RegExp)[]): TensorFileError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a TensorFileError, nothing was thrown').toBeInstanceOf(TensorFileError);
  const error = caught as TensorFileError;
  for (const fragment of fragments) {
    if (typeof fragment === 'string') expect(error.message).toContain(fragment);
    else expect(error.message).toMatch(fragment);
  }
  return error;
}

/** A safetensors file from a header (object or raw text) and data bytes; `declaredLength` lies about N. */
function rawSafetensors(header: object | string | Uint8Array, data: Uint8Array = new Uint8Array(0), declaredLength?: number): Uint8Array {
  const headerBytes =
    header instanceof Uint8Array ? header : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(declaredLength ?? headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  return out;
}

/** A .npy file from a header dict literal and data bytes (version 1.0 unless given). */
function rawNpy(dict: string, data: Uint8Array, major = 1): Uint8Array {
  const preamble = major === 1 ? 10 : 12;
  const padded = Math.ceil((preamble + dict.length + 1) / 64) * 64 - preamble;
  const header = dict.padEnd(padded - 1, ' ') + '\n';
  const out = new Uint8Array(preamble + padded + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, padded, true);
  else view.setUint32(8, padded, true);
  out.set(new TextEncoder().encode(header), preamble);
  out.set(data, preamble + padded);
  return out;
}

function bytesOf(array: Float32Array | Int32Array | Float64Array | Uint16Array | BigInt64Array): Uint8Array {
  return new Uint8Array(array.buffer.slice(0));
}

/** Bit-exact comparison (NaN equals NaN, -0 differs from 0), reporting the first differing index. */
function expectSameValues(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) expect.fail(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

/** Manifest values: numbers, or "nan" / "inf" / "-inf" / "-0" (JSON.stringify writes -0 as 0). */
type ManifestValue = number | 'nan' | 'inf' | '-inf' | '-0';
interface ManifestEntry {
  dtype: string;
  shape: number[];
  values: ManifestValue[];
}

function decodeValues(values: ManifestValue[]): number[] {
  return values.map((v) => (v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : v === '-0' ? -0 : v));
}

function encodeValues(values: ArrayLike<number>): ManifestValue[] {
  return Array.from(values, (v) =>
    Number.isNaN(v) ? 'nan' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : Object.is(v, -0) ? '-0' : v,
  );
}

function runPython(script: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(PYTHON, [join(TOOLS_DIR, script), ...args], { encoding: 'utf8', timeout: 60_000 });
  if (result.error) throw new Error(`could not run ${PYTHON} ${script}: ${result.error.message}; ${INSTALL_HINT}`);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs a tools/ script and fails the test, with its output, unless it exits 0. */
function runPythonOk(script: string, args: string[]): string {
  const r = runPython(script, args);
  if (r.status !== 0) expect.fail(`${script} ${args.join(' ')} exited ${r.status}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r.stdout;
}

function requirePythonWithNumpy(): void {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} not found: ${INSTALL_HINT}`);
  const r = spawnSync(PYTHON, ['-c', 'import numpy; print(numpy.__version__)'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${PYTHON} cannot import numpy (${(r.stderr || String(r.error)).trim()}): ${INSTALL_HINT}`);
}

const SPECIAL_F32 = new Float32Array([0, -0, 1.5, -2.25, NaN, Infinity, -Infinity, 3.4028234663852886e38, 1.401298464324817e-45, 1 / 3]);
const EXTREME_I32 = new Int32Array([-2147483648, 2147483647, 0, -1, 42, 123456789]);
/** [IEEE half bits, value]: one, minus two, largest, smallest subnormal, infinity, minus zero. */
const HALF_CASES: [number, number][] = [
  [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0001, 2 ** -24], [0x7c00, Infinity], [0x8000, -0],
];

// ---------------------------------------------------------------------------------------------

describe('safetensors round trip', () => {
  it('writes and parses F32, I32, F16 bits, scalars, empty tensors and metadata', () => {
    const bytes = writeSafetensors(
      {
        q: { shape: [2, 5], data: SPECIAL_F32 },
        lens: { shape: [6], data: EXTREME_I32 },
        half: { dtype: 'F16', shape: [HALF_CASES.length], data: new Uint16Array(HALF_CASES.map(([bits]) => bits)) },
        scalar: { shape: [], data: new Float32Array([7.25]) },
        empty: { shape: [0, 4], data: new Float32Array(0) },
      },
      { method: 'int4-hadamard', note: 'café ✓' },
    );
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLength) % 8, 'data region 8-byte aligned').toBe(0);

    const file = parseSafetensors(bytes, 'roundtrip.safetensors');
    expect([...file.tensors.keys()]).toEqual(['q', 'lens', 'half', 'scalar', 'empty']);
    expect(file.metadata).toEqual({ method: 'int4-hadamard', note: 'café ✓' });
    const q = requireTensor(file, 'q', 'F32', 2);
    expect(q.shape).toEqual([2, 5]);
    expectSameValues(q.data, SPECIAL_F32, 'q');
    const lens = requireTensor(file, 'lens', 'int', 1);
    expect(lens.dtype).toBe('I32');
    expectSameValues(lens.data, EXTREME_I32, 'lens');
    const half = requireTensor(file, 'half', 'float', 1);
    expect(half.dtype).toBe('F16');
    expectSameValues(half.data, HALF_CASES.map(([, v]) => v), 'half');
    expect(requireTensor(file, 'scalar', 'float', 0).data[0]).toBe(7.25);
    const empty = requireTensor(file, 'empty', 'float', 2);
    expect(empty.shape).toEqual([0, 4]);
    expect(empty.data.length).toBe(0);
  });

  it('reads every supported dtype from a hand-built file', () => {
    const f64 = new Float64Array([0.1, -1e300, 2.5]);
    const bf16 = new Uint16Array([0x3f80, 0xc020, 0x7fc0]); // 1, -2.5, NaN
    const i64 = new BigInt64Array([-2147483648n, 2147483647n, -3n]);
    const parts: [string, string, number[], Uint8Array][] = [
      ['odd', 'U8', [1], new Uint8Array([9])], // one byte first: the others start at odd offsets, readers must not assume alignment
      ['f64', 'F64', [3], bytesOf(f64)],
      ['bf16', 'BF16', [3], bytesOf(bf16)],
      ['i64', 'I64', [3], bytesOf(i64)],
      ['i16', 'I16', [2], new Uint8Array([0x00, 0x80, 0xff, 0x7f])],
      ['u16', 'U16', [1], new Uint8Array([0xff, 0xff])],
      ['u32', 'U32', [1], new Uint8Array([0xff, 0xff, 0xff, 0x7f])],
      ['i8', 'I8', [2], new Uint8Array([0x80, 0x7f])],
      ['u8', 'U8', [2], new Uint8Array([0, 255])],
      ['bool', 'BOOL', [2], new Uint8Array([1, 0])],
    ];
    const header: Record<string, unknown> = {};
    let offset = 0;
    for (const [name, dtype, shape, raw] of parts) {
      header[name] = { dtype, shape, data_offsets: [offset, offset + raw.length] };
      offset += raw.length;
    }
    const data = new Uint8Array(offset);
    offset = 0;
    for (const [, , , raw] of parts) {
      data.set(raw, offset);
      offset += raw.length;
    }
    const file = parseSafetensors(rawSafetensors(`${JSON.stringify(header)}   `, data));
    expectSameValues(requireTensor(file, 'f64', 'F64').data, [Math.fround(0.1), -Infinity, 2.5], 'f64');
    expectSameValues(requireTensor(file, 'bf16', 'BF16').data, [1, -2.5, NaN], 'bf16');
    expectSameValues(requireTensor(file, 'i64', 'I64').data, [-2147483648, 2147483647, -3], 'i64');
    expectSameValues(requireTensor(file, 'i16', 'int').data, [-32768, 32767], 'i16');
    expectSameValues(requireTensor(file, 'u16', 'int').data, [65535], 'u16');
    expectSameValues(requireTensor(file, 'u32', 'int').data, [2147483647], 'u32');
    expectSameValues(requireTensor(file, 'i8', 'int').data, [-128, 127], 'i8');
    expectSameValues(requireTensor(file, 'u8', 'U8').data, [0, 255], 'u8');
    expectSameValues(requireTensor(file, 'bool', ['BOOL', 'U8']).data, [1, 0], 'bool');
  });
});

describe('safetensors errors name the part at fault', () => {
  const f32x6 = new Uint8Array(24);
  const okTensor = { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] };

  it('file and header framing', () => {
    expectFileError(() => parseSafetensors(new Uint8Array(5), 'tiny.safetensors'), 'tiny.safetensors: header length', 'only 5 bytes', 'at least 8');
    expectFileError(() => parseSafetensors(rawSafetensors('{}', new Uint8Array(0), 1000)), 'header length', 'says the JSON header is 1000 bytes but only 2 bytes follow');
    expectFileError(() => parseSafetensors(rawSafetensors(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))), 'header (bytes 8..12)', 'not valid UTF-8');
    expectFileError(() => parseSafetensors(rawSafetensors('{"a": ')), 'header', 'not valid JSON', 'expected a JSON object');
    expectFileError(() => parseSafetensors(rawSafetensors('[1, 2]')), 'header', 'is an array; expected a JSON object');
    expectFileError(() => parseSafetensors(rawSafetensors('42')), 'header', 'is 42; expected a JSON object');
    expectFileError(() => parseSafetensors(rawSafetensors({ a: 5 })), "tensor 'a'", 'expected an object with dtype, shape and data_offsets');
  });

  it('dtype and shape', () => {
    expectFileError(
      () => parseSafetensors(rawSafetensors({ a: { ...okTensor, dtype: 'X99' } }, f32x6)),
      "tensor 'a' dtype", '"X99" is not a safetensors dtype', 'expected one of F64, F32',
    );
    expectFileError(() => parseSafetensors(rawSafetensors({ a: { ...okTensor, dtype: 'F8_E4M3' } }, f32x6)), '"F8_E4M3" is not supported by this reader');
    expectFileError(() => parseSafetensors(rawSafetensors({ a: { ...okTensor, dtype: 3 } }, f32x6)), "tensor 'a' dtype", 'expected a dtype string');
    for (const shape of [[2, -3], [2.5], '6', [2, '3'], null]) {
      expectFileError(
        () => parseSafetensors(rawSafetensors({ a: { ...okTensor, shape } }, f32x6)),
        "tensor 'a' shape", 'expected a list of non-negative integers',
      );
    }
  });

  it('data_offsets', () => {
    const parse = (tensors: object, data = f32x6) => () => parseSafetensors(rawSafetensors(tensors, data));
    expectFileError(parse({ a: { ...okTensor, data_offsets: 'x' } }), "tensor 'a' data_offsets", 'expected [begin, end]');
    expectFileError(parse({ a: { ...okTensor, data_offsets: [24, 0] } }), 'expected [begin, end] with 0 <= begin <= end');
    expectFileError(parse({ a: { ...okTensor, data_offsets: [0, 24, 48] } }), 'expected [begin, end]');
    expectFileError(parse({ a: { ...okTensor, data_offsets: [8, 32] } }), 'runs past the data region (24 bytes after the header)', 'expected end <= 24');
    expectFileError(parse({ a: { ...okTensor, data_offsets: [0, 20] } }), 'span 20 bytes; expected 24 (shape [2, 3] x 4-byte F32)');
    expectFileError(
      parse({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }),
      "tensor 'b' data_offsets", "overlaps tensor 'a' [0, 16]", 'expected disjoint byte ranges',
    );
    // the tensors must tile the data region, as the official reader requires (and tools/saw_int4_reference.py)
    const f32 = (begin: number, count: number) => ({ dtype: 'F32', shape: [count], data_offsets: [begin, begin + 4 * count] });
    expectFileError(parse({ a: f32(0, 2), b: f32(12, 3) }), "tensor 'b' data_offsets", 'leaves a gap: bytes 8..12', "expected it to begin at 8, where tensor 'a' ends");
    expectFileError(parse({ a: f32(4, 5) }), 'leaves a gap: bytes 0..4', 'the first tensor starts at 0');
    expectFileError(parse({ a: okTensor }, new Uint8Array(40)), 'data region (bytes', 'has 16 bytes after the last tensor', 'expected the tensors to end at 40');
    expectFileError(parse({}, new Uint8Array(8)), 'has 8 bytes after the last tensor');
    expectFileError(parse({ a: okTensor, e: f32(4, 0) }), "tensor 'e' data_offsets: [4, 4] overlaps tensor 'a' [0, 24]");
    // zero-size tensors may sit at the boundaries, and share them; the order in the header is free
    const ok = parseSafetensors(rawSafetensors({ z: f32(24, 0), a: okTensor, e: f32(0, 0), y: f32(24, 0) }, f32x6));
    expect([...ok.tensors.keys()]).toEqual(['z', 'a', 'e', 'y']);
  });

  it('metadata values and int32 range', () => {
    expectFileError(
      () => parseSafetensors(rawSafetensors({ __metadata__: { method: 'int4', n: 3 } })),
      "__metadata__['n']", 'is 3; expected a string',
    );
    expectFileError(() => parseSafetensors(rawSafetensors({ __metadata__: [1] })), '__metadata__', 'expected an object of string values');
    expectFileError(
      () => parseSafetensors(rawSafetensors({ big: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, bytesOf(new BigInt64Array([1n, 1n << 40n])))),
      "tensor 'big' data", 'element 1 = 1099511627776 (I64) does not fit in int32',
    );
  });

  it('requireTensor says what the file has instead', () => {
    const file: SafetensorsFile = parseSafetensors(
      writeSafetensors({ q: { shape: [1, 2, 4], data: new Float32Array(8) }, v: { shape: [2], data: new Int32Array(2) } }),
    );
    expectFileError(() => requireTensor(file, 'k', 'float', 3), "tensor 'k': missing; file has: q, v");
    expectFileError(() => requireTensor(file, 'k', 'float', 3, 'case.safetensors'), "case.safetensors: tensor 'k'");
    expectFileError(() => requireTensor(file, 'q', 'int'), "tensor 'q' dtype", 'is F32; expected an int dtype');
    expectFileError(() => requireTensor(file, 'v', ['F16', 'F32']), 'is I32; expected F16 or F32');
    expectFileError(() => requireTensor(file, 'q', 'float', 2), "tensor 'q' shape", 'is [1, 2, 4] (rank 3); expected rank 2');
  });

  it('writer refuses inconsistent input', () => {
    expectFileError(() => writeSafetensors({ a: { shape: [2, 2], data: new Float32Array(3) } }), "tensor 'a' shape", 'holds 4 elements but data has 3');
    expectFileError(() => writeSafetensors({ a: { shape: [1], data: new Uint16Array(1) } }), 'expected dtype "F16"');
    expectFileError(() => writeSafetensors({ a: { dtype: 'I32', shape: [1], data: new Float32Array(1) } }), 'is a Float32Array; expected a Int32Array');
    expectFileError(() => writeSafetensors({ __metadata__: { shape: [1], data: new Float32Array(1) } }), 'reserved');
    expectFileError(() => writeSafetensors({ a: { shape: [-1], data: new Float32Array(0) } }), 'expected a list of non-negative integers');
  });
});

describe('npy round trip and errors', () => {
  it('writes and parses f32, i32, scalars, 1-D and empty arrays', () => {
    const cases: [Float32Array | Int32Array, number[]][] = [
      [SPECIAL_F32, [2, 5]],
      [EXTREME_I32, [3, 1, 2]],
      [new Float32Array([2.5]), []],
      [new Int32Array([1, 2, 3]), [3]],
      [new Float32Array(0), [0, 3]],
    ];
    for (const [data, shape] of cases) {
      const bytes = writeNpy(data, shape);
      const preamble = 10 + new DataView(bytes.buffer).getUint16(8, true);
      expect(preamble % 64, 'numpy aligns the data to 64 bytes').toBe(0);
      const parsed = parseNpy(bytes);
      expect(parsed.dtype).toBe(data instanceof Float32Array ? '<f4' : '<i4');
      expect(parsed.shape).toEqual(shape);
      expectSameValues(parsed.data, data, `shape [${shape}]`);
    }
    expectFileError(() => writeNpy(new Float32Array(5), [2, 3]), 'writeNpy: shape', 'holds 6 elements but data has 5');
  });

  it('accepts the header forms numpy and its ancestors write', () => {
    const f32 = bytesOf(new Float32Array([1.25, -8.5]));
    const native = parseNpy(rawNpy("{'descr': '=f4', 'fortran_order': False, 'shape': (2,), }", f32));
    expect(native.dtype).toBe('<f4');
    expectSameValues(native.data, [1.25, -8.5], "'=f4'");
    const u1 = parseNpy(rawNpy("{'descr': '<u1', 'fortran_order': False, 'shape': (2,)}", new Uint8Array([3, 250])));
    expect(u1.dtype).toBe('|u1');
    expectSameValues(u1.data, [3, 250], "'<u1'");
    const py2 = parseNpy(rawNpy('{"descr": "<f4", "shape": (1L, 2L), "fortran_order": False}', f32, 2));
    expect(py2.shape).toEqual([1, 2]);
  });

  it('refuses malformed or unsupported files with clear messages', () => {
    const f32x6 = bytesOf(new Float32Array(6));
    const dict = (descr: string, shape = '(2, 3)', fortran = 'False') => `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;
    expectFileError(() => parseNpy(new TextEncoder().encode('PK\x03\x04 not numpy'), 'x.npy'), 'x.npy: npy magic', 'not a .npy file');
    expectFileError(() => parseNpy(new Uint8Array([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1])), 'npy preamble', 'only 7 bytes');
    const v9 = rawNpy(dict('<f4'), f32x6);
    v9[6] = 9;
    expectFileError(() => parseNpy(v9), 'npy version', 'is 9.0; expected 1.0, 2.0 or 3.0');
    const longHeader = rawNpy(dict('<f4'), f32x6);
    new DataView(longHeader.buffer).setUint16(8, 5000, true);
    expectFileError(() => parseNpy(longHeader), 'npy header length', 'says 5000 header bytes');
    expectFileError(() => parseNpy(rawNpy("{'descr': '<f4', 'shape': (2, 3)", f32x6)), 'npy header', "expected '}'");
    expectFileError(() => parseNpy(rawNpy("{'descr': '<f4', 'shape': (2, 3), 'fortran_order': Maybe}", f32x6)), "unknown name 'Maybe'");
    expectFileError(() => parseNpy(rawNpy("{'descr': '<f4', 'shape': (2, 3)}", f32x6)), 'has keys {descr, shape}; expected exactly descr, fortran_order, shape');
    expectFileError(() => parseNpy(rawNpy(dict('>f4'), f32x6)), "descr: '>f4' is big-endian", "arr.astype('<f4')");
    expectFileError(() => parseNpy(rawNpy(dict('<f4', '(2, 3)', 'True'), f32x6)), 'fortran_order: is True', 'np.ascontiguousarray');
    expectFileError(() => parseNpy(rawNpy(dict('<c8'), f32x6)), "'<c8' is not supported", "expected one of '<f8'");
    expectFileError(() => parseNpy(rawNpy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,)}", f32x6)), 'structured dtype');
    expectFileError(() => parseNpy(rawNpy(dict('<f4', '(2, -3)'), f32x6)), 'shape: is (2, -3); expected a tuple of non-negative integers');
    expectFileError(() => parseNpy(rawNpy(dict('<f4'), f32x6.subarray(0, 20))), 'npy data', "truncated: shape (2, 3) of '<f4' needs 24 bytes, file has 20");
    expectFileError(() => parseNpy(rawNpy(dict('<f4', '(5,)'), f32x6)), "has trailing bytes: shape (5,) of '<f4' needs 20 bytes, file has 24");
    expectFileError(() => parseNpy(rawNpy(dict('<i8', '(2,)'), bytesOf(new BigInt64Array([0n, -(1n << 35n)])))), 'element 1', 'does not fit in int32');
  });
});

// ---------------------------------------------------------------------------------------------

describe('interoperability with numpy (/usr/bin/python3)', () => {
  interface Manifest {
    npy: Record<string, ManifestEntry>;
    npy_refused: Record<string, string>;
    safetensors: Record<string, { metadata: Record<string, string>; tensors: Record<string, ManifestEntry> }>;
  }
  let dir = '';
  let fixture: Manifest | undefined;

  /**
   * Checks python3 + numpy and writes the numpy fixtures once. Called by each test (not in beforeAll,
   * which would make vitest report the tests as skipped): without numpy every test here FAILS.
   */
  function numpyFixture(): Manifest {
    if (fixture === undefined) {
      requirePythonWithNumpy();
      dir = mkdtempSync(join(tmpdir(), 'io-test-'));
      runPythonOk('numpy_io_fixture.py', ['write', '--dir', dir]);
      fixture = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    }
    return fixture;
  }

  afterAll(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('reads every .npy numpy wrote (versions 1.0-3.0, all dtypes) bit-exactly', () => {
    const manifest = numpyFixture();
    const names = Object.keys(manifest.npy);
    expect(names.length).toBeGreaterThanOrEqual(15);
    for (const name of names) {
      const want = manifest.npy[name];
      const got = parseNpy(new Uint8Array(readFileSync(join(dir, name))), name);
      expect(got.dtype, name).toBe(want.dtype);
      expect(got.shape, name).toEqual(want.shape);
      expectSameValues(got.data, decodeValues(want.values), name);
    }
  });

  it("refuses numpy's big-endian, Fortran-order, complex, overflowing and truncated files clearly", () => {
    const manifest = numpyFixture();
    const why: Record<string, string> = {
      big_endian: "'>f4' is big-endian",
      fortran: 'fortran_order: is True',
      complex: "'<c8' is not supported",
      i8_overflow: '1099511627776',
      truncated: 'needs 24 bytes, file has 20',
    };
    expect(Object.values(manifest.npy_refused).sort()).toEqual(Object.keys(why).sort());
    for (const [name, kind] of Object.entries(manifest.npy_refused)) {
      expectFileError(() => parseNpy(new Uint8Array(readFileSync(join(dir, name))), name), `${name}: `, why[kind]);
    }
  });

  it('reads the safetensors numpy wrote (F32/F16/BF16/F64/I64/I32/I16/I8/U8, scalar, empty) bit-exactly', () => {
    for (const [name, want] of Object.entries(numpyFixture().safetensors)) {
      const file = parseSafetensors(new Uint8Array(readFileSync(join(dir, name))), name);
      expect(file.metadata).toEqual(want.metadata);
      expect([...file.tensors.keys()].sort()).toEqual(Object.keys(want.tensors).sort());
      for (const [tensorName, t] of Object.entries(want.tensors)) {
        const got = file.tensors.get(tensorName)!;
        expect(got.dtype, tensorName).toBe(t.dtype);
        expect(got.shape, tensorName).toEqual(t.shape);
        expectSameValues(got.data, decodeValues(t.values), `${name}/${tensorName}`);
      }
    }
  });

  /** Writes TS files plus ts_manifest.json into a fresh sub-directory and returns it. */
  function writeTsFiles(corrupt: boolean): string {
    numpyFixture();
    const out = mkdtempSync(join(dir, 'ts-'));
    const random = new Float32Array(3 * 4 * 5).map((_, i) => Math.fround(Math.sin(i * 12.9898) * 437.5453));
    const npyCases: Record<string, [Float32Array | Int32Array, number[]]> = {
      'special_f32.npy': [SPECIAL_F32, [10]],
      'extreme_i32.npy': [EXTREME_I32, [2, 3]],
      'random.npy': [random, [3, 4, 5]],
      'scalar.npy': [new Float32Array([-0.5]), []],
      'empty.npy': [new Int32Array(0), [0, 2]],
    };
    const ts: { npy: Record<string, ManifestEntry>; safetensors: Record<string, unknown> } = { npy: {}, safetensors: {} };
    for (const [name, [data, shape]] of Object.entries(npyCases)) {
      writeFileSync(join(out, name), writeNpy(data, shape));
      ts.npy[name] = { dtype: data instanceof Float32Array ? '<f4' : '<i4', shape, values: encodeValues(data) };
    }
    const halfBits = new Uint16Array(HALF_CASES.map(([bits]) => bits));
    writeFileSync(
      join(out, 'ts.safetensors'),
      writeSafetensors(
        {
          out: { shape: [3, 4, 5], data: random },
          context_lens: { shape: [6], data: EXTREME_I32 },
          half: { dtype: 'F16', shape: [HALF_CASES.length], data: halfBits },
          special: { shape: [2, 5], data: SPECIAL_F32 },
          scalar: { shape: [], data: new Float32Array([1]) },
        },
        { method: 'fp16', note: 'café ✓' },
      ),
    );
    const outValues = encodeValues(random);
    if (corrupt) outValues[7] = (outValues[7] as number) + 1;
    ts.safetensors['ts.safetensors'] = {
      metadata: { method: 'fp16', note: 'café ✓' },
      tensors: {
        out: { dtype: 'F32', shape: [3, 4, 5], values: outValues },
        context_lens: { dtype: 'I32', shape: [6], values: encodeValues(EXTREME_I32) },
        half: { dtype: 'F16', shape: [HALF_CASES.length], values: encodeValues(HALF_CASES.map(([, v]) => v)) },
        special: { dtype: 'F32', shape: [2, 5], values: encodeValues(SPECIAL_F32) },
        scalar: { dtype: 'F32', shape: [], values: [1] },
      },
    };
    writeFileSync(join(out, 'ts_manifest.json'), JSON.stringify(ts));
    return out;
  }

  it('numpy reads what TS wrote (np.load, strict safetensors reader) bit-exactly', () => {
    const stdout = runPythonOk('numpy_io_fixture.py', ['check', '--dir', writeTsFiles(false)]);
    expect(stdout).toContain('10 arrays match'); // 5 .npy files + 5 safetensors tensors
  });

  it('the numpy check is not vacuous: one changed value fails it', () => {
    const r = runPython('numpy_io_fixture.py', ['check', '--dir', writeTsFiles(true)]);
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toContain('ts.safetensors/out: values differ');
  });

  it('case files of tools/saw_int4_reference.py parse, and its compare accepts TS-written outputs', () => {
    numpyFixture();
    const casePath = join(dir, 'case.safetensors');
    const lens = [5, 17, 33];
    runPythonOk('saw_int4_reference.py', [
      'make-case', '--out', casePath, '--method', 'int4-hadamard', '--hadamard-block', '64', '--rotate-v', 'true',
      '--head-dim', '128', '--q-heads', '8', '--kv-heads', '2', '--context-lens', lens.join(','), '--page-size', '16',
    ]);
    const file = parseSafetensors(new Uint8Array(readFileSync(casePath)), 'case.safetensors');
    expect(file.metadata).toEqual({ method: 'int4-hadamard', hadamard_block: '64', rotate_v: 'true', page_size: '16' });
    const total = lens.reduce((a, b) => a + b, 0);
    expect(requireTensor(file, 'q', 'F32', 3).shape).toEqual([3, 8, 128]);
    expect(requireTensor(file, 'k', 'F32', 3).shape).toEqual([total, 2, 128]);
    expect(requireTensor(file, 'v', 'F32', 3).shape).toEqual([total, 2, 128]);
    expectSameValues(requireTensor(file, 'context_lens', 'I32', 1).data, lens, 'context_lens');

    // Re-write the reference output with the TS writer, as a GPU harness would, and compare it.
    const expectedPath = join(dir, 'expected.safetensors');
    runPythonOk('saw_int4_reference.py', ['expect', '--case', casePath, '--out', expectedPath]);
    const reference = requireTensor(parseSafetensors(new Uint8Array(readFileSync(expectedPath))), 'out', 'F32', 3);
    const gotPath = join(dir, 'got.safetensors');
    writeFileSync(gotPath, writeSafetensors({ out: { shape: reference.shape, data: reference.data } }));
    const report = JSON.parse(runPythonOk('saw_int4_reference.py', ['compare', '--case', casePath, '--got', gotPath]));
    expect(report.passed).toBe(true);
    expect(report.vs_reference.max_abs).toBeLessThan(1e-6);

    // The exact (unquantised) attention is not an int4-hadamard result: compare must exit 1.
    const exactPath = join(dir, 'exact.safetensors');
    runPythonOk('saw_int4_reference.py', ['expect', '--case', casePath, '--out', exactPath, '--exact']);
    const exact = runPython('saw_int4_reference.py', ['compare', '--case', casePath, '--got', exactPath]);
    expect(exact.status, exact.stdout + exact.stderr).toBe(1);
    expect(JSON.parse(exact.stdout).passed).toBe(false);
  });
});
