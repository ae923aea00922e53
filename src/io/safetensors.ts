/**
 * Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
 *
 *   bytes [0, 8)        u64 little-endian N, the length of the header
 *   bytes [8, 8 + N)    UTF-8 JSON object, optionally padded with spaces:
 *                         { "<name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] },
 *                           "__metadata__": { "<key>": "<string value>" } }
 *   bytes [8 + N, ...)  the data region; data_offsets are relative to its start, little-endian values
 *
 * Parsed tensors come back as Float32Array (F64/F32/F16/BF16, converted to f32; the file's dtype is
 * kept in `dtype`) or Int32Array (I64/I32/I16/I8/U32/U16/U8/BOOL; I64 and U32 values must fit int32).
 * Every problem with a file raises {@link TensorFileError}, whose message names the part of the file
 * at fault and what was expected there. Unused bytes after the last tensor are allowed.
 *
 * @example
 *   const bytes = writeSafetensors({ out: { shape: [2, 3], data: new Float32Array(6) } }, { method: 'fp16' });
 *   const file = parseSafetensors(bytes, 'expected.safetensors');
 *   const out = requireTensor(file, 'out', 'float', 3); // FloatTensor, or a TensorFileError
 */

/** A malformed or unexpected tensor file (safetensors or .npy). */
export class TensorFileError extends Error {
  override readonly name = 'TensorFileError';
  /** The file (or writer) the problem belongs to, when the caller named it; '' otherwise. */
  readonly source: string;
  /** The part of the file at fault, e.g. "header length", "tensor 'k' data_offsets". */
  readonly part: string;

  constructor(part: string, problem: string, source = '') {
    super(`${source === '' ? '' : `${source}: `}${part}: ${problem}`);
    this.source = source;
    this.part = part;
  }
}

/** Float dtypes this module reads (into Float32Array). */
export type SafetensorsFloatDtype = 'F64' | 'F32' | 'F16' | 'BF16';
/** Integer dtypes this module reads (into Int32Array). */
export type SafetensorsIntDtype = 'I64' | 'I32' | 'I16' | 'I8' | 'U32' | 'U16' | 'U8' | 'BOOL';
export type SafetensorsDtype = SafetensorsFloatDtype | SafetensorsIntDtype;

export interface FloatTensor {
  readonly kind: 'float';
  readonly name: string;
  /** The dtype stored in the file; `data` is always f32. */
  readonly dtype: SafetensorsFloatDtype;
  readonly shape: number[];
  readonly data: Float32Array;
}

export interface IntTensor {
  readonly kind: 'int';
  readonly name: string;
  /** The dtype stored in the file; `data` is always int32. */
  readonly dtype: SafetensorsIntDtype;
  readonly shape: number[];
  readonly data: Int32Array;
}

export type SafetensorsTensor = FloatTensor | IntTensor;

export interface SafetensorsFile {
  /** Tensors in header order. */
  readonly tensors: Map<string, SafetensorsTensor>;
  /** The `__metadata__` entries ({} when absent). */
  readonly metadata: Record<string, string>;
}

/** Dtypes {@link writeSafetensors} writes. F16 takes raw IEEE half bits in a Uint16Array. */
export type WritableSafetensorsDtype = 'F32' | 'I32' | 'F16';

export interface TensorToWrite {
  /** Defaults from the array type: Float32Array → F32, Int32Array → I32; a Uint16Array needs 'F16'. */
  readonly dtype?: WritableSafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array | Uint16Array;
}

const FLOAT_DTYPES: readonly SafetensorsFloatDtype[] = ['F64', 'F32', 'F16', 'BF16'];
const INT_DTYPES: readonly SafetensorsIntDtype[] = ['I64', 'I32', 'I16', 'I8', 'U32', 'U16', 'U8', 'BOOL'];

/** Bytes per element of each readable dtype. */
const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

