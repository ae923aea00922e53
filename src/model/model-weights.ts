/**
 * The model's weights from safetensors files (F16, as model/train.py writes them: one file or shards),
 * checked tensor by tensor against the config and kept as the file's own bits: pairs of halves packed
 * in u32 (element 2i in the low half, 2i+1 in the high half, which is what little-endian f16 bytes
 * already are), so the WGSL kernels unpack them with `unpack2x16float` and need no `shader-f16`.
 *
 * Every problem is a TensorFileError naming the file and tensor and what was expected: a missing,
 * repeated or unexpected tensor, a dtype other than F16, a shape other than the config's, a value
 * that is not finite.
 *
 * @example
 *   const weights = loadModelWeights(config, [{ name: 'model.safetensors', bytes }]);
 *   weights.tensors.get('model.norm.weight'); // { shape: [384], words: Uint32Array(192) }
 */
import { parseSafetensors, quoteName, TensorFileError } from '../io/safetensors';
import { weightShapes, type ModelConfig } from './model-config';

/** One weight tensor: its shape and its f16 values, two per u32 word. */
export interface PackedTensor {
  shape: number[];
  /** [elements / 2] u32: pack2x16float(x[2i], x[2i + 1]) as raw binary16 bits */
  words: Uint32Array;
}

export interface ModelWeights {
  config: ModelConfig;
  /** Every tensor of weightShapes(config), by name. */
  tensors: Map<string, PackedTensor>;
}

export interface WeightFile {
  /** File name, for messages. */
  name: string;
  bytes: Uint8Array;
}

/** The `data_offsets` of each tensor (the header was validated by parseSafetensors). */
function dataOffsets(bytes: Uint8Array): { dataStart: number; offsets: Map<string, [number, number]> } {
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, { data_offsets?: [number, number] }>;
  const offsets = new Map<string, [number, number]>();
  for (const [name, entry] of Object.entries(header)) if (name !== '__metadata__' && entry.data_offsets) offsets.set(name, entry.data_offsets);
  return { dataStart: 8 + headerLength, offsets };
}

/** Index of the first non-finite binary16 value (exponent bits all ones) in `words`, or -1. */
function firstNonFinite(words: Uint32Array): number {
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if ((w & 0x7c00) === 0x7c00) return 2 * i;
    if ((w & 0x7c000000) === 0x7c000000) return 2 * i + 1;
  }
  return -1;
}

/**
 * Reads and checks the weights of `config` from `files` (tensors may be spread over several shards;
 * each must be in exactly one).
 */
export function loadModelWeights(config: ModelConfig, files: readonly WeightFile[]): ModelWeights {
  const expected = new Map(weightShapes(config));
  const tensors = new Map<string, PackedTensor>();
  const seenIn = new Map<string, string>();
  for (const file of files) {
    const parsed = parseSafetensors(file.bytes, file.name);
    const { dataStart, offsets } = dataOffsets(file.bytes);
    for (const [name, t] of parsed.tensors) {
      const fail = (problem: string): never => {
        throw new TensorFileError(`tensor ${quoteName(name)}`, problem, file.name);
      };
      const shape = expected.get(name);
      if (shape === undefined) {
        fail(name === 'lm_head.weight'
          ? 'the LM head is tied to model.embed_tokens.weight, so the file should not store it'
          : `is not a weight of this config (${config.nLayers} layers; names as transformers' LlamaForCausalLM)`);
      }
      const other = seenIn.get(name);
      if (other !== undefined) fail(`is also in ${other}; each tensor must be stored once`);
      seenIn.set(name, file.name);
      if (t.dtype !== 'F16') fail(`has dtype ${t.dtype}; expected F16`);
      if (t.shape.length !== shape!.length || t.shape.some((n, i) => n !== shape![i])) {
        fail(`has shape [${t.shape.join(', ')}]; the config needs [${shape!.join(', ')}]`);
      }
      const [begin, end] = offsets.get(name)!;
      // a copy (the file's bytes may not be 4-byte aligned for a Uint32Array view)
      const words = new Uint32Array(file.bytes.slice(dataStart + begin, dataStart + end).buffer);
      const bad = firstNonFinite(words);
      if (bad >= 0) fail(`element ${bad} is not finite (${t.data[bad]}); the forward pass needs finite weights`);
      tensors.set(name, { shape: shape!, words });
    }
  }
  const missing = [...expected.keys()].filter((name) => !tensors.has(name));
  if (missing.length) {
    throw new TensorFileError(
      'weights',
      `${missing.length} tensor${missing.length === 1 ? '' : 's'} of the config ${missing.length === 1 ? 'is' : 'are'} in none of the files: ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', …' : ''}`,
      files.map((f) => f.name).join(', '),
    );
  }
  return { config, tensors };
}

/** Words of several tensors, concatenated in order along their first axis (e.g. q, k, v → one [Σout, in/2]). */
export function concatWords(parts: readonly PackedTensor[]): Uint32Array {
  const out = new Uint32Array(parts.reduce((n, p) => n + p.words.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p.words, at);
    at += p.words.length;
  }
  return out;
}
