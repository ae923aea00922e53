#!/usr/bin/env python3
"""Which half of the KV cache the INT4 perplexity loss comes from: the committed model's held-out
perplexity (float64 numpy, the windows model/train.py scores) with K and V quantized separately.

    python3 model/kv_ablation.py [RUN_DIR] [--windows N] [--variants A,B] [--bootstrap N] [--json FILE]
    python3 model/kv_ablation.py [RUN_DIR] --key-stats N [--json FILE]

Each variant stores K (after RoPE) and V as FP16 or as the project's token-wise INT4 (the numeric
contract of tools/saw_int4_reference.py: per (token, kv head) asymmetric 4-bit, scale and min in f16),
optionally rotated by the block-diagonal Hadamard H_B before quantization and back after it. The
Hadamard rotation of keys acts on K's error only; V's INT4 error stays whatever is done to K. The
GPU path's own numbers (the `perplexity` CLI command) agree with the `fp16`, `int4` and
`int4-hadamard` rows here to the fourth digit (docs/benchmarks.md).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'tools'))
import forward_numpy as fn  # noqa: E402
import saw_int4_reference as contract  # noqa: E402
import tokenizer as tokmod  # noqa: E402
import train  # noqa: E402


def fp16(x, layer=None):
    return x.astype(np.float16).astype(np.float64)


def int4(block=None):
    """Token-wise INT4 of [H, T, D] rows, rotated by H_block first (and back) when block is given."""
    def quant(x, layer=None):
        if block is None:
            return contract.quantize_int4(x)['xhat']
        return contract.rotate(contract.quantize_int4(contract.rotate(x, block))['xhat'], block)
    return quant


def in_layer(store, only):
    """`store` in layer `only`, FP16 in every other layer."""
    return lambda x, layer: store(x) if layer == only else fp16(x)


# name → (K storage, V storage): functions of ([H, T, D] rows, layer index)
VARIANTS = {
    'fp16': (fp16, fp16),
    'K int4, V fp16': (int4(), fp16),
    'K int4-hadamard B=16, V fp16': (int4(16), fp16),
    'K int4-hadamard B=64, V fp16': (int4(64), fp16),
    'K int4-hadamard B=128, V fp16': (int4(128), fp16),
    'K fp16, V int4': (fp16, int4()),
    'K fp16, V int4-hadamard B=128': (fp16, int4(128)),
    'int4': (int4(), int4()),
    'int4-hadamard B=128 (K only)': (int4(128), int4()),
    # where the loss is made: the method in one layer, FP16 KV in the others (the committed model has 4)
    **{'int4-hadamard B=128 (K only) in layer %d only' % n: (in_layer(int4(128), n), in_layer(int4(), n)) for n in range(4)},
}


# Keys centred first (not the paper's method): a per-(layer, kv head) mean key, taken from the first
# CENTRE_WINDOWS windows of the train split, is subtracted before the rotation and quantization and
# added back after. Adding it back changes no attention weight (it shifts each query's logits by one
# constant), so a cache could store k − mean and never add it; the decode kernel would not change.
CENTRED = 'int4-hadamard B=128 (K only) on centred keys'
CENTRE_WINDOWS = 16


def mean_keys(w, c, tok, windows=CENTRE_WINDOWS):
    """{layer: [Hkv, 1, D]} mean post-RoPE key over the first `windows` eval windows of the train split."""
    _, docs = train.read_docs('train')
    stream = train.token_stream(tok, docs)
    sums = {}
    spans = train.eval_windows(len(stream), c['context_length'])[:windows]
    for start, length in spans:
        _, kvs = fn.forward(w, c, stream[start:start + length])
        for layer, (_, k, _) in enumerate(kvs):
            sums[layer] = sums.get(layer, 0.0) + k.mean(axis=1, keepdims=True)
    return {layer: total / len(spans) for layer, total in sums.items()}


def centred_stores(mu):
    """(K, V) stores of the centred variant for mean keys `mu` ({layer: [Hkv, 1, D]}, mean_keys)."""
    quant_k, quant_v = int4(128), int4()
    return (lambda k, layer: quant_k(k - mu[layer]) + mu[layer]), (lambda v, layer: quant_v(v))


def window_nlls(w, c, stream, windows, k_store, v_store):
    """[windows] summed negative log-likelihood of each window's targets, and the target counts."""
    nll, counts = [], []
    for start, length in windows:
        ids = stream[start:start + length]
        targets = np.asarray(stream[start + 1:start + length + 1])
        logits, _ = fn.forward(w, c, ids, kv_transform=lambda k, v, layer: (k_store(k, layer), v_store(v, layer)))
        top = logits.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
        nll.append(float(np.sum(lse - logits[np.arange(length), targets])))
        counts.append(length)
    return np.asarray(nll), np.asarray(counts)