/** Dtypes of the format that this module knows but cannot convert (named in the error message). */
const KNOWN_UNSUPPORTED = ['U64', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64'];

const METADATA_KEY = '__metadata__';
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
/** Writers pad the header with spaces so that the data region starts 8-byte aligned. */
const HEADER_ALIGN_BYTES = 8;

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** IEEE binary16 bits → number (exact). */
export function halfBitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function isFloatDtype(dtype: string): dtype is SafetensorsFloatDtype {
  return (FLOAT_DTYPES as readonly string[]).includes(dtype);
}

function isIntDtype(dtype: string): dtype is SafetensorsIntDtype {
  return (INT_DTYPES as readonly string[]).includes(dtype);
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Parses a whole safetensors file. `source` (e.g. the file name) prefixes every error message.
 * Throws {@link TensorFileError} on any malformed part.
 */
export function parseSafetensors(bytes: Uint8Array, source = ''): SafetensorsFile {
  const fail = (part: string, problem: string): never => {
    throw new TensorFileError(part, problem, source);
  };
  if (bytes.length < 8) {
    fail('header length (bytes 0..8)', `file is only ${bytes.length} bytes; expected at least 8 bytes (a u64 header length)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLengthBig = view.getBigUint64(0, true);
  const available = bytes.length - 8;
  if (headerLengthBig > BigInt(available)) {
    fail(
      'header length (bytes 0..8)',
      `says the JSON header is ${headerLengthBig} bytes but only ${available} bytes follow; expected at most ${available}`,
    );
  }
  const headerLength = Number(headerLengthBig);
  let headerText: string;
  try {
    headerText = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength));
  } catch {
    return fail(`header (bytes 8..${8 + headerLength})`, 'is not valid UTF-8; expected a UTF-8 JSON object');
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    return fail(
      `header (bytes 8..${8 + headerLength})`,
      `is not valid JSON (${(err as Error).message}); expected a JSON object, starts with ${describe(headerText.slice(0, 40))}`,
    );
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail('header', `is ${Array.isArray(header) ? 'an array' : describe(header)}; expected a JSON object`);
  }
  const entries = Object.entries(header as Record<string, unknown>);
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;

  const metadata: Record<string, string> = {};
  interface Entry { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }
  const parsed: Entry[] = [];
  for (const [name, info] of entries) {
    if (name === METADATA_KEY) {
      if (typeof info !== 'object' || info === null || Array.isArray(info)) {
        fail(METADATA_KEY, `is ${describe(info)}; expected an object of string values`);
      }
      for (const [key, value] of Object.entries(info as Record<string, unknown>)) {
        if (typeof value !== 'string') {
          fail(`${METADATA_KEY}['${key}']`, `is ${describe(value)}; expected a string (safetensors metadata values are strings)`);
        }
        metadata[key] = value as string;
      }
      continue;
    }
    const part = `tensor '${name}'`;
    if (typeof info !== 'object' || info === null || Array.isArray(info)) {
      fail(part, `is ${describe(info)}; expected an object with dtype, shape and data_offsets`);
    }
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(`${part} dtype`, `is ${describe(dtype)}; expected a dtype string such as "F32"`);
    const dtypeText = dtype as string;
    if (!isFloatDtype(dtypeText) && !isIntDtype(dtypeText)) {
      const why = KNOWN_UNSUPPORTED.includes(dtypeText) ? 'is not supported by this reader' : 'is not a safetensors dtype';
      fail(`${part} dtype`, `"${dtypeText}" ${why}; expected one of ${[...FLOAT_DTYPES, ...INT_DTYPES].join(', ')}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      fail(`${part} shape`, `is ${describe(shape)}; expected a list of non-negative integers`);
    }
    const dims = shape as number[];
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every(isNonNegativeInteger) ||
      (offsets[0] as number) > (offsets[1] as number)
    ) {
      fail(`${part} data_offsets`, `is ${describe(offsets)}; expected [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) {
      fail(
        `${part} data_offsets`,
        `[${begin}, ${end}] runs past the data region (${dataLength} bytes after the header); expected end <= ${dataLength}`,
      );
    }
    const count = dims.reduce((a, b) => a * b, 1);
    const itemBytes = DTYPE_BYTES[dtypeText as SafetensorsDtype];
    if (end - begin !== count * itemBytes) {
      fail(
        `${part} data_offsets`,
        `[${begin}, ${end}] span ${end - begin} bytes; expected ${count * itemBytes} (shape [${dims.join(', ')}] x ${itemBytes}-byte ${dtypeText})`,
      );
    }
    parsed.push({ name, dtype: dtypeText as SafetensorsDtype, shape: dims, begin, end });
  }

  const byBegin = parsed.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byBegin.length; i++) {
    const prev = byBegin[i - 1];
    const cur = byBegin[i];
    if (cur.begin < prev.end) {
      fail(
        `tensor '${cur.name}' data_offsets`,
        `[${cur.begin}, ${cur.end}] overlaps tensor '${prev.name}' [${prev.begin}, ${prev.end}]; expected disjoint byte ranges`,
      );
    }
  }

  const tensors = new Map<string, SafetensorsTensor>();
  for (const t of parsed) {
    const raw = bytes.subarray(dataStart + t.begin, dataStart + t.end);
    if (isFloatDtype(t.dtype)) {
      tensors.set(t.name, { kind: 'float', name: t.name, dtype: t.dtype, shape: t.shape, data: decodeFloat(raw, t.dtype) });
    } else {
      const data = decodeInt(raw, t.dtype, (index, value) =>
        fail(
          `tensor '${t.name}' data`,
          `element ${index} = ${value} (${t.dtype}) does not fit in int32; expected values in [${INT32_MIN}, ${INT32_MAX}]`,
        ),
      );
      tensors.set(t.name, { kind: 'int', name: t.name, dtype: t.dtype, shape: t.shape, data });
    }
  }
  return { tensors, metadata };
}

/** Little-endian bytes of one float dtype → Float32Array (f64 rounds to nearest f32). */
export function decodeFloat(raw: Uint8Array, dtype: SafetensorsFloatDtype): Float32Array {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = raw.byteLength / DTYPE_BYTES[dtype];
  if (dtype === 'F32' && HOST_IS_LITTLE_ENDIAN) return new Float32Array(Uint8Array.prototype.slice.call(raw).buffer); // a copy even when raw is a Node Buffer (whose slice is a view)
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfBitsToNumber(view.getUint16(2 * i, true));
      break;
    case 'BF16': {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      break;
    }
  }
  return out;
}

/**
 * Little-endian bytes of one integer dtype → Int32Array. `onOverflow` is called (and must throw)
 * for the first I64/U32 value outside int32.
 */
export function decodeInt(
  raw: Uint8Array,
  dtype: SafetensorsIntDtype,
  onOverflow: (index: number, value: bigint | number) => never,
): Int32Array {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = raw.byteLength / DTYPE_BYTES[dtype];
  if (dtype === 'I32' && HOST_IS_LITTLE_ENDIAN) return new Int32Array(Uint8Array.prototype.slice.call(raw).buffer); // a copy, as above
  const out = new Int32Array(n);
  switch (dtype) {
    case 'I64':
      for (let i = 0; i < n; i++) {
        const lo = view.getInt32(8 * i, true);
        const hi = view.getInt32(8 * i + 4, true);
        if (hi !== lo >> 31) onOverflow(i, view.getBigInt64(8 * i, true));
        out[i] = lo;
      }
      break;
    case 'I32':
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      break;
    case 'U32':
      for (let i = 0; i < n; i++) {
        const value = view.getUint32(4 * i, true);
        if (value > INT32_MAX) onOverflow(i, value);
        out[i] = value;
      }
      break;
    case 'I16':
      for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
      break;
    case 'U16':
      for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
      break;
    case 'I8':
      for (let i = 0; i < n; i++) out[i] = view.getInt8(i);
      break;
    case 'U8':
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = raw[i];
      break;
  }
  return out;
}

/** What {@link requireTensor} accepts as a dtype expectation: a family, one dtype or a list. */
export type FloatExpectation = 'float' | SafetensorsFloatDtype | readonly SafetensorsFloatDtype[];
export type IntExpectation = 'int' | SafetensorsIntDtype | readonly SafetensorsIntDtype[];

/**
 * Returns tensor `name`, checking its dtype (a family 'float' / 'int', one dtype or a list) and,
 * when given, its rank. Errors read like "tensor 'k' missing; file has: q, v".
 *
 * @example const q = requireTensor(file, 'q', 'float', 3); // q.data: Float32Array, q.shape: [S, Hq, D]
 */
export function requireTensor(file: SafetensorsFile, name: string, dtype: FloatExpectation, rank?: number, source?: string): FloatTensor;
export function requireTensor(file: SafetensorsFile, name: string, dtype: IntExpectation, rank?: number, source?: string): IntTensor;
export function requireTensor(
  file: SafetensorsFile,
  name: string,
  dtype: FloatExpectation | IntExpectation,
  rank?: number,
  source = '',
): SafetensorsTensor {
  const tensor = file.tensors.get(name);
  const part = `tensor '${name}'`;
  if (tensor === undefined) {
    const names = [...file.tensors.keys()];
    throw new TensorFileError(part, `missing; file has: ${names.length === 0 ? '(no tensors)' : names.join(', ')}`, source);
  }
  const allowed: readonly string[] =
    dtype === 'float' ? FLOAT_DTYPES : dtype === 'int' ? INT_DTYPES : typeof dtype === 'string' ? [dtype] : dtype;
  if (!allowed.includes(tensor.dtype)) {
    const wanted = dtype === 'float' || dtype === 'int' ? `${dtype === 'int' ? 'an' : 'a'} ${dtype} dtype (${allowed.join(', ')})` : allowed.join(' or ');
    throw new TensorFileError(`${part} dtype`, `is ${tensor.dtype}; expected ${wanted}`, source);
  }
  if (rank !== undefined && tensor.shape.length !== rank) {
    throw new TensorFileError(
      `${part} shape`,
      `is [${tensor.shape.join(', ')}] (rank ${tensor.shape.length}); expected rank ${rank}`,
      source,
    );
  }
  return tensor;
}

/**
 * Serialises tensors (in the record's key order, 8-byte aligned header) and optional string
 * metadata into safetensors bytes. Throws {@link TensorFileError} when a shape does not match
 * its data or a dtype does not match its array type.
 */
export function writeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const fail = (part: string, problem: string): never => {
    throw new TensorFileError(part, problem, 'writeSafetensors');
  };
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') fail(`${METADATA_KEY}['${key}']`, `is ${describe(value)}; expected a string`);
    }
    header[METADATA_KEY] = { ...metadata };
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of Object.entries(tensors)) {
    const part = `tensor '${name}'`;
    if (name === METADATA_KEY) fail(part, `the name ${METADATA_KEY} is reserved; expected another tensor name`);
    const dtype = tensor.dtype ?? inferDtype(tensor.data);
    if (dtype === undefined) fail(`${part} dtype`, 'is missing for a Uint16Array; expected dtype "F16"');
    const expectedArray = dtype === 'F32' ? Float32Array : dtype === 'I32' ? Int32Array : Uint16Array;
    if (!(tensor.data instanceof expectedArray)) {
      fail(`${part} data`, `is a ${tensor.data.constructor.name}; expected a ${expectedArray.name} for dtype ${dtype}`);
    }
    if (!tensor.shape.every(isNonNegativeInteger)) {
      fail(`${part} shape`, `is ${describe(tensor.shape)}; expected a list of non-negative integers`);
    }
    const count = tensor.shape.reduce((a, b) => a * b, 1);
    if (count !== tensor.data.length) {
      fail(`${part} shape`, `[${tensor.shape.join(', ')}] holds ${count} elements but data has ${tensor.data.length}; expected equal counts`);
    }
    const raw = toLittleEndianBytes(tensor.data);
    header[name] = { dtype, shape: [...tensor.shape], data_offsets: [offset, offset + raw.byteLength] };
    chunks.push(raw);
    offset += raw.byteLength;
  }
  return assembleSafetensors(header, chunks);
}

/**
 * The bytes of a safetensors file from its header object (data_offsets already set) and the tensors'
 * raw little-endian bytes in offset order; pads the header with spaces to 8-byte alignment.
 */
export function assembleSafetensors(header: Record<string, unknown>, chunks: Uint8Array[]): Uint8Array {
  const dataBytes = chunks.reduce((n, c) => n + c.byteLength, 0);
  let headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const padding = (HEADER_ALIGN_BYTES - ((8 + headerBytes.length) % HEADER_ALIGN_BYTES)) % HEADER_ALIGN_BYTES;
  if (padding > 0) {
    const padded = new Uint8Array(headerBytes.length + padding).fill(0x20);
    padded.set(headerBytes);
    headerBytes = padded;
  }
  const out = new Uint8Array(8 + headerBytes.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

function inferDtype(data: TensorToWrite['data']): WritableSafetensorsDtype | undefined {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Int32Array) return 'I32';
  return undefined;
}

/** Copies a typed array's elements as little-endian bytes. */
export function toLittleEndianBytes(data: Float32Array | Int32Array | Uint16Array): Uint8Array {
  const copy = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  if (!HOST_IS_LITTLE_ENDIAN) {
    const size = data.BYTES_PER_ELEMENT;
    for (let i = 0; i < copy.length; i += size) copy.subarray(i, i + size).reverse();
  }
  return copy;
}
