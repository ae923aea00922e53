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
 * Every problem with a file raises {@link TensorFileError}, whose message (one line, at most
 * {@link MAX_ERROR_MESSAGE_CHARS} characters) names the part of the file at fault and what was
 * expected there. The rules are those of the official reader, also enforced by
 * tools/saw_int4_reference.py: a header of at most {@link MAX_HEADER_BYTES} bytes, JSON nested at most
 * {@link MAX_JSON_DEPTH} deep, every key once per object (JSON.parse would silently keep the last of
 * two "k" entries), and tensors whose data_offsets tile the data region exactly: sorted by offset they
 * start at 0, each begins where the previous ends (no gap, no overlap), the last ends at its end.
 *
 * @example
 *   const bytes = writeSafetensors({ out: { shape: [2, 3], data: new Float32Array(6) } }, { method: 'fp16' });
 *   const file = parseSafetensors(bytes, 'expected.safetensors');
 *   const out = requireTensor(file, 'out', 'float', 3); // FloatTensor, or a TensorFileError
 */

/**
 * Longest message a {@link TensorFileError} carries. A hostile file (a million tensor names, a name a
 * megabyte long) must not produce a megabyte message; lists and names are cut before this (see
 * {@link listForMessage}, {@link quoteName}), this is the last guard.
 */
export const MAX_ERROR_MESSAGE_CHARS = 1000;
/** Characters of a tensor name or key quoted in a message; longer ones are cut. */
const NAME_CHARS = 80;
/** Items of a list (tensor names, keys) spelled out in a message before "… and N more". */
const LISTED_ITEMS = 8;

/** A malformed or unexpected tensor file (safetensors or .npy). */
export class TensorFileError extends Error {
  override readonly name = 'TensorFileError';
  /** The file (or writer) the problem belongs to, when the caller named it; '' otherwise. */
  readonly source: string;
  /** The part of the file at fault, e.g. "header length", "tensor 'k' data_offsets". */
  readonly part: string;

  /** The message is made one line (control characters escaped) and cut to {@link MAX_ERROR_MESSAGE_CHARS}. */
  constructor(part: string, problem: string, source = '') {
    super(clipText(oneLine(`${source === '' ? '' : `${source}: `}${part}: ${problem}`), MAX_ERROR_MESSAGE_CHARS));
    this.source = source;
    this.part = clipText(oneLine(part), MAX_ERROR_MESSAGE_CHARS);
  }
}

