/**
 * INT8 packing for the int8 method (quantization itself is quantizeRow(x, INT8_MAX_CODE) of int4.ts):
 * BYTE ORDER of src/layout.ts, element 4w+j in byte j of word w.
 */
import { CODES8_PER_WORD } from '../layout';

/** [D] codes 0..255 → [D/4] u32 words in BYTE ORDER. */
export function packBytes(codes: Uint8Array): Uint32Array {
  const words = new Uint32Array(codes.length / CODES8_PER_WORD);
  for (let i = 0; i < codes.length; i++) {
    const w = Math.floor(i / CODES8_PER_WORD);
    words[w] = (words[w] | (codes[i] << (8 * (i % CODES8_PER_WORD)))) >>> 0;
  }
  return words;
}

/** [D/4] u32 words → [D] codes. */
export function unpackBytes(words: ArrayLike<number>, length = words.length * CODES8_PER_WORD): Uint8Array {
  const codes = new Uint8Array(length);
  for (let i = 0; i < length; i++) codes[i] = (words[Math.floor(i / CODES8_PER_WORD)] >>> (8 * (i % CODES8_PER_WORD))) & 0xff;
  return codes;
}