def perplexity(w, c, stream, windows, k_store, v_store):
    """(perplexity, targets) over the windows."""
    nll, counts = window_nlls(w, c, stream, windows, k_store, v_store)
    return float(np.exp(nll.sum() / counts.sum())), int(counts.sum())


def paired_bootstrap(nll, base_nll, counts, resamples, seed=0, groups=None):
    """95 % interval of perplexity(variant) / perplexity(base) - 1 from `resamples` paired resamples
    (the same units for both) drawn with replacement: windows, or with `groups` ([windows] unit index,
    e.g. each window's document) whole groups of windows, which keeps windows of one document together."""
    groups = np.arange(len(counts)) if groups is None else np.asarray(groups)
    num_groups = int(groups.max()) + 1
    diff = np.bincount(groups, weights=nll - base_nll, minlength=num_groups)
    n = np.bincount(groups, weights=counts, minlength=num_groups)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num_groups, size=(resamples, num_groups))
    ratio = np.exp(diff[idx].sum(axis=1) / n[idx].sum(axis=1)) - 1
    return float(np.percentile(ratio, 2.5)), float(np.percentile(ratio, 97.5))


def window_documents(stream, windows, bos_id):
    """[windows] index of the document (counted by <bos>) in which each window starts."""
    doc_of_token = np.cumsum(np.asarray(stream) == bos_id) - 1
    return np.asarray([doc_of_token[start] for start, _ in windows])


def key_stats(w, c, stream, windows, block=128):
    """Per layer, over `windows`: what INT4 + Hadamard-B does to the keys and to the attention logits
    q·k/√D the softmax sees (per query, over the keys it attends to: the spread a shift of the whole row
    leaves alone). 'keyError': ‖k̂ − k‖ / ‖k‖; 'logitSpread' and 'logitNoise': the rms over queries of the
    standard deviation over keys of q·k/√D and of q·(k̂ − k)/√D; 'meanKey': ‖mean over tokens of k‖ over
    the mean ‖k‖; 'keyErrorCentred': the key error when the window's mean key is taken out before quantization (it
    shifts every logit of a query by one constant, which the softmax ignores)."""
    quant = int4(block)
    sums = {}
    for start, length in windows:
        _, kvs = fn.forward(w, c, stream[start:start + length])
        mask = np.tril(np.ones((length, length), dtype=bool))  # query t attends to keys s ≤ t
        keys_seen = mask.sum(axis=1)
        for layer, (q, k, _) in enumerate(kvs):
            err = quant(k) - k
            mu = k.mean(axis=1, keepdims=True)
            centred_err = quant(k - mu) - (k - mu)
            rep = q.shape[0] // k.shape[0]
            kk, ee = np.repeat(k, rep, axis=0), np.repeat(err, rep, axis=0)
            d = q.shape[-1]
            rows = [q @ kk.transpose(0, 2, 1) / np.sqrt(d), q @ ee.transpose(0, 2, 1) / np.sqrt(d)]
            spreads = []
            for m in rows:  # per query row t (keys s ≤ t): variance over the row, from row 1 on
                x = np.where(mask, m, 0.0)
                var = (x ** 2).sum(axis=-1) / keys_seen - (x.sum(axis=-1) / keys_seen) ** 2
                spreads.append(float(np.mean(np.maximum(var[:, 1:], 0.0))))
            acc = sums.setdefault(layer, np.zeros(6))
            acc += [np.sum(err ** 2), np.sum(k ** 2), spreads[0], spreads[1],
                    np.linalg.norm(mu) / np.mean(np.linalg.norm(k, axis=-1)), np.sum(centred_err ** 2)]
    out = {}
    for layer, a in sorted(sums.items()):
        n = len(windows)
        out[layer] = {'keyError': float(np.sqrt(a[0] / a[1])), 'logitSpread': float(np.sqrt(a[2] / n)),
                      'logitNoise': float(np.sqrt(a[3] / n)), 'meanKey': float(a[4] / n),
                      'keyErrorCentred': float(np.sqrt(a[5] / a[1]))}
    return out


