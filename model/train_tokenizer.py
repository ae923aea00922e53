#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer on the train split only (stdlib only, deterministic).

    python3 model/train_tokenizer.py            # writes model/tokenizer.json

The train text (model/corpus/train.txt.gz, documents split at the form feed) is cut into chunks by
tokenizer.PRETOKENIZE; the chunks are counted once, and BPE runs on that frequency table: each step
merges the most frequent adjacent pair (ties: the smallest (a, b)), updating only the chunks that hold
it. 256 byte tokens + 3838 merges + <bos> + <eos> = 4096 tokens.
"""
import argparse
import collections
import gzip
import hashlib
import heapq
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tokenizer as tok  # noqa: E402

VOCAB_SIZE = 4096
SPECIALS = ['<bos>', '<eos>']
DOC_SEPARATOR = '\x0c'


def read_docs(path):
    with gzip.open(path, 'rb') as f:
        return f.read().decode('utf-8').split(DOC_SEPARATOR)


def train_bpe(chunk_counts, num_merges, log=None):
    """Merges [(a, b), ...] learnt from {chunk bytes: count}."""
    items = sorted(chunk_counts.items())  # fixed order
    words = [list(b) for b, _ in items]
    freqs = [c for _, c in items]
    pair_count = collections.defaultdict(int)
    where = collections.defaultdict(set)
    for wi, w in enumerate(words):
        f = freqs[wi]
        for i in range(len(w) - 1):
            p = (w[i], w[i + 1])
            pair_count[p] += f
            where[p].add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    t0 = time.time()
    while len(merges) < num_merges:
        while heap:
            negc, p = heapq.heappop(heap)
            if pair_count.get(p, 0) == -negc and -negc > 0:
                break
        else:
            raise RuntimeError('BPE: ran out of pairs after %d merges' % len(merges))
        if -negc < 2:
            raise RuntimeError('BPE: the best pair occurs once after %d merges; the corpus is too small' % len(merges))
        new_id = 256 + len(merges)
        merges.append(p)
        a, b = p
        changed = set()
        for wi in sorted(where.pop(p)):
            w = words[wi]
            f = freqs[wi]
            for i in range(len(w) - 1):  # remove this word's pairs
                q = (w[i], w[i + 1])
                pair_count[q] -= f
                changed.add(q)
            out = []
            i = 0
            n = len(w)
            while i < n:
                if i + 1 < n and w[i] == a and w[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for i in range(len(out) - 1):  # add the new pairs
                q = (out[i], out[i + 1])
                pair_count[q] += f
                changed.add(q)
                where[q].add(wi)
        pair_count.pop(p, None)
        for q in changed:
            c = pair_count.get(q, 0)
            if c > 0:
                heapq.heappush(heap, (-c, q))
            else:
                pair_count.pop(q, None)
                where.pop(q, None)
        if log and (len(merges) % 500 == 0 or len(merges) == num_merges):
            log('  %d merges (%.1f s), last count %d' % (len(merges), time.time() - t0, -negc))
    return merges


def to_json(merges, specials, train_sha256):
    """tokenizer.json text: one merge and one vocab entry per line (stable, diff-friendly)."""
    token_bytes = [bytes([i]) for i in range(256)]
    for a, b in merges:
        token_bytes.append(token_bytes[a] + token_bytes[b])
    vocab = [t.hex() for t in token_bytes] + [''] * len(specials)
    head = {
        'format': 'byte-level-bpe-v1',
        'vocab_size': len(vocab),
        'pretokenize': tok.PRETOKENIZE,
        'specials': {s: len(token_bytes) + i for i, s in enumerate(specials)},
        'trained_on': {'file': 'model/corpus/train.txt.gz', 'text_sha256': train_sha256,
                       'documents_split_at': 'U+000C'},
        'notes': 'ids 0-255: bytes; merge i joins merges[i] = [a, b] into id 256+i; vocab[id]: the '
                 'token bytes in hex ("" for specials); see model/tokenizer.py',
    }
    lines = ['{']
    for k, v in head.items():
        lines.append('  %s: %s,' % (json.dumps(k), json.dumps(v, ensure_ascii=True)))
    lines.append('  "merges": [')
    lines.append(',\n'.join('    [%d, %d]' % m for m in merges))
    lines.append('  ],')
    lines.append('  "vocab": [')
    lines.append(',\n'.join('    %s' % json.dumps(v) for v in vocab))
    lines.append('  ]')
    lines.append('}')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    ap = argparse.ArgumentParser(description='Train the byte-level BPE tokenizer on the train split.')
    ap.add_argument('--corpus', default=os.path.join(HERE, 'corpus', 'train.txt.gz'))
    ap.add_argument('--out', default=os.path.join(HERE, 'tokenizer.json'))
    ap.add_argument('--vocab-size', type=int, default=VOCAB_SIZE)
    args = ap.parse_args(argv)

    t0 = time.time()
    with gzip.open(args.corpus, 'rb') as f:
        raw = f.read()
    docs = raw.decode('utf-8').split(DOC_SEPARATOR)
    counts = collections.Counter()
    for d in docs:
        counts.update(tok.pretokenize(d))
    chunk_counts = collections.Counter()
    for chunk, c in counts.items():
        chunk_counts[chunk.encode('utf-8')] += c
    print('train text: %d documents, %d bytes, %d chunks (%d distinct), %.1f s'
          % (len(docs), len(raw), sum(counts.values()), len(chunk_counts), time.time() - t0))
    num_merges = args.vocab_size - 256 - len(SPECIALS)
    merges = train_bpe(chunk_counts, num_merges, log=print)
    text = to_json(merges, SPECIALS, hashlib.sha256(raw).hexdigest())
    with open(args.out, 'w', encoding='utf-8') as f:
        f.write(text)
    t = tok.load(args.out)
    print('wrote %s: vocab %d, sha256 %s, %.1f s' % (args.out, t.vocab_size, t.sha256, time.time() - t0))


if __name__ == '__main__':
    main()
