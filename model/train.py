#!/usr/bin/env python3
"""Train the small Llama-style model on the perl-doc corpus and write its weights, a numeric reference
and its real K/V (see model/README.md).

    python3 model/train.py --out OUT_DIR [--minutes 10]     # train (CUDA if present), write outputs
    python3 model/train.py --smoke --out DIR                # a few steps on a tiny slice (CPU is fine)
    python3 model/train.py --check-only                     # config, corpus, tokenizer, sizes; no torch

Paths are relative to this file, so it runs from any folder. --minutes is the budget of the whole run
(training stops early enough for the evaluation and the files to be written within it). PyTorch is
imported only by the training and evaluation functions; --check-only needs numpy and the stdlib.
"""
import argparse
import copy
import gzip
import hashlib
import json
import math
import os
import sys
import time

T_START = time.time()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import stfile  # noqa: E402
import tokenizer as tokmod  # noqa: E402

CONFIG_PATH = os.path.join(HERE, 'config.json')
CORPUS = {split: os.path.join(HERE, 'corpus', split + '.txt.gz') for split in ('train', 'heldout')}
DOC_SEPARATOR = '\x0c'
SAFETY_SECONDS = 20  # the run ends this long before --minutes is up


def log(msg):
    print('[%6.1fs] %s' % (time.time() - T_START, msg), flush=True)


# ---------------------------------------------------------------------------------------------
# Config, shapes, sizes (no torch)
# ---------------------------------------------------------------------------------------------

