/**
 * Reader and writer for NumPy's .npy format (numpy.lib.format, versions 1.0, 2.0 and 3.0):
 *
 *   bytes [0, 6)   magic "\x93NUMPY"
 *   bytes 6, 7     major, minor version
 *   then           header length: u16 LE (1.0) or u32 LE (2.0, 3.0)
 *   then           header: a Python dict literal, latin-1 (1.0, 2.0) or UTF-8 (3.0), padded with spaces
 *                  and ending in '\n': {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *   then           the array's bytes, C order
 *
 * Read dtypes: '<f8' '<f4' '<f2' → Float32Array; '<i8' '<i4' '<i2' '|i1' '<u4' '<u2' '|u1' '|b1' →
 * Int32Array ('<i8'/'<u4' values must fit int32). '=' (native order) is read as little-endian, and
 * any order character is accepted for 1-byte types. Big-endian files, Fortran order and structured
 * dtypes are refused with a {@link TensorFileError} that says how to re-save the array. Hostile
 * headers are bounded: at most {@link NPY_MAX_HEADER_BYTES} bytes (numpy's own np.load limit),
 * literals nested at most {@link MAX_JSON_DEPTH} deep, each dict key once.
 *
 * @example
 *   const bytes = writeNpy(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
 *   const { dtype, shape, data } = parseNpy(bytes, 'x.npy'); // '<f4', [2, 3], Float32Array
 */
import {
  MAX_JSON_DEPTH,
  TensorFileError,
  clipText,
  decodeFloat,
  decodeInt,
  elementCount,
  listForMessage,
  toLittleEndianBytes,
  type SafetensorsFloatDtype,
  type SafetensorsIntDtype,
} from './safetensors';

export type NpyFloatDtype = '<f8' | '<f4' | '<f2';
export type NpyIntDtype = '<i8' | '<i4' | '<i2' | '|i1' | '<u4' | '<u2' | '|u1' | '|b1';

export interface NpyFloatArray {
  readonly kind: 'float';
  /** The file's dtype, normalised ('=f4' → '<f4', '<u1' → '|u1'); `data` is always f32. */
  readonly dtype: NpyFloatDtype;
  readonly shape: number[];
  readonly data: Float32Array;
}

export interface NpyIntArray {
  readonly kind: 'int';
  /** The file's dtype, normalised; `data` is always int32. */
  readonly dtype: NpyIntDtype;
  readonly shape: number[];
  readonly data: Int32Array;
}

export type NpyArray = NpyFloatArray | NpyIntArray;

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
/** numpy pads the preamble + header to a multiple of this. */
const HEADER_ALIGN_BYTES = 64;
const V1_MAX_HEADER_BYTES = 0xffff;
/**
 * Longest header the reader accepts: numpy's np.load refuses longer ones too (max_header_size,
 * 10000), and the headers of the dtypes read here are under 200 bytes.
 */
export const NPY_MAX_HEADER_BYTES = 10_000;
/** Characters of a header value (a descr string, a shape) quoted in a message. */
const VALUE_CHARS = 60;

/** kind+size (the descr without its byte-order character) → normalised dtype and decoder dtype. */
const DTYPES: Record<string, { npy: NpyFloatDtype | NpyIntDtype; st: SafetensorsFloatDtype | SafetensorsIntDtype; bytes: number }> = {
  f8: { npy: '<f8', st: 'F64', bytes: 8 },
  f4: { npy: '<f4', st: 'F32', bytes: 4 },
  f2: { npy: '<f2', st: 'F16', bytes: 2 },
  i8: { npy: '<i8', st: 'I64', bytes: 8 },
  i4: { npy: '<i4', st: 'I32', bytes: 4 },
  i2: { npy: '<i2', st: 'I16', bytes: 2 },
  i1: { npy: '|i1', st: 'I8', bytes: 1 },
  u4: { npy: '<u4', st: 'U32', bytes: 4 },
  u2: { npy: '<u2', st: 'U16', bytes: 2 },
  u1: { npy: '|u1', st: 'U8', bytes: 1 },
  b1: { npy: '|b1', st: 'BOOL', bytes: 1 },
};

