/**
 * The model's byte-level BPE tokenizer: a port of model/tokenizer.py that produces the same ids
 * (test/model-tokenizer.test.ts compares the whole held-out stream with Python's). No DOM or Node
 * imports: the page and the CLI share it.
 *
 * tokenizer.json (model/README.md, "Tokenizer"): ids 0–255 are the bytes; merge i joins the adjacent
 * pair (a, b) into id 256 + i; the specials (`<bos>`, `<eos>`) follow the merges. Encoding: split the
 * text into chunks with the `pretokenize` regular expression (ASCII classes, so JavaScript's `u` flag
 * splits as Python's `re` does), take each chunk's UTF-8 bytes, then repeatedly merge the adjacent
 * pair with the lowest merge index (all its non-overlapping occurrences, left to right) until none is
 * left. Decoding concatenates the tokens' bytes (specials dropped) as UTF-8 (invalid bytes → U+FFFD).
 *
 * @example
 *   const tok = new BpeTokenizer(JSON.parse(tokenizerJsonText));
 *   tok.decode(tok.encode('print "hello";\n')) === 'print "hello";\n';
 *   const stream = tokenStream(tok, heldoutText.split(DOC_SEPARATOR)); // <bos> doc <eos> per document
 */

/** Documents of a corpus file are joined by a form feed (model/train.py DOC_SEPARATOR). */
export const DOC_SEPARATOR = '\u000c';

/** The tokenizer.json fields the tokenizer reads. */
export interface TokenizerSpec {
  format: string;
  vocab_size: number;
  pretokenize: string;
  specials: Record<string, number>;
  merges: [number, number][];
  /** vocab[id]: the token's bytes in lower-case hex ('' for a special); checked against the merges when present. */
  vocab?: string[];
}

/** A tokenizer.json that is not a valid byte-level-bpe-v1 spec. */
export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
}

/** Chunks cached per tokenizer (the held-out text has ~20k distinct chunks). */
const MAX_CACHED_CHUNKS = 1_000_000;