def load_config(path=CONFIG_PATH):
    with open(path, encoding='utf-8') as f:
        cfg = json.load(f)
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    m = cfg['model']
    need = ['vocab_size', 'd_model', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim', 'ffn_hidden',
            'context_length', 'rope_theta', 'rope_convention', 'norm_eps', 'tie_embeddings']
    missing = [k for k in need if k not in m]
    if missing:
        raise ValueError('config: model lacks %s' % ', '.join(missing))
    for k in ['vocab_size', 'd_model', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim', 'ffn_hidden', 'context_length']:
        if not isinstance(m[k], int) or m[k] < 1:
            raise ValueError('config: model.%s must be an integer ≥ 1, got %r' % (k, m[k]))
    if m['n_heads'] % m['n_kv_heads']:
        raise ValueError('config: n_heads %d is not a multiple of n_kv_heads %d' % (m['n_heads'], m['n_kv_heads']))
    if m['head_dim'] % 2:
        raise ValueError('config: head_dim must be even for RoPE')
    if m['head_dim'] % 32 or m['head_dim'] > 256:
        raise ValueError('config: head_dim %d does not suit the project\'s kernels (a multiple of 32, ≤ 256)' % m['head_dim'])
    if m['rope_convention'] != 'rotate_half' or not m['tie_embeddings']:
        raise ValueError('config: only rope_convention "rotate_half" with tied embeddings is implemented')
    r = cfg['reference']
    if r['full_logits_position'] not in r['prompt_positions']:
        raise ValueError('config: reference.full_logits_position must be one of prompt_positions')
    if max(r['prompt_positions']) >= r['prompt_tokens'] or r['prompt_tokens'] > m['context_length']:
        raise ValueError('config: prompt positions must be < prompt_tokens ≤ context_length')
    if cfg['kv_dump']['window_tokens'] > m['context_length']:
        raise ValueError('config: kv_dump.window_tokens exceeds the context length')
    if cfg['kv_dump']['dtype'] not in ('float32', 'float16'):
        raise ValueError('config: kv_dump.dtype must be float32 or float16')


def weight_shapes(m):
    """[(name, shape)] of the stored weights, in file order (transformers' Llama names)."""
    d, f, hq, hkv, hd = m['d_model'], m['ffn_hidden'], m['n_heads'], m['n_kv_heads'], m['head_dim']
    out = [('model.embed_tokens.weight', (m['vocab_size'], d))]
    for i in range(m['n_layers']):
        p = 'model.layers.%d.' % i
        out += [
            (p + 'input_layernorm.weight', (d,)),
            (p + 'self_attn.q_proj.weight', (hq * hd, d)),
            (p + 'self_attn.k_proj.weight', (hkv * hd, d)),
            (p + 'self_attn.v_proj.weight', (hkv * hd, d)),
            (p + 'self_attn.o_proj.weight', (d, hq * hd)),
            (p + 'post_attention_layernorm.weight', (d,)),
            (p + 'mlp.gate_proj.weight', (f, d)),
            (p + 'mlp.up_proj.weight', (f, d)),
            (p + 'mlp.down_proj.weight', (d, f)),
        ]
    out.append(('model.norm.weight', (d,)))
    return out


def param_count(m):
    return sum(int(np.prod(s)) for _, s in weight_shapes(m))


def header_bytes(entries, metadata=None):
    """Exact size of a safetensors header for [(name, dtype, shape, nbytes)] (as stfile.encode writes it)."""
    header = {}
    off = 0
    for name, dtype, shape, nbytes in entries:
        header[name] = {'dtype': dtype, 'shape': list(shape), 'data_offsets': [off, off + nbytes]}
        off += nbytes
    if metadata:
        header['__metadata__'] = metadata
    n = len(json.dumps(header, separators=(',', ':'), ensure_ascii=True).encode('utf-8'))
    return n + (-(8 + n)) % 8


def shard_plan(m, max_file_bytes):
    """[[name, ...], ...]: the weights in order, cut into files of at most max_file_bytes each (F16)."""
    shards = [[]]
    entries = []
    for name, shape in weight_shapes(m):
        nbytes = 2 * int(np.prod(shape))
        trial = entries + [(name, 'F16', shape, nbytes)]
        size = 8 + header_bytes(trial, {'format': 'pt'}) + sum(e[3] for e in trial)
        if size > max_file_bytes and entries:
            shards.append([])
            entries = []
            trial = [(name, 'F16', shape, nbytes)]
        shards[-1].append(name)
        entries = trial
    return shards


def shard_names(n):
    return ['model.safetensors'] if n == 1 else ['model-%05d-of-%05d.safetensors' % (i + 1, n) for i in range(n)]


def output_plan(cfg):
    """[(file name, estimated bytes)] that a run writes into --out."""
    m, kv = cfg['model'], cfg['kv_dump']
    shapes = dict(weight_shapes(m))
    plan = []
    shards = shard_plan(m, cfg['outputs']['max_file_bytes'])
    for fname, names in zip(shard_names(len(shards)), shards):
        entries = [(n, 'F16', shapes[n], 2 * int(np.prod(shapes[n]))) for n in names]
        plan.append((fname, 8 + header_bytes(entries, {'format': 'pt'}) + sum(e[3] for e in entries)))
    t = kv['windows'] * kv['window_tokens']
    el = 4 if kv['dtype'] == 'float32' else 2
    kv_bytes = 2 * t * m['n_kv_heads'] * m['head_dim'] * el + 4 * kv['windows'] * m['n_heads'] * m['head_dim'] + 4 * kv['windows'] + 600
    plan += [('kv-layer%d.safetensors' % i, kv_bytes) for i in range(m['n_layers'])]
    # reference.json: the full logit row and top-k lists; kv-stats.json: 4 stats per channel per layer
    plan.append(('reference.json', 200_000 + 16 * m['vocab_size']))
    plan.append(('kv-stats.json', 20_000 + 6 * 12 * m['n_layers'] * m['n_kv_heads'] * m['head_dim']))
    return plan


# ---------------------------------------------------------------------------------------------
# Data (no torch)
# ---------------------------------------------------------------------------------------------

def read_docs(split):
    with gzip.open(CORPUS[split], 'rb') as f:
        raw = f.read()
    return raw, raw.decode('utf-8').split(DOC_SEPARATOR)


def token_stream(tok, docs):
    """int32 array: <bos> doc <eos> for each document, concatenated."""
    ids = []
    for d in docs:
        ids.append(tok.bos_id)
        ids.extend(tok.encode(d))
        ids.append(tok.eos_id)
    return np.asarray(ids, dtype=np.int32)


def check(cfg, verbose=True):
    """Everything that can be checked without torch; returns a summary dict. Raises on a problem."""
    m = cfg['model']
    tok = tokmod.load()
    if tok.vocab_size != m['vocab_size']:
        raise ValueError('tokenizer vocab %d != config vocab_size %d' % (tok.vocab_size, m['vocab_size']))
    if tok.bos_id is None or tok.eos_id is None:
        raise ValueError('tokenizer lacks <bos>/<eos>')
    train_raw, train_docs = read_docs('train')
    held_raw, held_docs = read_docs('heldout')
    want = tok.spec.get('trained_on', {}).get('text_sha256')
    if want and hashlib.sha256(train_raw).hexdigest() != want:
        raise ValueError('train.txt.gz is not the text the tokenizer was trained on (sha256 differs)')
    held = token_stream(tok, held_docs)
    if tok.decode(held.tolist()) != ''.join(held_docs):
        raise ValueError('tokenizer round trip fails on the held-out text')
    train = token_stream(tok, train_docs)
    kv = cfg['kv_dump']
    need = max(kv['windows'] * kv['window_tokens'], cfg['reference']['prompt_tokens'],
               cfg['reference']['quick_tokens'] + 1, cfg['train']['eval_tokens'] + 1)
    if len(held) < need:
        raise ValueError('held-out has %d tokens; the reference and KV dump need %d' % (len(held), need))
    plan = output_plan(cfg)
    lim = cfg['outputs']
    total = sum(b for _, b in plan)
    problems = []
    if len(plan) > lim['max_files']:
        problems.append('%d output files > %d' % (len(plan), lim['max_files']))
    problems += ['%s ~%d bytes > %d' % (n, b, lim['max_file_bytes']) for n, b in plan if b > lim['max_file_bytes']]
    if total > lim['max_total_bytes']:
        problems.append('outputs ~%d bytes > %d' % (total, lim['max_total_bytes']))
    if problems:
        raise ValueError('output plan: ' + '; '.join(problems))
    n_params = param_count(m)
    t = cfg['train']
    tokens_per_step = t['batch_size'] * m['context_length']
    summary = {
        'params': n_params,
        'f16_weight_bytes': 2 * n_params,
        'train_tokens': int(len(train)),
        'heldout_tokens': int(len(held)),
        'tokens_per_step': tokens_per_step,
        'max_steps': max_steps(cfg, len(train)),
        'tokenizer_sha256': tok.sha256,
        'outputs': plan,
        'outputs_total_bytes': total,
    }
    if verbose:
        log('config ok: %d layers, d_model %d, %d q heads / %d kv heads of %d, ffn %d, context %d'
            % (m['n_layers'], m['d_model'], m['n_heads'], m['n_kv_heads'], m['head_dim'], m['ffn_hidden'], m['context_length']))
        log('parameters: %d (%.2f M), f16 weights %.1f MB' % (n_params, n_params / 1e6, 2 * n_params / 1e6))
        log('tokenizer %s: vocab %d, sha256 %s' % (os.path.relpath(tokmod.DEFAULT_PATH, HERE), tok.vocab_size, tok.sha256[:16]))
        log('corpus: train %d docs, %d tokens (%.2f bytes/token); held-out %d docs, %d tokens; round trip ok'
            % (len(train_docs), len(train), len(train_raw) / len(train), len(held_docs), len(held)))
        log('schedule: %d tokens/step, at most %d steps (%d epochs)' % (tokens_per_step, summary['max_steps'], t['max_epochs']))
        for name, b in plan:
            log('  output %-34s ~%10d bytes' % (name, b))
        log('outputs: %d files, ~%.1f MB in all (limits: %d files, %d bytes each, %d in all)'
            % (len(plan), total / 1e6, lim['max_files'], lim['max_file_bytes'], lim['max_total_bytes']))
    return summary


def max_steps(cfg, train_tokens):
    t = cfg['train']
    return max(1, int(math.ceil(t['max_epochs'] * train_tokens / (t['batch_size'] * cfg['model']['context_length']))))


def lr_at(t, step, progress):
    """Linear warmup over warmup_steps, then cosine from peak_lr to min_lr over progress in [0, 1]."""
    if step < t['warmup_steps']:
        return t['peak_lr'] * (step + 1) / t['warmup_steps']
    p = min(1.0, max(0.0, progress))
    return t['min_lr'] + 0.5 * (t['peak_lr'] - t['min_lr']) * (1 + math.cos(math.pi * p))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def finite_json(obj):
    """obj with every non-finite float replaced by its name as a string ('nan', 'inf'), so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path, obj):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(finite_json(obj), f, indent=1, allow_nan=False)
        f.write('\n')


# ---------------------------------------------------------------------------------------------
# Training and evaluation (torch)
# ---------------------------------------------------------------------------------------------

def pick_device(name):
    import torch
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return torch.device(name)


def eval_windows(n_tokens, length):
    """[(start, length)] of non-overlapping windows: inputs stream[s:s+l], targets stream[s+1:s+l+1],
    covering every target 1..n_tokens-1 once."""
    out = []
    s = 0
    while s < n_tokens - 1:
        out.append((s, min(length, n_tokens - 1 - s)))
        s += length
    return out


def nll_sum(model, stream, windows, device, exact, amp_dtype=None, batch=16, stats=None):
    """(sum of -log p(target), number of targets) over windows of the token stream."""
    import torch
    import torch.nn.functional as F
    total = 0.0
    count = 0
    groups = {}
    for s, l in windows:
        groups.setdefault(l, []).append(s)
    with torch.no_grad():
        for l, starts in sorted(groups.items()):
            for i in range(0, len(starts), batch):
                idx = torch.tensor([list(range(s, s + l + 1)) for s in starts[i:i + batch]], dtype=torch.long)
                xy = stream[idx.to(stream.device)].to(device)
                collect = [] if stats is not None else None
                with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                    logits = model(xy[:, :-1], exact=exact, collect=collect)
                nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1), reduction='none')
                total += float(nll.double().sum())
                count += nll.numel()
                if stats is not None:
                    for layer, (_, k, v) in enumerate(collect):
                        ka = k.float().abs()  # [B, Hkv, T, D]
                        va = v.float().abs()
                        st = stats.setdefault(layer, {'n': 0, 'k_sum': 0, 'k_max': 0, 'v_sum': 0, 'v_max': 0})
                        st['n'] += ka.shape[0] * ka.shape[2]
                        st['k_sum'] = st['k_sum'] + ka.sum(dim=(0, 2)).double().cpu()
                        st['v_sum'] = st['v_sum'] + va.sum(dim=(0, 2)).double().cpu()
                        st['k_max'] = torch.maximum(torch.as_tensor(st['k_max'], dtype=torch.float64), ka.amax(dim=(0, 2)).double().cpu())
                        st['v_max'] = torch.maximum(torch.as_tensor(st['v_max'], dtype=torch.float64), va.amax(dim=(0, 2)).double().cpu())
    return total, count


def topk_entry(row, position, k):
    import torch
    vals, ids = torch.topk(row, k)
    return {'position': position, 'top_ids': [int(i) for i in ids], 'top_logits': [float(v) for v in vals]}


def hf_cross_check(model_cfg, state, prompt, device, ours):
    """Max |logit difference| between our model and transformers' LlamaForCausalLM loaded with the
    same weights (fp32, eager attention); a string when transformers is missing or fails."""
    import torch
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as e:  # noqa: BLE001
        return {'ok': False, 'note': 'transformers not importable: %s' % e}
    m = model_cfg
    common = dict(vocab_size=m['vocab_size'], hidden_size=m['d_model'], intermediate_size=m['ffn_hidden'],
                  num_hidden_layers=m['n_layers'], num_attention_heads=m['n_heads'],
                  num_key_value_heads=m['n_kv_heads'], head_dim=m['head_dim'],
                  max_position_embeddings=m['context_length'], rms_norm_eps=m['norm_eps'],
                  tie_word_embeddings=True, attention_bias=False, mlp_bias=False, hidden_act='silu')
    try:
        try:
            hc = LlamaConfig(**common, rope_parameters={'rope_type': 'default', 'rope_theta': m['rope_theta']})
        except Exception:  # noqa: BLE001
            hc = LlamaConfig(**common, rope_theta=m['rope_theta'])
        hc._attn_implementation = 'eager'
        hf = LlamaForCausalLM(hc).to(device=device, dtype=torch.float32).eval()
        missing, unexpected = hf.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != 'lm_head.weight' and 'rotary' not in k]
        if missing or unexpected:
            return {'ok': False, 'note': 'state dict mismatch: missing %s unexpected %s' % (missing[:5], unexpected[:5])}
        with torch.no_grad():
            if hf.lm_head.weight.data_ptr() != hf.model.embed_tokens.weight.data_ptr():
                hf.lm_head.weight.copy_(hf.model.embed_tokens.weight)
            theirs = hf(prompt[None].to(device)).logits[0].float()
        diff = float((theirs - ours).abs().max())
        return {'ok': diff < 1e-2, 'max_abs_logit_diff': diff, 'transformers': transformers.__version__}
    except Exception as e:  # noqa: BLE001
        return {'ok': False, 'note': 'transformers cross-check failed: %s: %s' % (type(e).__name__, e)}


def run(cfg, args):
    import torch
    import torch.nn.functional as F
    import llama

    m, t, ref, kvc = cfg['model'], dict(cfg['train']), dict(cfg['reference']), dict(cfg['kv_dump'])
    deadline = T_START + args.minutes * 60 - SAFETY_SECONDS
    device = pick_device(args.device)
    torch.manual_seed(t['seed'])
    np.random.seed(t['seed'])
    torch.set_float32_matmul_precision('highest')
    os.makedirs(args.out, exist_ok=True)
    if len(os.listdir(args.out)):
        log('note: %s is not empty; files of the same names are overwritten' % args.out)

    tok = tokmod.load()
    train_raw, train_docs = read_docs('train')
    _, held_docs = read_docs('heldout')
    train_np = token_stream(tok, train_docs)
    held_np = token_stream(tok, held_docs)
    log('tokenized: train %d tokens, held-out %d tokens (tokenizer %s)' % (len(train_np), len(held_np), tok.sha256[:16]))

    if args.smoke:  # same code, tiny sizes
        train_np = train_np[:20_000]
        held_np = held_np[:1_200]
        t.update(batch_size=2, warmup_steps=2, eval_every=2, eval_tokens=256, max_epochs=1)
        ref.update(prompt_tokens=64, prompt_positions=[0, 1, 7, 63], full_logits_position=63, quick_tokens=256)
        kvc.update(windows=2, window_tokens=128)
        smoke_steps = args.steps or 4
    ctx = 128 if args.smoke else m['context_length']  # training and evaluation window length
    n_steps = args.steps or (smoke_steps if args.smoke else max_steps({'train': t, 'model': m}, len(train_np)))

    use_amp = device.type == 'cuda' and t['amp'] == 'bf16'
    amp_dtype = torch.bfloat16 if use_amp else None
    log('device %s%s, amp %s, torch %s' % (device, (' (%s)' % torch.cuda.get_device_name(device)) if device.type == 'cuda' else '',
                                          'bf16' if use_amp else 'off', torch.__version__))

    model = llama.LlamaLM(m, dropout=t['dropout']).to(device)
    names = [n for n, _ in weight_shapes(m)]
    sd_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if sd_shapes != dict(weight_shapes(m)):
        raise RuntimeError('model state dict does not match weight_shapes(): %s' % sorted(set(sd_shapes) ^ set(names)))
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == param_count(m), (n_params, param_count(m))
    log('model: %d parameters' % n_params)

    fwd = model
    if args.compile:
        fwd = torch.compile(model)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': t['weight_decay']},
                             {'params': no_decay, 'weight_decay': 0.0}],
                            lr=t['peak_lr'], betas=(t['beta1'], t['beta2']), eps=1e-8)

    train_t = torch.from_numpy(train_np.astype(np.int64)).to(device)
    held_t = torch.from_numpy(held_np.astype(np.int64)).to(device)
    gen = torch.Generator().manual_seed(t['seed'])
    offsets = torch.arange(ctx + 1, device=device)
    eval_win = eval_windows(min(len(held_np), t['eval_tokens'] + 1), ctx)

    def evaluate():
        model.eval()
        s, n = nll_sum(model, held_t, eval_win, device, exact=False, amp_dtype=amp_dtype)
        model.train()
        return s / n

    train_budget = max(1.0, deadline - t['reserve_seconds'] - time.time())
    log('training: up to %d steps of %d x %d tokens, %.0f s budget for training' % (n_steps, t['batch_size'], ctx, train_budget))
    history = []
    best = {'loss': float('inf'), 'step': None, 'state': None}
    t_train = time.time()
    step = 0
    run_loss = torch.zeros((), device=device)
    run_n = 0

    def record():
        """Evaluates, logs, keeps the best weights; False when a loss is not finite."""
        nonlocal run_n, best
        train_loss = float(run_loss) / max(run_n, 1)
        run_loss.zero_()
        run_n = 0
        held_loss = evaluate()
        dt = time.time() - t_train
        history.append({'step': step, 'seconds': round(dt, 2), 'lr': lr, 'train_loss': train_loss, 'heldout_slice_loss': held_loss})
        log('step %5d  epoch %5.2f  lr %.2e  train %.4f  held-out %.4f  %6.0f tok/s'
            % (step, step * t['batch_size'] * ctx / len(train_np), lr, train_loss, held_loss,
               step * t['batch_size'] * ctx / max(dt, 1e-9)))
        if not (math.isfinite(train_loss) and math.isfinite(held_loss)):
            return False
        if held_loss < best['loss']:
            best = {'loss': held_loss, 'step': step, 'state': {k: v.detach().clone() for k, v in model.state_dict().items()}}
        return True

    stop_reason = 'max_steps'
    model.train()
    while step < n_steps:
        elapsed = time.time() - t_train
        if elapsed >= train_budget:
            stop_reason = 'time budget'
            break
        progress = max(step / n_steps, elapsed / train_budget)
        lr = lr_at(t, step, progress)
        for g in opt.param_groups:
            g['lr'] = lr
        starts = torch.randint(0, len(train_np) - ctx - 1, (t['batch_size'],), generator=gen).to(device)
        xy = train_t[starts[:, None] + offsets]
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.bfloat16, enabled=use_amp):
            logits = fwd(xy[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t['grad_clip'])
        opt.step()
        run_loss += loss.detach()
        run_n += 1
        step += 1
        if step % t['eval_every'] == 0 or step == n_steps:
            if not record():
                stop_reason = 'non-finite loss'
                log('loss is not finite: stopping, keeping the best checkpoint so far')
                break
    if stop_reason == 'time budget' and step > 0 and (not history or history[-1]['step'] != step):
        record()  # the steps since the last evaluation count too
    train_seconds = time.time() - t_train
    if best['state'] is None:  # no finite evaluation at all
        raise RuntimeError('training produced no model with a finite held-out loss (steps: %d)' % step)
    log('trained %d steps in %.1f s (%s); best held-out slice loss %.4f at step %s'
        % (step, train_seconds, stop_reason, best['loss'], best['step']))

    # ---- weights: f16 on disk; everything below uses exactly those weights (in fp32)
    state16 = {k: v.to(torch.float16) for k, v in best['state'].items()}
    for k, v in state16.items():
        if not torch.isfinite(v).all():
            raise RuntimeError('weight %s is not finite in float16' % k)
    model.load_state_dict({k: v.float() for k, v in state16.items()})
    model = model.float().eval()
    del best['state']
    shards = shard_plan(m, cfg['outputs']['max_file_bytes'])
    files = {}
    weight_map = {}
    meta = {'format': 'pt'}
    for fname, shard in zip(shard_names(len(shards)), shards):
        tensors = [(n, state16[n].cpu().numpy()) for n in shard]
        stfile.write(os.path.join(args.out, fname), tensors, meta)
        weight_map.update({n: fname for n in shard})
    log('wrote weights: %s' % ', '.join(shard_names(len(shards))))

    checks = {}
    # the files read back equal the weights
    back = {}
    for fname in shard_names(len(shards)):
        tensors, _ = stfile.read(os.path.join(args.out, fname))
        back.update(tensors)
    checks['weights_read_back'] = sorted(back) == sorted(state16) and all(
        np.array_equal(back[k], state16[k].cpu().numpy()) for k in state16)

    # ---- reference numbers, fp32, plain softmax attention
    windows = eval_windows(len(held_np), ctx)
    k_stats = {}
    s, n = nll_sum(model, held_t, windows, device, exact=True, batch=8, stats=k_stats)
    qn = ref['quick_tokens']
    qs, qc = nll_sum(model, held_t, [(0, qn)], device, exact=True)
    prompt = held_t[:ref['prompt_tokens']]
    with torch.no_grad():
        plog = model(prompt[None], exact=True)[0].float()
        sdpa = model(prompt[None], exact=False)[0].float()
    checks['sdpa_vs_exact_max_abs_logit_diff'] = float((sdpa - plog).abs().max())
    positions = []
    for p in ref['prompt_positions']:
        e = topk_entry(plog[p], p, ref['top_k'])
        if p == ref['full_logits_position']:
            e['logits'] = [float(x) for x in plog[p].cpu()]
        positions.append(e)
    checks['transformers_llama'] = hf_cross_check(m, {k: v.float() for k, v in state16.items()}, prompt, device, plog)
    log('held-out: %d tokens, loss %.4f, perplexity %.3f; quick (%d tokens) perplexity %.3f'
        % (n, s / n, math.exp(s / n), qc, math.exp(qs / qc)))
    log('checks: %s' % json.dumps(checks))

    reference = {
        'model': cfg['name'],
        'config': m,
        'tokenizer_sha256': tok.sha256,
        'params': n_params,
        'weights': {'dtype': 'F16', 'files': shard_names(len(shards)), 'weight_map': weight_map,
                    'tied': {'lm_head.weight': 'model.embed_tokens.weight'}},
        'heldout': {'tokens': int(len(held_np)), 'targets': n, 'windows': len(windows), 'window_tokens': ctx,
                    'nll_sum': s, 'loss': s / n, 'perplexity': math.exp(s / n),
                    'note': 'stream = <bos> doc <eos> per held-out document; window i: inputs stream[i*L : i*L+L], '
                            'targets shifted by one; the last window is shorter; fp32, plain softmax attention'},
        'quick': {'inputs': 'stream[0:%d]' % qn, 'targets': qc, 'nll_sum': qs, 'loss': qs / qc, 'perplexity': math.exp(qs / qc)},
        'prompt': {'token_ids': [int(i) for i in prompt.cpu()], 'text': tok.decode(prompt.cpu().tolist()), 'positions': positions},
        'training': {'steps': step, 'max_steps': n_steps, 'stop': stop_reason, 'seconds': round(train_seconds, 1),
                     'tokens': step * t['batch_size'] * ctx, 'epochs': step * t['batch_size'] * ctx / len(train_np),
                     'train_tokens': int(len(train_np)), 'hyper': t, 'best_step': best['step'],
                     'best_heldout_slice_loss': best['loss'],
                     'selection': 'weights of the periodic evaluation with the lowest loss on the first %d held-out tokens' % t['eval_tokens'],
                     'history': history, 'smoke': bool(args.smoke),
                     'torch': torch.__version__, 'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'},
        'checks': checks,
    }
    write_json(os.path.join(args.out, 'reference.json'), reference)

    # ---- K/V of held-out windows, every layer
    S, L = kvc['windows'], kvc['window_tokens']
    span = len(held_np) - L
    starts = [(j * span) // max(1, S - 1) for j in range(S)] if S > 1 else [0]
    per_layer = [{'k': [], 'v': [], 'q': []} for _ in range(m['n_layers'])]
    with torch.no_grad():
        for st in starts:
            collect = []
            model(held_t[st:st + L][None], exact=True, collect=collect)
            for layer, (q, k, v) in enumerate(collect):
                per_layer[layer]['k'].append(k[0].transpose(0, 1).float().cpu().numpy())   # [L, Hkv, D]
                per_layer[layer]['v'].append(v[0].transpose(0, 1).float().cpu().numpy())
                per_layer[layer]['q'].append(q[0, :, L - 1, :].float().cpu().numpy())      # [Hq, D]
    stats = {'model': cfg['name'], 'tokenizer_sha256': tok.sha256,
             'windows': {'starts': starts, 'tokens': L, 'note': 'held-out stream offsets; each window is one sequence from position 0'},
             'heldout_tokens': int(len(held_np)), 'layers': []}
    for layer, d in enumerate(per_layer):
        k = np.concatenate(d['k'])
        v = np.concatenate(d['v'])
        q = np.stack(d['q'])
        fname = 'kv-layer%d.safetensors' % layer
        stfile.write_kv_layer(os.path.join(args.out, fname), k, v, q, [L] * S,
                              {'model': cfg['name'], 'layer': str(layer), 'tokenizer_sha256': tok.sha256,
                               'windows': json.dumps(starts), 'note': 'post-RoPE k, v, q of the last token of each window'},
                              dtype=kvc['dtype'])
        kt, _ = stfile.read(os.path.join(args.out, fname))
        assert kt['k'].shape == (S * L, m['n_kv_heads'], m['head_dim']) and kt['q'].shape == (S, m['n_heads'], m['head_dim'])
        ka = np.abs(k.astype(np.float64))
        va = np.abs(v.astype(np.float64))
        full = k_stats[layer]
        k_mean_full = (full['k_sum'] / full['n']).numpy()
        per_head_ratio = [float(np.max(r) / np.median(r)) for r in k_mean_full]
        stats['layers'].append({
            'layer': layer, 'file': fname,
            'k_abs_mean': ka.mean(axis=0).round(6).tolist(), 'k_abs_max': ka.max(axis=0).round(6).tolist(),
            'v_abs_mean': va.mean(axis=0).round(6).tolist(), 'v_abs_max': va.max(axis=0).round(6).tolist(),
            'heldout_k_abs_mean': k_mean_full.round(6).tolist(), 'heldout_k_abs_max': full['k_max'].numpy().round(6).tolist(),
            'heldout_v_abs_mean': (full['v_sum'] / full['n']).numpy().round(6).tolist(),
            'heldout_tokens': int(full['n']),
            'k_channel_max_over_median': per_head_ratio,
        })
        log('layer %d: |k| mean %.3f, max %.2f, max/median channel mean %s; |v| mean %.3f'
            % (layer, ka.mean(), ka.max(), ', '.join('%.1f' % r for r in per_head_ratio), va.mean()))
    stats['note'] = ('per layer, arrays [Hkv][D]: k_abs_mean/k_abs_max/v_abs_*: over the %d dumped tokens; '
                     'heldout_*: over every held-out token of the perplexity pass' % (S * L))
    write_json(os.path.join(args.out, 'kv-stats.json'), stats)

    reference['kv'] = {'files': ['kv-layer%d.safetensors' % i for i in range(m['n_layers'])],
                       'windows': starts, 'window_tokens': L, 'dtype': kvc['dtype'],
                       'tensors': 'k, v [T=%d, Hkv, D] %s; q [S=%d, Hq, D] F32 (last token of each window); context_lens I32 [S]'
                                  % (S * L, 'F32' if kvc['dtype'] == 'float32' else 'F16', S)}
    write_json(os.path.join(args.out, 'reference.json'), reference)
    out_files = sorted(os.listdir(args.out))
    total = 0
    for fname in out_files:
        size = os.path.getsize(os.path.join(args.out, fname))
        total += size
        log('  %-34s %10d bytes  sha256 %s' % (fname, size, sha256_file(os.path.join(args.out, fname))[:16]))
    if device.type == 'cuda':
        log('peak GPU memory %.1f GB' % (torch.cuda.max_memory_allocated(device) / 1e9))
    log('done: %d files, %.1f MB in %s; held-out perplexity %.3f' % (len(out_files), total / 1e6, args.out, math.exp(s / n)))
    lim = cfg['outputs']
    if len(out_files) > lim['max_files'] or total > lim['max_total_bytes']:
        log('WARNING: the outputs exceed %d files or %d bytes' % (lim['max_files'], lim['max_total_bytes']))
    return reference


def main(argv=None):
    ap = argparse.ArgumentParser(description='Train the small Llama-style model (see model/README.md).')
    ap.add_argument('--out', help='output folder (created)')
    ap.add_argument('--minutes', type=float, default=10.0, help='wall-clock budget of the whole run (default 10)')
    ap.add_argument('--config', default=CONFIG_PATH)
    ap.add_argument('--device', default='auto', help='auto (cuda if available), cuda, cpu')
    ap.add_argument('--steps', type=int, default=None, help='train exactly this many steps (default: from max_epochs)')
    ap.add_argument('--smoke', action='store_true', help='a few steps on a tiny slice, all outputs (CPU is fine)')
    ap.add_argument('--check-only', action='store_true', help='check config, corpus, tokenizer and sizes; no torch')
    ap.add_argument('--compile', action='store_true', help='torch.compile the training forward (off by default)')
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if args.check_only:
        check(cfg)
        log('check-only: ok')
        return 0
    if not args.out:
        ap.error('--out DIR is required (or --check-only)')
    if args.minutes * 60 <= SAFETY_SECONDS + cfg['train']['reserve_seconds'] and not args.smoke:
        ap.error('--minutes %.1f leaves no time to train' % args.minutes)
    check(cfg, verbose=False)
    run(cfg, args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