/**
 * Parses a whole .npy file. `source` (e.g. the file name) prefixes every error message.
 * Throws {@link TensorFileError} on any malformed or unsupported part.
 */
export function parseNpy(bytes: Uint8Array, source = ''): NpyArray {
  const fail = (part: string, problem: string): never => {
    throw new TensorFileError(part, problem, source);
  };
  if (MAGIC.some((b, i) => bytes[i] !== b)) {
    const found = Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(' ');
    fail('npy magic (bytes 0..6)', `found [${found}]; expected 93 4e 55 4d 50 59 ("\\x93NUMPY"): this is not a .npy file`);
  }
  if (bytes.length < 10) fail('npy preamble (bytes 0..10)', `file is only ${bytes.length} bytes; expected at least 10`);
  const major = bytes[6];
  const minor = bytes[7];
  if (major < 1 || major > 3) fail('npy version (bytes 6..8)', `is ${major}.${minor}; expected 1.0, 2.0 or 3.0`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthBytes = major === 1 ? 2 : 4;
  const preamble = 8 + lengthBytes;
  if (bytes.length < preamble) fail(`npy header length (bytes 8..${preamble})`, `file ends at byte ${bytes.length}; expected ${preamble} bytes of preamble`);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (headerLength > NPY_MAX_HEADER_BYTES) {
    fail(`npy header length (bytes 8..${preamble})`, `says ${headerLength} header bytes; expected at most ${NPY_MAX_HEADER_BYTES} (np.load's limit too)`);
  }
  const dataStart = preamble + headerLength;
  if (dataStart > bytes.length) {
    fail(
      `npy header length (bytes 8..${preamble})`,
      `says ${headerLength} header bytes but only ${bytes.length - preamble} follow; expected at most ${bytes.length - preamble}`,
    );
  }
  const headerPart = `npy header (bytes ${preamble}..${dataStart})`;
  const rawHeader = bytes.subarray(preamble, dataStart);
  let headerText: string;
  if (major === 3) {
    try {
      headerText = new TextDecoder('utf-8', { fatal: true }).decode(rawHeader);
    } catch {
      return fail(headerPart, 'is not valid UTF-8; expected a UTF-8 Python dict literal (version 3.0)');
    }
  } else {
    headerText = Array.from(rawHeader, (b) => String.fromCharCode(b)).join(''); // latin-1
  }
  let header: Map<string, PyValue>;
  try {
    const value = new PyLiteralParser(headerText).parseWhole();
    if (!(value instanceof Map)) throw new Error(`is ${formatPy(value)}, not a dict`);
    header = value;
  } catch (err) {
    return fail(headerPart, `${(err as Error).message}; expected a dict like {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}`);
  }
  const keys = [...header.keys()].sort();
  if (keys.join(', ') !== 'descr, fortran_order, shape') {
    fail(headerPart, `has keys {${listForMessage(keys)}}; expected exactly descr, fortran_order, shape`);
  }
  const descr = header.get('descr');
  const fortranOrder = header.get('fortran_order');
  const shape = header.get('shape');
  if (typeof descr !== 'string') {
    fail(`${headerPart} descr`, `is a ${Array.isArray(descr) ? 'list (structured dtype)' : typeof descr}; expected a simple dtype string like '<f4'`);
  }
  const order = (descr as string).charAt(0);
  const kindSize = '<>=|'.includes(order) ? (descr as string).slice(1) : (descr as string);
  const info = DTYPES[kindSize];
  if (info === undefined) {
    fail(`${headerPart} descr`, `${formatPy(descr)} is not supported; expected one of ${Object.values(DTYPES).map((d) => `'${d.npy}'`).join(', ')}`);
  }
  if (order === '>' && info.bytes > 1) {
    fail(`${headerPart} descr`, `'${descr}' is big-endian; expected little-endian (re-save with arr.astype('${info.npy}'))`);
  }
  if (typeof fortranOrder !== 'boolean') fail(`${headerPart} fortran_order`, `is ${formatPy(fortranOrder)}; expected True or False`);
  if (fortranOrder === true) {
    fail(`${headerPart} fortran_order`, 'is True; expected False (C order): re-save with np.ascontiguousarray(arr)');
  }
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    fail(`${headerPart} shape`, `is ${formatPy(shape)}; expected a tuple of non-negative integers`);
  }
  const dims = shape as number[];
  const expectedBytes = elementCount(dims) * info.bytes;
  const actualBytes = bytes.length - dataStart;
  if (actualBytes !== expectedBytes) {
    const what = actualBytes < expectedBytes ? 'truncated' : 'has trailing bytes';
    fail(
      `npy data (bytes ${dataStart}..${bytes.length})`,
      `${what}: shape ${formatPy(dims)} of '${info.npy}' needs ${expectedBytes} bytes, file has ${actualBytes}`,
    );
  }
  const raw = bytes.subarray(dataStart);
  if (info.npy.charAt(1) === 'f') {
    return { kind: 'float', dtype: info.npy as NpyFloatDtype, shape: dims, data: decodeFloat(raw, info.st as SafetensorsFloatDtype) };
  }
  const data = decodeInt(raw, info.st as SafetensorsIntDtype, (index, value) =>
    fail(`npy data element ${index}`, `${value} ('${info.npy}') does not fit in int32; expected values in [-2147483648, 2147483647]`),
  );
  return { kind: 'int', dtype: info.npy as NpyIntDtype, shape: dims, data };
}

