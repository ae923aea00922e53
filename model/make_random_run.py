#!/usr/bin/env python3
"""A small model with random weights and its float64 logits: the check of the WGSL forward pass
(src/model/) that needs no trained weights (test/model-forward.test.ts runs it into a temporary folder).

    python3 model/make_random_run.py OUT_DIR [--seed 7]

Writes OUT_DIR/model.safetensors (F16, the names and layout of model/train.py) and
OUT_DIR/random-reference.json:

    {"config": {...model config, as config.json's "model"...}, "ids": [S][T] token ids of S sequences,
     "logits": [S][T][vocab] float64 logits of forward_numpy.forward (the K/V exact),
     "logits_f16_kv": [S][T][vocab] the same with every K (after RoPE) and V rounded to float16, as the
                      project's fp16 KV cache stores them}

The shape is deliberately unlike the trained model's (GQA 4/2, head_dim 64, widths that are not powers
of two) so the forward pass is checked beyond one configuration. numpy + stdlib only.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import forward_numpy as fn  # noqa: E402
import stfile  # noqa: E402
import train  # noqa: E402

CONFIG = {
    'vocab_size': 320, 'd_model': 96, 'n_layers': 2, 'n_heads': 4, 'n_kv_heads': 2, 'head_dim': 64,
    'ffn_hidden': 160, 'context_length': 64, 'rope_theta': 10000.0, 'rope_convention': 'rotate_half',
    'norm_eps': 1e-5, 'tie_embeddings': True,
}
TOKENS = 40
SEQUENCES = 2


def random_weights(c, seed):
    """{name: float16 array}: embeddings N(0, 0.09), projections N(0, 1/in) (so activations stay O(1)),
    norm weights 1 + N(0, 0.1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in train.weight_shapes(c):
        if len(shape) == 1:
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == 'model.embed_tokens.weight':
            w = 0.3 * rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / np.sqrt(shape[1])
        out[name] = w.astype(np.float16)
    return out


def main():
    ap = argparse.ArgumentParser(description='A random-weight model and its float64 logits (tests of src/model/).')
    ap.add_argument('out_dir')
    ap.add_argument('--seed', type=int, default=7)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    c = CONFIG
    w16 = random_weights(c, args.seed)
    stfile.write(os.path.join(args.out_dir, 'model.safetensors'), list(w16.items()), {'format': 'pt'})
    w = {k: v.astype(np.float64) for k, v in w16.items()}
    ids = np.random.default_rng(args.seed + 1).integers(0, c['vocab_size'], (SEQUENCES, TOKENS)).tolist()
    logits = np.stack([fn.forward(w, c, row)[0] for row in ids])
    f16 = np.stack([fn.forward(w, c, row, np.float16)[0] for row in ids])
    with open(os.path.join(args.out_dir, 'random-reference.json'), 'w', encoding='utf-8') as f:
        json.dump({'config': c, 'seed': args.seed, 'ids': ids, 'logits': logits.tolist(), 'logits_f16_kv': f16.tolist()}, f)
    print('make_random_run: wrote %s (max |logit| %.2f, f16 K/V moves logits by %.2e)'
          % (args.out_dir, np.max(np.abs(logits)), np.max(np.abs(f16 - logits))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
