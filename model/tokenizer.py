"""Byte-level BPE tokenizer of the model (stdlib only; model/train_tokenizer.py makes it).

tokenizer.json (see model/README.md, "Tokenizer"):

    {"format": "byte-level-bpe-v1", "vocab_size": 4096,
     "pretokenize": "<regular expression>", "specials": {"<bos>": 4094, "<eos>": 4095},
     "merges": [[a, b], ...], "vocab": ["00", "01", ..., "<hex bytes of token id>", ...], ...}

Token ids 0–255 are the bytes 0–255. Merge i (0-based) joins the adjacent pair (a, b) into token
256 + i, whose bytes are bytes(a) + bytes(b). The specials come after the merges. `vocab[id]` is the
token's bytes in lower-case hex ("" for a special).

Encoding a text: split it into chunks with the `pretokenize` regular expression (every character
belongs to exactly one chunk; the classes are ASCII-only, so the same expression with JavaScript's
`u` flag splits the same way), take each chunk's UTF-8 bytes as ids 0–255, then repeatedly merge the
adjacent pair with the lowest merge index (all of its non-overlapping occurrences, left to right)
until no adjacent pair is a merge. Specials are never produced from text; decode() drops them.
"""
import hashlib
import json
import os
import re

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tokenizer.json')

# ASCII-only classes: the same in Python's re and JavaScript's RegExp (with the 'u' flag).
_WS = r' \t\n\r\x0b\x0c'
PRETOKENIZE = (r"'(?:s|d|m|t|ll|ve|re)"
               r"| ?[A-Za-z]+"
               r"| ?[0-9]{1,3}"
               r"| ?[^" + _WS + r"A-Za-z0-9]+"
               r"|[" + _WS + r"]+(?![^" + _WS + r"])"
               r"|[" + _WS + r"]+")


def pretokenize(text, pattern=None):
    """The chunks of text (their concatenation is text)."""
    rx = re.compile(pattern or PRETOKENIZE)
    return rx.findall(text)


def bpe_merge(ids, ranks):
    """ids (list of int) with the merges of `ranks` ({(a, b): (rank, new_id)}) applied, lowest rank first."""
    ids = list(ids)
    while len(ids) >= 2:
        best = None
        for i in range(len(ids) - 1):
            r = ranks.get((ids[i], ids[i + 1]))
            if r is not None and (best is None or r[0] < best[0]):
                best = r
                pair = (ids[i], ids[i + 1])
        if best is None:
            break
        out = []
        i = 0
        n = len(ids)
        while i < n:
            if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
                out.append(best[1])
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids


class Tokenizer:
    def __init__(self, spec, sha256=None):
        if spec.get('format') != 'byte-level-bpe-v1':
            raise ValueError('tokenizer: unknown format %r' % spec.get('format'))
        self.spec = spec
        self.sha256 = sha256
        self.vocab_size = int(spec['vocab_size'])
        self.merges = [tuple(m) for m in spec['merges']]
        self.specials = dict(spec['specials'])
        self.bos_id = self.specials.get('<bos>')
        self.eos_id = self.specials.get('<eos>')
        self.pattern = re.compile(spec['pretokenize'])
        self.ranks = {pair: (i, 256 + i) for i, pair in enumerate(self.merges)}
        self.token_bytes = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        special_ids = set(self.specials.values())
        if len(self.token_bytes) + len(special_ids) != self.vocab_size or \
                special_ids != set(range(len(self.token_bytes), self.vocab_size)):
            raise ValueError('tokenizer: 256 bytes + %d merges + specials %r do not make vocab_size %d'
                             % (len(self.merges), self.specials, self.vocab_size))
        vocab = spec.get('vocab')
        if vocab is not None:
            for i, tb in enumerate(self.token_bytes):
                if vocab[i] != tb.hex():
                    raise ValueError('tokenizer: vocab[%d] = %r disagrees with the merges (%r)' % (i, vocab[i], tb.hex()))
        self._cache = {}

    def encode(self, text):
        """Token ids of text (no specials)."""
        out = []
        cache = self._cache
        ranks = self.ranks
        for chunk in self.pattern.findall(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = bpe_merge(chunk.encode('utf-8'), ranks)
                if len(cache) < 1_000_000:
                    cache[chunk] = ids
            out.extend(ids)
        return out

    def decode_bytes(self, ids):
        tb = self.token_bytes
        n = len(tb)
        return b''.join(tb[i] for i in ids if 0 <= i < n)

    def decode(self, ids):
        """Text of ids; specials are dropped, invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids).decode('utf-8', errors='replace')


def load(path=DEFAULT_PATH):
    """The tokenizer in tokenizer.json at path (its sha256 in .sha256)."""
    with open(path, 'rb') as f:
        raw = f.read()
    return Tokenizer(json.loads(raw.decode('utf-8')), hashlib.sha256(raw).hexdigest())