/**
 * Serialises a C-order array as .npy ('<f4' for Float32Array, '<i4' for Int32Array), version 1.0
 * unless the header needs 2.0. Throws {@link TensorFileError} when shape and data disagree.
 */
export function writeNpy(data: Float32Array | Int32Array, shape: readonly number[]): Uint8Array {
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new TensorFileError('shape', `is [${shape.join(', ')}]; expected non-negative integers`, 'writeNpy');
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new TensorFileError('shape', `(${shape.join(', ')}) holds ${count} elements but data has ${data.length}; expected equal counts`, 'writeNpy');
  }
  const descr = data instanceof Float32Array ? '<f4' : '<i4';
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  let major = 1;
  let preamble = 10;
  let padded = Math.ceil((preamble + dict.length + 1) / HEADER_ALIGN_BYTES) * HEADER_ALIGN_BYTES - preamble;
  if (padded > V1_MAX_HEADER_BYTES) {
    major = 2;
    preamble = 12;
    padded = Math.ceil((preamble + dict.length + 1) / HEADER_ALIGN_BYTES) * HEADER_ALIGN_BYTES - preamble;
  }
  const header = dict.padEnd(padded - 1, ' ') + '\n';
  const raw = toLittleEndianBytes(data);
  const out = new Uint8Array(preamble + padded + raw.byteLength);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, padded, true);
  else view.setUint32(8, padded, true);
  for (let i = 0; i < header.length; i++) out[preamble + i] = header.charCodeAt(i); // ASCII
  out.set(raw, preamble + padded);
  return out;
}

/** Values of the Python literal subset used by .npy headers. */
type PyValue = string | number | boolean | null | PyValue[] | Map<string, PyValue>;

/** A header value for a message, Python-style (`(2, 3)`, `(5,)`, `'<f4'`), at most {@link VALUE_CHARS} characters. */
function formatPy(value: PyValue | undefined): string {
  const text = (v: PyValue | undefined, depth: number): string => {
    if (v === undefined) return 'missing';
    if (v === null) return 'None';
    if (typeof v === 'boolean') return v ? 'True' : 'False';
    if (typeof v === 'string') return `'${clipText(v, VALUE_CHARS)}'`;
    if (v instanceof Map) return '{...}';
    if (Array.isArray(v)) {
      if (depth >= MAX_JSON_DEPTH) return '(...)';
      const items: string[] = [];
      let length = 0;
      for (const item of v) {
        if (length > VALUE_CHARS) {
          items.push('...');
          break;
        }
        const t = text(item, depth + 1);
        items.push(t);
        length += t.length + 2;
      }
      return `(${items.join(', ')}${v.length === 1 ? ',' : ''})`;
    }
    return String(v);
  };
  return clipText(text(value, 0), 2 * VALUE_CHARS);
}