/** Control characters and line separators a message must not carry (they would split it into lines). */
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const CONTROL_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** `text` with control characters written as escapes (a newline as backslash-n, NUL as backslash-u0000): one line. */
export function oneLine(text: string): string {
  return text.replace(CONTROL_CHARS, (c) => CONTROL_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** `text` cut to at most `max` characters, the cut said at the end ("… (N more characters)"). */
export function clipText(text: string, max: number): string {
  if (text.length <= max) return text;
  let keep = max - ` … (${text.length} more characters)`.length;
  if (keep < 0) keep = 0;
  const code = text.charCodeAt(keep - 1);
  if (code >= 0xd800 && code <= 0xdbff) keep--; // do not split a surrogate pair
  return `${text.slice(0, keep)} … (${text.length - keep} more characters)`;
}

/** A tensor name or key for a message: quoted, cut to {@link NAME_CHARS} characters. */
export function quoteName(name: string): string {
  return `'${clipText(name, NAME_CHARS)}'`;
}

/** Items for a message: the first {@link LISTED_ITEMS}, then "… and N more". */
export function listForMessage(items: readonly string[]): string {
  const shown = items.slice(0, LISTED_ITEMS).map((item) => clipText(item, NAME_CHARS)).join(', ');
  return items.length > LISTED_ITEMS ? `${shown}, … and ${items.length - LISTED_ITEMS} more` : shown;
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
/** Largest header the reader accepts, as the official reader (its MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;
/**
 * Deepest JSON nesting accepted (the header object is level 1; a valid header needs 3: header,
 * tensor, shape). Checked by a scan before JSON.parse, so that no recursion (in a parser, in
 * {@link describe}) ever sees a deeper value.
 */
export const MAX_JSON_DEPTH = 64;
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

/** Characters of a value shown in a message ({@link describe}). */
const DESCRIBE_CHARS = 60;

/**
 * A short JSON-like rendering of a parsed header value for a message, at most {@link DESCRIBE_CHARS}
 * characters. Stops walking once that much is written, so a huge or deep value costs little.
 */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  let text = '';
  const walk = (v: unknown, depth: number): void => {
    if (text.length > DESCRIBE_CHARS) return;
    if (Array.isArray(v) || (typeof v === 'object' && v !== null)) {
      const isArray = Array.isArray(v);
      if (depth >= MAX_JSON_DEPTH) {
        text += isArray ? '[...]' : '{...}';
        return;
      }
      text += isArray ? '[' : '{';
      let first = true;
      for (const [key, item] of isArray ? (v as unknown[]).entries() : Object.entries(v as object)) {
        if (text.length > DESCRIBE_CHARS) return;
        if (!first) text += ',';
        first = false;
        if (!isArray) text += `${JSON.stringify(clipText(String(key), DESCRIBE_CHARS))}:`;
        walk(item, depth + 1);
      }
      text += isArray ? ']' : '}';
    } else if (typeof v === 'string') {
      text += JSON.stringify(v.length > DESCRIBE_CHARS ? v.slice(0, DESCRIBE_CHARS) : v);
    } else {
      text += typeof v === 'number' || typeof v === 'boolean' || v === null ? JSON.stringify(v) : String(v);
    }
  };
  walk(value, 0);
  return text.length > DESCRIBE_CHARS ? `${text.slice(0, DESCRIBE_CHARS - 3)}...` : text;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Keys of one object kept in a list (searched linearly) before {@link scanJson} switches to a Set. */
const SHORT_KEY_LIST = 16;

/**
 * What {@link scanJson} found in a header's text: whether it nests deeper than {@link MAX_JSON_DEPTH},
 * and the first key that appears twice in one object (`within`: the top-level key whose value holds
 * that object; undefined for the top-level object itself).
 */
interface JsonScan {
  readonly tooDeep: boolean;
  readonly duplicate?: { readonly key: string; readonly within?: string };
}

/**
 * One linear pass over JSON text, no recursion: nesting depth (stops past {@link MAX_JSON_DEPTH}) and
 * repeated keys, which JSON.parse would silently collapse to the last. Exact for valid JSON; on
 * invalid JSON only `tooDeep` is meaningful (JSON.parse then reports the syntax error).
 */
function scanJson(text: string): JsonScan {
  // keys: null for an array; a short list (tensor entries have 3 keys), a Set once it grows
  interface Level { keys: string[] | Set<string> | null; expectKey: boolean }
  const stack: Level[] = [];
  let topKey: string | undefined;
  let duplicate: JsonScan['duplicate'];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          escaped = true;
          i++;
        } else if (d === 0x22) {
          break;
        }
      }
      const level = stack[stack.length - 1];
      if (level?.keys && level.expectKey && i < text.length) {
        let key: string | undefined = text.slice(start + 1, i);
        if (escaped) {
          try {
            key = JSON.parse(text.slice(start, i + 1)) as string;
          } catch {
            key = undefined; // invalid JSON: JSON.parse reports it
          }
        }
        if (key !== undefined) {
          const keys = level.keys;
          const seen = Array.isArray(keys) ? keys.includes(key) : keys.has(key);
          if (seen) duplicate ??= { key, within: stack.length === 1 ? undefined : topKey };
          else if (!Array.isArray(keys)) keys.add(key);
          else if (keys.length < SHORT_KEY_LIST) keys.push(key);
          else level.keys = new Set([...keys, key]);
          if (stack.length === 1) topKey = key;
        }
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= MAX_JSON_DEPTH) return { tooDeep: true };
      stack.push({ keys: c === 0x7b ? [] : null, expectKey: true });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x3a /* : */) {
      const level = stack[stack.length - 1];
      if (level !== undefined) level.expectKey = false;
    } else if (c === 0x2c /* , */) {
      const level = stack[stack.length - 1];
      if (level !== undefined) level.expectKey = true;
    }
  }
  return { tooDeep: false, duplicate };
}

