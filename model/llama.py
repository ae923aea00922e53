"""The model: a small Llama-style decoder in plain PyTorch (imported by train.py only when it trains).

    x = embed_tokens[ids]
    for each layer:
        h = x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   n = input_layernorm(x)
        x = h + down_proj(silu(gate_proj(m)) * up_proj(m))                        m = post_attention_layernorm(h)
    logits = norm(x) @ embed_tokens^T                                             (tied LM head)

- RMSNorm: y = w * x / sqrt(mean(x^2) + eps), computed in float32.
- RoPE, "rotate half" convention (as transformers' Llama): for head_dim D, channel j and j + D/2
  (j < D/2) form a pair rotated by angle t * theta^(-2j/D) at position t:
      rope(x)[j]       = x[j] cos - x[j + D/2] sin
      rope(x)[j + D/2] = x[j + D/2] cos + x[j] sin
  cos/sin are computed in float64 and rounded to float32.
- Attention: causal, softmax scale 1/sqrt(D), grouped-query: query head h reads kv head h // (Hq/Hkv).
- No biases anywhere; dropout (training only) on the two residual branches.
Parameter names follow transformers' LlamaForCausalLM (lm_head.weight is tied, so not stored).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rope_tables(length, head_dim, theta):
    """(cos, sin), float32 [length, head_dim], rotate-half layout."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float64), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin):
    """x [B, H, T, D]; cos, sin [T, D]."""
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, c, dropout):
        super().__init__()
        self.hq, self.hkv, self.d = c['n_heads'], c['n_kv_heads'], c['head_dim']
        dm = c['d_model']
        self.q_proj = nn.Linear(dm, self.hq * self.d, bias=False)
        self.k_proj = nn.Linear(dm, self.hkv * self.d, bias=False)
        self.v_proj = nn.Linear(dm, self.hkv * self.d, bias=False)
        self.o_proj = nn.Linear(self.hq * self.d, dm, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, cos, sin, exact=False, collect=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.hq, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.hkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.hkv, self.d).transpose(1, 2)
        q = apply_rope(q, cos, sin).to(v.dtype)
        k = apply_rope(k, cos, sin).to(v.dtype)
        if collect is not None:
            collect.append((q, k, v))  # [B, H, T, D]: post-RoPE q and k, v
        rep = self.hq // self.hkv
        if rep > 1:  # query head h reads kv head h // rep
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if exact or not hasattr(F, 'scaled_dot_product_attention'):
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d))
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~mask, float('-inf'))
            y = torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(b, t, self.hq * self.d)
        return self.drop(self.o_proj(y))


class MLP(nn.Module):
    def __init__(self, c, dropout):
        super().__init__()
        self.gate_proj = nn.Linear(c['d_model'], c['ffn_hidden'], bias=False)
        self.up_proj = nn.Linear(c['d_model'], c['ffn_hidden'], bias=False)
        self.down_proj = nn.Linear(c['ffn_hidden'], c['d_model'], bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, c, dropout):
        super().__init__()
        self.input_layernorm = RMSNorm(c['d_model'], c['norm_eps'])
        self.self_attn = Attention(c, dropout)
        self.post_attention_layernorm = RMSNorm(c['d_model'], c['norm_eps'])
        self.mlp = MLP(c, dropout)

    def forward(self, x, cos, sin, exact=False, collect=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, exact, collect)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, c, dropout):
        super().__init__()
        self.embed_tokens = nn.Embedding(c['vocab_size'], c['d_model'])
        self.layers = nn.ModuleList([Block(c, dropout) for _ in range(c['n_layers'])])
        self.norm = RMSNorm(c['d_model'], c['norm_eps'])


class LlamaLM(nn.Module):
    def __init__(self, c, dropout=0.0):
        super().__init__()
        if c['rope_convention'] != 'rotate_half':
            raise ValueError('only the rotate_half RoPE convention is implemented')
        if c['n_heads'] % c['n_kv_heads']:
            raise ValueError('n_heads must be a multiple of n_kv_heads')
        self.c = c
        self.model = Decoder(c, dropout)
        cos, sin = rope_tables(c['context_length'], c['head_dim'], c['rope_theta'])
        self.register_buffer('rope_cos', cos, persistent=False)
        self.register_buffer('rope_sin', sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        out_std = 0.02 / math.sqrt(2 * self.c['n_layers'])
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = out_std if name.endswith(('o_proj.weight', 'down_proj.weight')) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            else:
                nn.init.ones_(p)

    def forward(self, ids, exact=False, collect=None):
        """Logits [B, T, vocab] of ids [B, T]. exact: plain softmax attention (the reference path);
        collect: a list that gets (q, k, v) of every layer, each [B, H, T, D], q and k after RoPE."""
        t = ids.shape[1]
        if t > self.c['context_length']:
            raise ValueError('sequence of %d tokens exceeds the context length %d' % (t, self.c['context_length']))
        x = self.model.embed_tokens(ids)
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        for layer in self.model.layers:
            x = layer(x, cos, sin, exact, collect)
        x = self.model.norm(x)
        return F.linear(x, self.model.embed_tokens.weight)