/**
 * Recursive-descent parser for dicts, tuples, lists, strings, integers (Python 2 'L' suffix
 * allowed), True/False/None: what numpy's header writer emits (it reads headers with ast.literal_eval).
 */
class PyLiteralParser {
  private pos = 0;
  /** Open dicts/tuples/lists around the current position, bounded by {@link MAX_JSON_DEPTH}. */
  private depth = 0;
  constructor(private readonly text: string) {}

  parseWhole(): PyValue {
    const value = this.parseValue();
    this.skipSpace();
    if (this.pos !== this.text.length) throw new Error(`unexpected ${JSON.stringify(this.text.slice(this.pos, this.pos + 10))} after the literal`);
    return value;
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && ' \t\r\n'.includes(this.text[this.pos])) this.pos++;
  }

  private peek(): string {
    this.skipSpace();
    return this.text.charAt(this.pos);
  }

  private expect(ch: string): void {
    if (this.peek() !== ch) throw new Error(`expected '${ch}' at character ${this.pos}, found ${JSON.stringify(this.text.charAt(this.pos) || 'end of header')}`);
    this.pos++;
  }

  private parseValue(): PyValue {
    const ch = this.peek();
    if (ch === '{' || ch === '(' || ch === '[') {
      if (this.depth >= MAX_JSON_DEPTH) throw new Error(`nests dicts/tuples/lists more than ${MAX_JSON_DEPTH} levels deep (at character ${this.pos})`);
      this.depth++;
      const value = ch === '{' ? this.parseDict() : ch === '(' ? this.parseSequence('(', ')') : this.parseSequence('[', ']');
      this.depth--;
      return value;
    }
    if (ch === "'" || ch === '"') return this.parseString();
    const word = /^(-?\d+)[lL]?|^[A-Za-z_]+/.exec(this.text.slice(this.pos));
    if (word === null) throw new Error(`unexpected ${JSON.stringify(ch || 'end of header')} at character ${this.pos}`);
    this.pos += word[0].length;
    if (word[1] !== undefined) return Number(word[1]) + 0; // + 0: -0 becomes 0
    if (word[0] === 'True') return true;
    if (word[0] === 'False') return false;
    if (word[0] === 'None') return null;
    throw new Error(`unknown name '${clipText(word[0], VALUE_CHARS)}' at character ${this.pos - word[0].length}`);
  }

  private parseDict(): Map<string, PyValue> {
    const out = new Map<string, PyValue>();
    this.expect('{');
    while (this.peek() !== '}') {
      const key = this.parseValue();
      if (typeof key !== 'string') throw new Error(`dict key ${formatPy(key)} is not a string`);
      if (out.has(key)) throw new Error(`has the key ${formatPy(key)} more than once (a Python parser would silently keep only the last)`);
      this.expect(':');
      out.set(key, this.parseValue());
      if (this.peek() !== ',') break;
      this.pos++;
    }
    this.expect('}');
    return out;
  }

  private parseSequence(open: string, close: string): PyValue[] {
    const out: PyValue[] = [];
    this.expect(open);
    while (this.peek() !== close) {
      out.push(this.parseValue());
      if (this.peek() !== ',') break;
      this.pos++;
    }
    this.expect(close);
    return out;
  }

  private parseString(): string {
    const quote = this.text[this.pos++];
    let out = '';
    while (this.pos < this.text.length && this.text[this.pos] !== quote) {
      if (this.text[this.pos] === '\\') this.pos++;
      out += this.text.charAt(this.pos++);
    }
    if (this.pos >= this.text.length) throw new Error('unterminated string');
    this.pos++;
    return out;
  }
}