/** Elements of a tensor of shape `dims` (0 when any axis is 0, so no Infinity * 0). */
export function elementCount(dims: readonly number[]): number {
  return dims.includes(0) ? 0 : dims.reduce((a, b) => a * b, 1);
}

const EMPTY_BYTES = new Uint8Array(0);

/** `[2, 3]`, with a long shape cut. */
function shapeText(dims: readonly number[]): string {
  return `[${listForMessage(dims.map(String))}]`;
}

/**
 * Parses a whole safetensors file. `source` (e.g. the file name) prefixes every error message.
 * Throws {@link TensorFileError} on any malformed part (see the module comment for the rules).
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
  if (headerLengthBig > BigInt(MAX_HEADER_BYTES)) {
    fail('header length (bytes 0..8)', `says the JSON header is ${headerLengthBig} bytes; expected at most ${MAX_HEADER_BYTES}`);
  }
  const available = bytes.length - 8;
  if (headerLengthBig > BigInt(available)) {
    fail(
      'header length (bytes 0..8)',
      `says the JSON header is ${headerLengthBig} bytes but only ${available} bytes follow; expected at most ${available}`,
    );
  }
  const headerLength = Number(headerLengthBig);
  const headerPart = `header (bytes 8..${8 + headerLength})`;
  let headerText: string;
  try {
    // ignoreBOM: a byte-order mark stays in the text (and JSON.parse refuses it), as in Python's json
    headerText = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + headerLength));
  } catch {
    return fail(headerPart, 'is not valid UTF-8; expected a UTF-8 JSON object');
  }
  const scan = scanJson(headerText);
  if (scan.tooDeep) fail(headerPart, `nests arrays/objects more than ${MAX_JSON_DEPTH} levels deep; expected at most ${MAX_JSON_DEPTH}`);
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    return fail(
      headerPart,
      `is not valid JSON (${clipText((err as Error).message, 200)}); expected a JSON object, starts with ${describe(headerText.slice(0, 40))}`,
    );
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail('header', `is ${Array.isArray(header) ? 'an array' : describe(header)}; expected a JSON object`);
  }
  if (scan.duplicate !== undefined) {
    const { key, within } = scan.duplicate;
    const forgets = 'a JSON parser would silently keep only the last';
    if (within === undefined) {
      fail(
        key === METADATA_KEY ? METADATA_KEY : `tensor ${quoteName(key)}`,
        `appears more than once in the header; expected each name once (${forgets})`,
      );
    }
    fail(
      within === METADATA_KEY ? METADATA_KEY : `tensor ${quoteName(within as string)}`,
      `has the key ${quoteName(key)} more than once; expected each key once (${forgets})`,
    );
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
          fail(`${METADATA_KEY}[${quoteName(key)}]`, `is ${describe(value)}; expected a string (safetensors metadata values are strings)`);
        }
        metadata[key] = value as string;
      }
      continue;
    }
    const part = `tensor ${quoteName(name)}`;
    if (typeof info !== 'object' || info === null || Array.isArray(info)) {
      fail(part, `is ${describe(info)}; expected an object with dtype, shape and data_offsets`);
    }
    const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(`${part} dtype`, `is ${describe(dtype)}; expected a dtype string such as "F32"`);
    const dtypeText = dtype as string;
    if (!isFloatDtype(dtypeText) && !isIntDtype(dtypeText)) {
      const why = KNOWN_UNSUPPORTED.includes(dtypeText) ? 'is not supported by this reader' : 'is not a safetensors dtype';
      fail(`${part} dtype`, `${describe(dtypeText)} ${why}; expected one of ${[...FLOAT_DTYPES, ...INT_DTYPES].join(', ')}`);
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
    const itemBytes = DTYPE_BYTES[dtypeText as SafetensorsDtype];
    const needed = elementCount(dims) * itemBytes;
    if (end - begin !== needed) {
      fail(
        `${part} data_offsets`,
        `[${begin}, ${end}] span ${end - begin} bytes; expected ${needed} (shape ${shapeText(dims)} x ${itemBytes}-byte ${dtypeText})`,
      );
    }
    parsed.push({ name, dtype: dtypeText as SafetensorsDtype, shape: dims, begin, end });
  }

  // The tensors must tile the data region: sorted by [begin, end], each starts where the last ended.
  const byOffset = [...parsed].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: Entry | undefined;
  for (const t of byOffset) {
    const part = `tensor ${quoteName(t.name)} data_offsets`;
    if (t.begin < covered) {
      const other = previous as Entry;
      fail(part, `[${t.begin}, ${t.end}] overlaps tensor ${quoteName(other.name)} [${other.begin}, ${other.end}]; expected disjoint byte ranges`);
    }
    if (t.begin > covered) {
      fail(
        part,
        `[${t.begin}, ${t.end}] leaves a gap: bytes ${covered}..${t.begin} of the data region belong to no tensor; ` +
          `expected it to begin at ${covered}${previous === undefined ? ' (the first tensor starts at 0)' : `, where tensor ${quoteName(previous.name)} ends`}`,
      );
    }
    covered = t.end;
    previous = t;
  }
  if (covered !== dataLength) {
    fail(
      `data region (bytes ${dataStart}..${bytes.length})`,
      `has ${dataLength - covered} bytes after the last tensor's data (bytes ${covered}..${dataLength} of the data region belong to no tensor); ` +
        `expected the tensors to end at ${dataLength}, the end of the file`,
    );
  }

  const tensors = new Map<string, SafetensorsTensor>();
  for (const t of parsed) {
    const raw = t.end > t.begin ? bytes.subarray(dataStart + t.begin, dataStart + t.end) : EMPTY_BYTES;
    const part = `tensor ${quoteName(t.name)} data`;
    if (isFloatDtype(t.dtype)) {
      tensors.set(t.name, { kind: 'float', name: t.name, dtype: t.dtype, shape: t.shape, data: decodeFloat(raw, t.dtype) });
    } else {
      const data = decodeInt(raw, t.dtype, (index, value) =>
        fail(part, `element ${index} = ${value} (${t.dtype}) does not fit in int32; expected values in [${INT32_MIN}, ${INT32_MAX}]`),
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
  const part = `tensor ${quoteName(name)}`;
  if (tensor === undefined) {
    const names = [...file.tensors.keys()];
    throw new TensorFileError(part, `missing; file has: ${names.length === 0 ? '(no tensors)' : listForMessage(names)}`, source);
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
      `is ${shapeText(tensor.shape)} (rank ${tensor.shape.length}); expected rank ${rank}`,
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
      if (typeof value !== 'string') fail(`${METADATA_KEY}[${quoteName(key)}]`, `is ${describe(value)}; expected a string`);
    }
    header[METADATA_KEY] = { ...metadata };
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of Object.entries(tensors)) {
    const part = `tensor ${quoteName(name)}`;
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
    const count = elementCount(tensor.shape);
    if (count !== tensor.data.length) {
      fail(`${part} shape`, `${shapeText(tensor.shape)} holds ${count} elements but data has ${tensor.data.length}; expected equal counts`);
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
