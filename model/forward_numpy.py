#!/usr/bin/env python3
"""The model's forward pass in numpy (float64), independent of PyTorch: a readable specification and
a check of a training run's files.

    python3 model/forward_numpy.py RUN_DIR      # RUN_DIR: the --out folder of model/train.py

Loads the weights (model*.safetensors, F16), recomputes the reference prompt's logits and the K/V of
the first dumped window, and compares them with reference.json and kv-layer*.safetensors. Exits 1 when
they disagree by more than the tolerances (float32 PyTorch against float64 numpy).
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stfile  # noqa: E402


def load_weights(run_dir, files):
    w = {}
    for fname in files:
        tensors, _ = stfile.read(os.path.join(run_dir, fname))
        for k, v in tensors.items():
            if k in w:
                raise ValueError('tensor %s is in two files' % k)
            w[k] = v.astype(np.float64)
    return w


def rope_tables(length, d, theta):
    inv = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    ang = np.outer(np.arange(length, dtype=np.float64), inv)
    ang = np.concatenate([ang, ang], axis=-1)
    # rounded to float32 as the PyTorch model uses them
    return np.cos(ang).astype(np.float32).astype(np.float64), np.sin(ang).astype(np.float32).astype(np.float64)


def rms_norm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rope(x, cos, sin):
    """x [H, T, D]: channel j pairs with j + D/2 (rotate half)."""
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    return x * cos + rot * sin


def forward(w, c, ids, kv_dtype=None, kv_transform=None):
    """(logits [T, V], [(q [Hq, T, D], k [Hkv, T, D], v [Hkv, T, D]) per layer]) for token ids [T];
    with kv_dtype (e.g. np.float16) K after RoPE and V are rounded to it before attention (an FP16 KV cache);
    with kv_transform, (k, v) = kv_transform(k, v, layer) ([Hkv, T, D] each) before attention instead (a
    quantized KV cache: model/kv_ablation.py). The returned K/V are the attention's."""
    t = len(ids)
    hq, hkv, d = c['n_heads'], c['n_kv_heads'], c['head_dim']
    cos, sin = rope_tables(t, d, c['rope_theta'])
    x = w['model.embed_tokens.weight'][np.asarray(ids)]
    kvs = []
    mask = np.triu(np.ones((t, t), dtype=bool), 1)
    for i in range(c['n_layers']):
        p = 'model.layers.%d.' % i
        n = rms_norm(x, w[p + 'input_layernorm.weight'], c['norm_eps'])
        q = (n @ w[p + 'self_attn.q_proj.weight'].T).reshape(t, hq, d).transpose(1, 0, 2)
        k = (n @ w[p + 'self_attn.k_proj.weight'].T).reshape(t, hkv, d).transpose(1, 0, 2)
        v = (n @ w[p + 'self_attn.v_proj.weight'].T).reshape(t, hkv, d).transpose(1, 0, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if kv_transform is not None:
            k, v = kv_transform(k, v, i)
        elif kv_dtype is not None:
            k = k.astype(kv_dtype).astype(np.float64)
            v = v.astype(kv_dtype).astype(np.float64)
        kvs.append((q, k, v))
        rep = hq // hkv
        kk = np.repeat(k, rep, axis=0)  # query head h reads kv head h // rep
        vv = np.repeat(v, rep, axis=0)
        s = q @ kk.transpose(0, 2, 1) / np.sqrt(d)
        s[:, mask] = -np.inf
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        y = (s @ vv).transpose(1, 0, 2).reshape(t, hq * d)
        x = x + y @ w[p + 'self_attn.o_proj.weight'].T
        m = rms_norm(x, w[p + 'post_attention_layernorm.weight'], c['norm_eps'])
        g = m @ w[p + 'mlp.gate_proj.weight'].T
        u = m @ w[p + 'mlp.up_proj.weight'].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + 'mlp.down_proj.weight'].T
    x = rms_norm(x, w['model.norm.weight'], c['norm_eps'])
    return x @ w['model.embed_tokens.weight'].T, kvs


def verify(run_dir, logit_tol=1e-3, kv_tol=1e-3, verbose=True):
    """Max differences {name: value}; raises AssertionError past the tolerances (logits: relative to
    max(1, max |logit|); K/V/q: relative to max(1, max |x|) of each tensor)."""
    with open(os.path.join(run_dir, 'reference.json'), encoding='utf-8') as f:
        ref = json.load(f)
    c = ref['config']
    w = load_weights(run_dir, ref['weights']['files'])
    ids = ref['prompt']['token_ids']
    logits, _ = forward(w, c, ids)
    out = {}
    worst = 0.0
    for e in ref['prompt']['positions']:
        row = logits[e['position']]
        worst = max(worst, float(np.max(np.abs(row[e['top_ids']] - np.asarray(e['top_logits'])))))
        if 'logits' in e:
            out['full_logits_max_abs_diff'] = float(np.max(np.abs(row - np.asarray(e['logits']))))
    out['top_logits_max_abs_diff'] = worst
    kv = ref.get('kv')
    if kv:
        start, length = kv['windows'][0], kv['window_tokens']
        # the window's tokens: the held-out stream is not stored, so rebuild it from the corpus
        import train
        import tokenizer as tokmod
        tok = tokmod.load()
        if tok.sha256 != ref['tokenizer_sha256']:
            raise AssertionError('tokenizer.json differs from the run\'s tokenizer')
        _, docs = train.read_docs('heldout')
        stream = train.token_stream(tok, docs)
        _, kvs = forward(w, c, stream[start:start + length])
        kv_worst = 0.0
        for layer, (q, k, v) in enumerate(kvs):
            tensors, _ = stfile.read(os.path.join(run_dir, 'kv-layer%d.safetensors' % layer))
            fk = tensors['k'][:length].astype(np.float64)  # window 0: [L, Hkv, D]
            fv = tensors['v'][:length].astype(np.float64)
            fq = tensors['q'][0].astype(np.float64)        # [Hq, D]
            scale = max(1.0, float(np.max(np.abs(fk))))
            kv_worst = max(kv_worst,
                           float(np.max(np.abs(fk - k.transpose(1, 0, 2)))) / scale,
                           float(np.max(np.abs(fv - v.transpose(1, 0, 2)))) / max(1.0, float(np.max(np.abs(fv)))),
                           float(np.max(np.abs(fq - q[:, length - 1, :]))) / max(1.0, float(np.max(np.abs(fq)))))
        out['kv_max_rel_diff'] = kv_worst
    if verbose:
        print(json.dumps(out))
    scale = max(1.0, float(np.max(np.abs(logits))))  # float32 error grows with the logits' size
    out['logit_scale'] = scale
    assert out['top_logits_max_abs_diff'] <= logit_tol * scale and out.get('full_logits_max_abs_diff', 0) <= logit_tol * scale, out
    assert out.get('kv_max_rel_diff', 0) <= kv_tol, out
    return out


def main():
    ap = argparse.ArgumentParser(description='Check a training run against a float64 numpy forward pass.')
    ap.add_argument('run_dir')
    args = ap.parse_args()
    try:
        verify(args.run_dir)
    except AssertionError as e:
        print('forward_numpy: MISMATCH %s' % e)
        return 1
    print('forward_numpy: ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
