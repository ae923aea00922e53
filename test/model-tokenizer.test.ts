/**
 * The TypeScript tokenizer (src/model/tokenizer.ts) against model/tokenizer.py: the same ids for the
 * whole held-out stream (the tokens the perplexity command scores) and for texts that probe the
 * pre-tokenizer (contractions, digit runs, whitespace before words, non-ASCII, form feeds), and a
 * decode that gives back the text. Python runs here (python3, stdlib only).
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readHeldoutDocs, readHeldoutStream, readTokenizer } from '../src/model/model-files';
import { BpeTokenizer, TokenizerError, type TokenizerSpec } from '../src/model/tokenizer';

const ROOT = resolve(__dirname, '..');
const MODEL = resolve(ROOT, 'model');

/** Runs Python with model/ on its path; returns stdout (throws with stderr on failure). */
function python(code: string, input = ''): string {
  const r = spawnSync('/usr/bin/python3', ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(MODEL)})\n${code}`], { input, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`python3 failed:\n${r.stderr}`);
  return r.stdout;
}

const PROBES = [
  '',
  "It's what we'd do; they'll say they've done it, we're sure, I'm not. DON'T",
  'open(my $fh, "<", $file) or die "Cannot open $file: $!";\n',
  '12345678 1 22 333 4444 x1y22',
  '  two spaces\tand a tab\n\n\n   three newlines then spaces   ',
  'trailing spaces   ',
  'naïve café — “quotes” … 日本語 🐪 emoji',
  'form\u000cfeed and \u000b vertical tab\r\nCRLF',
  '=head1 NAME\n\nperlfunc - Perl builtin functions\n\n=over 4\n\n=item -X FILEHANDLE\n',
];

describe('tokenizer: TypeScript port of model/tokenizer.py', () => {
  const { tokenizer } = readTokenizer(MODEL);

  it('encodes the whole held-out stream exactly as Python (train.py token_stream)', () => {
    const ours = readHeldoutStream(tokenizer, MODEL);
    const theirs = python(
      'import train, tokenizer as t\n' +
        "tok = t.load(); _, docs = train.read_docs('heldout')\n" +
        "sys.stdout.write(' '.join(map(str, train.token_stream(tok, docs).tolist())))",
    ).split(' ').map(Number);
    expect(ours.length).toBe(theirs.length);
    const first = ours.findIndex((id, i) => id !== theirs[i]);
    expect(first, first >= 0 ? `first difference at token ${first}: ours ${ours[first]}, Python ${theirs[first]}` : '').toBe(-1);
    // <bos> doc <eos> per document, and decoding gives the documents back
    const docs = readHeldoutDocs(MODEL);
    expect(ours.filter((id) => id === tokenizer.bosId).length).toBe(docs.length);
    expect(tokenizer.decode(ours)).toBe(docs.join(''));
  });

  it('splits and merges probe texts as Python does, and decodes them back', () => {
    const theirs = JSON.parse(
      python('import json, tokenizer as t\ntok = t.load()\nprint(json.dumps([[t.pretokenize(s, tok.spec["pretokenize"]), tok.encode(s)] for s in json.loads(sys.stdin.read())]))', JSON.stringify(PROBES)),
    ) as [string[], number[]][];
    PROBES.forEach((text, i) => {
      expect(tokenizer.pretokenize(text), JSON.stringify(text)).toEqual(theirs[i][0]);
      expect(tokenizer.encode(text), JSON.stringify(text)).toEqual(theirs[i][1]);
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    });
  });

  it('drops specials when decoding and refuses a tokenizer.json whose merges do not make the vocabulary', () => {
    expect(tokenizer.decode([tokenizer.bosId, ...tokenizer.encode('x'), tokenizer.eosId])).toBe('x');
    const spec: TokenizerSpec = { format: 'byte-level-bpe-v1', vocab_size: 259, pretokenize: '[a-z]+', specials: { '<bos>': 257, '<eos>': 258 }, merges: [[97, 98]] };
    expect(new BpeTokenizer(spec).encode('abab')).toEqual([256, 256]);
    expect(() => new BpeTokenizer({ ...spec, vocab_size: 260 })).toThrow(TokenizerError);
    expect(() => new BpeTokenizer({ ...spec, merges: [[97, 300]] })).toThrow(/merge 0 \[97,300\] must join two ids below 256/);
    expect(() => new BpeTokenizer({ ...spec, format: 'gpt2' })).toThrow(/unknown format/);
  });
});