def parse_variants(text):
    """Variant names from a comma-separated list, where a name may itself hold a comma ('K int4, V fp16'):
    the longest run of pieces that is a known name, piece by piece. Returns (names, first unknown piece)."""
    known = [*VARIANTS, CENTRED]
    pieces = [p.strip() for p in text.split(',')]
    names, i = [], 0
    while i < len(pieces):
        match = next((j for j in range(len(pieces), i, -1) if ', '.join(pieces[i:j]) in known), None)
        if match is None:
            return names, pieces[i]
        names.append(', '.join(pieces[i:match]))
        i = match
    return names, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('run_dir', nargs='?', default=os.path.join(HERE, 'run'))
    ap.add_argument('--windows', type=int, default=0, help='score only the first N windows (0: all)')
    ap.add_argument('--json', help='write the results here')
    ap.add_argument('--variants', help='comma-separated subset of: ' + '; '.join([*VARIANTS, CENTRED]) + ' (default: all but the last)')
    ap.add_argument('--bootstrap', type=int, default=0, metavar='N',
                    help='also 95 %% intervals of each change vs fp16 from N paired resamples of the windows, '
                         'and of whole documents (windows of one document together)')
    ap.add_argument('--key-stats', type=int, default=0, metavar='N',
                    help='instead: per layer, what INT4 + Hadamard-128 does to the keys and the logits over the first N windows')
    args = ap.parse_args()
    names, unknown = (list(VARIANTS), None) if not args.variants else parse_variants(args.variants)
    if unknown is not None:
        ap.error('unknown variant %r; known: %s' % (unknown, [*VARIANTS, CENTRED]))
    if args.windows < 0:
        ap.error('--windows must be ≥ 0')
    if args.bootstrap < 0 or (args.bootstrap and 'fp16' not in names):
        ap.error('--bootstrap takes N ≥ 0 and needs the fp16 variant')
    with open(os.path.join(args.run_dir, 'reference.json'), encoding='utf-8') as f:
        ref = json.load(f)
    c = ref['config']
    w = fn.load_weights(args.run_dir, ref['weights']['files'])
    tok = tokmod.load()
    if tok.sha256 != ref['tokenizer_sha256']:
        sys.exit('kv_ablation: tokenizer.json differs from the run\'s tokenizer')
    _, docs = train.read_docs('heldout')
    stream = train.token_stream(tok, docs)
    windows = train.eval_windows(len(stream), ref['heldout']['window_tokens'])
    if args.windows:
        windows = windows[:args.windows]
    if args.key_stats:
        stats = key_stats(w, c, stream, windows[:args.key_stats])
        for layer, st in stats.items():
            print('layer %d: key error %.4f (centred first %.4f), mean key / |k| %.2f, logit spread %.2f, logit noise %.3f (%.2f %% of the spread)' % (
                layer, st['keyError'], st['keyErrorCentred'], st['meanKey'], st['logitSpread'], st['logitNoise'], 100 * st['logitNoise'] / st['logitSpread']))
        if args.json:
            with open(args.json, 'w', encoding='utf-8') as f:
                json.dump({'windows': min(args.key_stats, len(windows)), 'block': 128, 'layers': stats}, f, indent=1)
        return 0
    documents = window_documents(stream, windows, tok.bos_id)
    results = {}
    nlls = {}
    if 'fp16' in names:
        names = ['fp16'] + [v for v in names if v != 'fp16']  # the baseline first
    for name in names:
        t0 = time.time()
        stores = centred_stores(mean_keys(w, c, tok)) if name == CENTRED else VARIANTS[name]
        nlls[name], counts = window_nlls(w, c, stream, windows, *stores)
        n = int(counts.sum())
        ppl = float(np.exp(nlls[name].sum() / n))
        results[name] = {'perplexity': ppl}
        rel = ''
        if 'fp16' in results and name != 'fp16':
            base = results['fp16']['perplexity']
            rel = ' (%+.2f %% vs fp16' % (100 * (ppl / base - 1))
            if args.bootstrap:
                lo, hi = paired_bootstrap(nlls[name], nlls['fp16'], counts, args.bootstrap)
                dlo, dhi = paired_bootstrap(nlls[name], nlls['fp16'], counts, args.bootstrap, groups=documents)
                results[name]['changeVsFp16Interval95'] = {'windows': [lo, hi], 'documents': [dlo, dhi]}
                rel += '; 95 %% interval %+.2f to %+.2f %% over windows, %+.2f to %+.2f %% over documents' % (100 * lo, 100 * hi, 100 * dlo, 100 * dhi)
            rel += ')'
        print('%-32s %.4f%s  [%d targets, %.0f s]' % (name, ppl, rel, n, time.time() - t0), flush=True)
    out = {'targets': n, 'windows': len(windows), 'referencePerplexity': ref['heldout']['perplexity'] if not args.windows else None,
           'documents': int(documents.max()) + 1, 'bootstrapResamples': args.bootstrap, 'variants': results}
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