export class BpeTokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** tokenBytes[id]: the bytes of token id (specials have none). */
  readonly tokenBytes: Uint8Array[];
  private readonly pattern: RegExp;
  /** (a · vocabSize + b) → merge index; the merged id is 256 + index. */
  private readonly ranks = new Map<number, number>();
  /** [merges, 2]: the pair (a, b) merge i joins. */
  private readonly mergePairs: Int32Array;
  private readonly cache = new Map<string, number[]>();
  private readonly encoder = new TextEncoder();

  constructor(spec: TokenizerSpec) {
    if (spec.format !== 'byte-level-bpe-v1') throw new TokenizerError(`tokenizer: unknown format ${JSON.stringify(spec.format)}; expected "byte-level-bpe-v1"`);
    if (!Number.isInteger(spec.vocab_size) || spec.vocab_size < 256) throw new TokenizerError(`tokenizer: vocab_size ${spec.vocab_size} must be an integer ≥ 256`);
    if (!Array.isArray(spec.merges)) throw new TokenizerError('tokenizer: merges must be a list of [a, b] pairs');
    this.vocabSize = spec.vocab_size;
    try {
      this.pattern = new RegExp(spec.pretokenize, 'gu');
    } catch (e) {
      throw new TokenizerError(`tokenizer: pretokenize is not a valid regular expression: ${(e as Error).message}`);
    }
    this.tokenBytes = Array.from({ length: 256 }, (_, i) => Uint8Array.of(i));
    this.mergePairs = new Int32Array(2 * spec.merges.length);
    spec.merges.forEach((pair, i) => {
      const [a, b] = Array.isArray(pair) ? pair : [NaN, NaN];
      const known = this.tokenBytes.length;
      if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b < 0 || a >= known || b >= known) {
        throw new TokenizerError(`tokenizer: merge ${i} ${JSON.stringify(pair)} must join two ids below ${known}`);
      }
      const merged = new Uint8Array(this.tokenBytes[a].length + this.tokenBytes[b].length);
      merged.set(this.tokenBytes[a]);
      merged.set(this.tokenBytes[b], this.tokenBytes[a].length);
      this.tokenBytes.push(merged);
      this.mergePairs[2 * i] = a;
      this.mergePairs[2 * i + 1] = b;
      const key = a * this.vocabSize + b;
      this.ranks.set(key, i); // a repeated pair: the later merge wins, as in Python's dict
    });
    const specials = Object.values(spec.specials ?? {});
    const expected = Array.from({ length: Math.max(0, this.vocabSize - this.tokenBytes.length) }, (_, i) => this.tokenBytes.length + i);
    if (this.tokenBytes.length > this.vocabSize || specials.length !== expected.length || !expected.every((id) => specials.includes(id))) {
      throw new TokenizerError(`tokenizer: 256 bytes + ${spec.merges.length} merges + specials ${JSON.stringify(spec.specials)} do not make vocab_size ${this.vocabSize}`);
    }
    const bos = spec.specials['<bos>'];
    const eos = spec.specials['<eos>'];
    if (bos === undefined || eos === undefined) throw new TokenizerError('tokenizer: specials must name <bos> and <eos>');
    this.bosId = bos;
    this.eosId = eos;
    if (spec.vocab !== undefined) {
      this.tokenBytes.forEach((bytes, id) => {
        const hex = Array.from(bytes, (x) => x.toString(16).padStart(2, '0')).join('');
        if (spec.vocab![id] !== hex) throw new TokenizerError(`tokenizer: vocab[${id}] = ${JSON.stringify(spec.vocab![id])} disagrees with the merges (${JSON.stringify(hex)})`);
      });
    }
  }

  /** The chunks of `text` (their concatenation is `text`). */
  pretokenize(text: string): string[] {
    return Array.from(text.matchAll(this.pattern), (m) => m[0]);
  }

  /** Token ids of `text` (no specials). */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const match of text.matchAll(this.pattern)) {
      const chunk = match[0];
      let ids = this.cache.get(chunk);
      if (ids === undefined) {
        ids = this.mergeChunk(Array.from(this.encoder.encode(chunk)));
        if (this.cache.size < MAX_CACHED_CHUNKS) this.cache.set(chunk, ids);
      }
      for (const id of ids) out.push(id);
    }
    return out;
  }

  /** `ids` with the merges applied, lowest merge index first (model/tokenizer.py bpe_merge). */
  private mergeChunk(ids: number[]): number[] {
    const v = this.vocabSize;
    while (ids.length >= 2) {
      let best = -1;
      for (let i = 0; i + 1 < ids.length; i++) {
        const rank = this.ranks.get(ids[i] * v + ids[i + 1]);
        if (rank !== undefined && (best < 0 || rank < best)) best = rank;
      }
      if (best < 0) break;
      const a = this.mergePairs[2 * best];
      const b = this.mergePairs[2 * best + 1];
      const merged: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
          merged.push(256 + best);
          i++;
        } else {
          merged.push(ids[i]);
        }
      }
      ids = merged;
    }
    return ids;
  }

  /** The bytes of `ids` (specials and ids outside the vocabulary contribute none). */
  decodeBytes(ids: ArrayLike<number>): Uint8Array {
    let length = 0;
    for (let i = 0; i < ids.length; i++) length += this.tokenBytes[ids[i]]?.length ?? 0;
    const out = new Uint8Array(length);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      const bytes = this.tokenBytes[ids[i]];
      if (bytes === undefined) continue;
      out.set(bytes, at);
      at += bytes.length;
    }
    return out;
  }

  /** Text of `ids`; specials are dropped, invalid UTF-8 becomes U+FFFD. */
  decode(ids: ArrayLike<number>): string {
    return new TextDecoder('utf-8').decode(this.decodeBytes(ids));
  }
}

/** The model's token stream of documents: `<bos> doc <eos>` for each, concatenated (model/train.py token_stream). */
export function tokenStream(tok: BpeTokenizer, docs: readonly string[]): Int32Array {
  const ids: number[] = [];
  for (const doc of docs) {
    ids.push(tok.bosId);
    for (const id of tok.encode(doc)) ids.push(id);
    ids.push(tok.eosId);
  }
  return Int32Array.from(ids);
}

/**
 * The first documents' stream, `<bos> doc <eos>` each, until it holds at least `minTokens` ids (or the
 * documents run out): a prefix of tokenStream(tok, docs), since every document is encoded on its own,
 * for a slice of the stream without encoding the rest.
 */
export function tokenStreamPrefix(tok: BpeTokenizer, docs: readonly string[], minTokens: number): Int32Array {
  const ids: number[] = [];
  for (let i = 0; i < docs.length && ids.length < minTokens; i++) {
    ids.push(tok.bosId);
    for (const id of tok.encode(docs[i])) ids.push(id);
    ids.push(tok.eosId);
  }
  return Int32Array.from(ids);
}
