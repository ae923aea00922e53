#!/usr/bin/env python3
"""Independent numpy reference for SAW-INT4 paged KV-cache decode attention (docs/numeric-contract.md).

Written from the numeric contract alone (not ported from the project's TypeScript), so that the two
references and the GPU kernels can be checked against each other. Needs numpy only (Debian:
apt-get install python3-numpy); run with /usr/bin/python3.

Contract implemented here, for one (token, kv head) vector x of length D:
  * rotation (method int4-hadamard): x~ = x . H_blk, H_blk = diag(H_B, ..., H_B), H_B the Sylvester
    Hadamard matrix of order B scaled by 1/sqrt(B) (no random signs). Computed in float64.
  * INT4: mn = min(x), mx = max(x), scale = (mx - mn)/15 (float64); scale16 = float16(scale),
    mn16 = float16(mn) (numpy casts round to nearest, ties to even);
    q = clip(round_half_even((x - mn16)/scale16), 0, 15), q = 0 where scale16 == 0;
    x^ = q*scale16 + mn16.
  * fp16: x^ = float32(float16(x)) for K and V.
  * attention (float64): out[s, h] = softmax(q[s, h] . K^[seq s, g]^T * scale) . V^[seq s, g],
    g = h // (Hq/Hkv), scale = 1/sqrt(D) unless the case gives one.
  * int4-hadamard: K is rotated before quantisation and the query is rotated (q.k = (qH).(kH));
    with rotate_v, V is rotated too and the output is multiplied by H once more (H.H = I).

Case file (safetensors): q F32 [S, Hq, D]; k, v F32 [T, Hkv, D] (tokens of sequence 0, then 1, ...);
context_lens I32 [S] summing to T; __metadata__ strings method, hadamard_block, rotate_v
("true"/"false"), page_size and optionally scale. hadamard_block and rotate_v only matter for
int4-hadamard; page_size only matters to the GPU harness that pages the case.

Subcommands:
  make-case --out case.safetensors --method M [--hadamard-block B] [--rotate-v true|false]
            [--page-size P] [--head-dim D] [--q-heads Hq] [--kv-heads Hkv] [--context-lens 5,17,33]
            [--seed N] [--outlier-channels N] [--outlier-magnitude X] [--scale S]
  expect    --case case.safetensors --out expected.safetensors [--exact]
            writes out F32 [S, Hq, D] (the method's reference, or with --exact the float64 attention
            on the unquantised K/V).
  compare   --case case.safetensors --got got.safetensors [--got-tensor out] [--tol-factor F]
            prints JSON: errors of got vs the quantised reference and vs exact attention; exit 1 when
            got is outside the conformance bound below, 0 otherwise.
  selftest  [--quick] checks this script: a float32 emulation of a GPU kernel passes compare over a
            grid of cases, and corrupted outputs (one nibble off by one, no rotation, unquantised
            K/V) fail it.

Tolerance of compare: an elementwise bound |got - reference| <= bound, derived per case from the
quantisation step and f32 rounding (unit roundoff u = 2^-24). A conforming f32 implementation can
differ from this float64 reference only through
  (a) f32 rounding in: the rotation of K, V, the query and the output (butterflies, any order:
      |err| <= (log2 B + 2) u ||x_block||_1 / sqrt(B); --dense-rotation: LAMBDA u ||x_block||_1),
      the f32 dequantisation, the length-D dot products and the length-T weighted sum of V
      (probabilistic bound LAMBDA sqrt(n) u sum|terms| with LAMBDA = 8, Higham & Mary 2019: fails with
      probability below 1e-10 per sum for n <= 10^4; the terms include |q|.(q_int*scale16 + |mn16|)
      so that the s*(q.k_int) + m*sum(q) algebra of docs/design.md, "Kernel algebra", is covered), exp (WGSL/Vulkan
      accuracy 3 + 2|x| ULP) and the rescale chain of an online softmax;
  (b) the rounding decisions that (a) can flip, i.e. the quantisation step itself. For every
      token-head we compute which float16 values scale16'/mn16' the f32 pre-images (mx - mn)/15 and
      mn can round to (one ulp apart only near a float16 rounding midpoint), and for each element
      which codes q' lie within the f32 error of (x - mn16')/scale16' (one step apart only near a
      half-integer). Those "at risk" elements may move by a whole step scale16; all others only by
      q*(scale16' - scale16) + (mn16' - mn16), usually 0.
These element changes are pushed through softmax rigorously (|p' - p| <= p (e^(eps_t + A) - 1), A the
log-sum-exp shift) and through the weighted sum, and the total is doubled (SAFETY). compare reports
max_ratio = max |got - reference| / bound and the worst element; it passes when max_ratio <= 1.
Elements equal to the reference agree whatever their bound; where the bound itself is not finite (its
error terms overflow float64, e.g. |q.k| * scale near 1e20) any difference fails, saying so. The
report is strict JSON: non-finite numbers in it are the strings "nan", "inf", "-inf".
Measured by selftest (D 64..256, B 16..128, Hq/Hkv 1..8, lengths 1..2048): the f32 emulation stays at
max_ratio <= 0.07; the bound's relative L2 size is 0.4-13 % of the output for int4 methods (their
quantisation error is 19-74 % on these outlier-heavy cases) and 3e-4..7e-4 for fp16 (elementwise
still 100x below fp16's rounding error where it matters); one INT4 code off by one on an attended
token gives max_ratio 2..90, a missing rotation 35..1800, unquantised K/V 16..3300. The f32 -> f16 conversion is assumed to round to nearest even (IEEE default, as numpy);
a GPU whose pack2x16float truncates will fail and should round explicitly.
"""
import argparse
import json
import math
import struct
import sys

import numpy as np

F32_U = 2.0 ** -24  # unit roundoff of f32 (round to nearest)
LAMBDA = 8.0  # probabilistic rounding-error constant for long sums (see docstring)
SAFETY = 2.0  # factor on the whole conformance bound
METHODS = ("fp16", "int4", "int4-hadamard")

# ----------------------------------------------------------------------------------------------
# safetensors codec (8-byte LE header length, JSON header, raw little-endian data)

ST_TO_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "BOOL": "?", "BF16": "<u2",
}
NUMPY_TO_ST = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
               "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "bool": "BOOL"}



def default_hadamard_block(d):
    """The default Hadamard block for head_dim d: the largest power of two <= 128 dividing d (as src/layout.ts)."""
    block = 128
    while block > 1 and d % block != 0:
        block //= 2
    return block

def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> ndarray, or name -> ("BF16", uint16 ndarray of raw bits). Header padded to 8."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, value in tensors.items():
        if isinstance(value, tuple):
            dtype, arr = value
        else:
            arr = np.asarray(value)
            dtype = NUMPY_TO_ST[arr.dtype.name]
        raw = np.ascontiguousarray(arr).astype(ST_TO_NUMPY[dtype], copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


MAX_HEADER_BYTES = 100_000_000  # largest safetensors header accepted, as the official reader (MAX_HEADER_SIZE)
MAX_JSON_DEPTH = 64  # deepest JSON nesting accepted (the header object is level 1; a valid header needs 3)
MAX_SAFE_INTEGER = 2 ** 53 - 1  # offsets and dims beyond this cannot be exact in the TypeScript reader
MESSAGE_CHARS = 1000  # longest error message (a hostile file must not make a megabyte message)
NAME_CHARS = 80  # characters of a tensor name or key quoted in a message
LISTED_ITEMS = 8  # items of a list spelled out in a message before "… and N more"
METADATA_KEY = "__metadata__"
FORGETS = "a JSON parser would silently keep only the last"


def clip(text, limit):
    """text cut to at most `limit` characters, the cut said at the end (as src/io/safetensors.ts clipText)."""
    text = str(text)
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(f" … ({len(text)} more characters)"))
    return f"{text[:keep]} … ({len(text) - keep} more characters)"


def one_line(text):
    """text with control characters escaped, so that an error message is one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def quote_name(name):
    """A tensor name or key for a message: quoted, control characters escaped, cut to NAME_CHARS."""
    return "'" + clip(one_line(str(name)), NAME_CHARS) + "'"


def list_for_message(items):
    """The first LISTED_ITEMS items, then "… and N more" (as src/io/safetensors.ts listForMessage)."""
    items = [clip(one_line(str(i)), NAME_CHARS) for i in items]
    shown = ", ".join(items[:LISTED_ITEMS])
    return f"{shown}, … and {len(items) - LISTED_ITEMS} more" if len(items) > LISTED_ITEMS else shown


_MISSING = object()  # a key absent from a header object (described as "nothing", as in TypeScript)


def describe(value):
    """A parsed header value for a message, JSON-like, at most 60 characters (its depth is already bounded)."""
    if value is _MISSING:
        return "nothing"
    if isinstance(value, str):
        value = value[:60]
    elif isinstance(value, list) and len(value) > 60:
        value = value[:60]
    text = one_line(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))
    return text if len(text) <= 60 else text[:57] + "..."


def file_error(path, part, problem):
    """The ValueError the tools raise for a malformed file: "path: part: problem", one line, bounded."""
    return ValueError(clip(one_line(f"{path}: {part}: {problem}"), MESSAGE_CHARS))


class _JsonObject(dict):
    """A parsed JSON object that remembers the first key it saw twice (json keeps only the last)."""
    duplicate = None


def _json_object(pairs):
    obj = _JsonObject()
    for key, value in pairs:
        if key in obj and obj.duplicate is None:
            obj.duplicate = key
        obj[key] = value
    return obj


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _is_offset(value):
    """A non-negative integer the TypeScript reader reads exactly (JSON 24.0 and 2.4e1 count, as there)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (not isinstance(value, float) or (math.isfinite(value) and value == int(value))) and 0 <= value <= MAX_SAFE_INTEGER


def _parse_header(path, text, part):
    """json.loads with the rules of src/io/safetensors.ts: no NaN/Infinity, nesting <= MAX_JSON_DEPTH,
    every key once per object (checked after the depth, iteratively: no recursion on hostile input)."""
    too_deep = f"nests arrays/objects more than {MAX_JSON_DEPTH} levels deep; expected at most {MAX_JSON_DEPTH}"
    try:
        header = json.loads(text, object_pairs_hook=_json_object, parse_constant=_refuse_constant)
    except RecursionError:
        raise file_error(path, part, too_deep) from None
    except ValueError as err:
        raise file_error(path, part, f"is not valid JSON ({clip(err, 200)}); expected a JSON object, starts with {describe(text[:40])}") from None
    stack, duplicate = [(header, 1, None)], None
    while stack:
        value, depth, top = stack.pop()
        if isinstance(value, (dict, list)) and depth > MAX_JSON_DEPTH:
            raise file_error(path, part, too_deep)
        if isinstance(value, dict):
            if value.duplicate is not None and duplicate is None:
                duplicate = (value.duplicate, top)
            stack.extend((v, depth + 1, k if depth == 1 else top) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, top) for v in value)
    if not isinstance(header, dict):
        raise file_error(path, "header", f"is {'an array' if isinstance(header, list) else describe(header)}; expected a JSON object")
    if header.duplicate is not None:
        key = header.duplicate
        raise file_error(path, METADATA_KEY if key == METADATA_KEY else f"tensor {quote_name(key)}",
                         f"appears more than once in the header; expected each name once ({FORGETS})")
    if duplicate is not None:
        key, top = duplicate
        raise file_error(path, METADATA_KEY if top == METADATA_KEY else f"tensor {quote_name(top)}",
                         f"has the key {quote_name(key)} more than once; expected each key once ({FORGETS})")
    return header


def read_safetensors(path):
    """Returns ({name: ndarray}, metadata). BF16 comes back as float32. Validates like the official
    reader and with the same rules and wording as src/io/safetensors.ts: header length at most
    MAX_HEADER_BYTES, a UTF-8 JSON object nested at most MAX_JSON_DEPTH deep with every key once,
    string metadata, known dtypes, shapes of non-negative integers, and data_offsets that tile the data
    region exactly (sorted, they start at 0, each begins where the previous ends, the last ends at the
    end of the file). Every problem raises ValueError("path: part: problem"), one line, bounded."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise file_error(path, "header length (bytes 0..8)", f"file is only {len(blob)} bytes; expected at least 8 bytes (a u64 header length)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER_BYTES:
        raise file_error(path, "header length (bytes 0..8)", f"says the JSON header is {n} bytes; expected at most {MAX_HEADER_BYTES}")
    if 8 + n > len(blob):
        raise file_error(path, "header length (bytes 0..8)",
                         f"says the JSON header is {n} bytes but only {len(blob) - 8} bytes follow; expected at most {len(blob) - 8}")
    part = f"header (bytes 8..{8 + n})"
    try:
        text = blob[8:8 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise file_error(path, part, "is not valid UTF-8; expected a UTF-8 JSON object") from None
    header = _parse_header(path, text, part)
    data = blob[8 + n:]
    metadata, entries = {}, []
    for name, info in header.items():
        if name == METADATA_KEY:
            if not isinstance(info, dict):
                raise file_error(path, METADATA_KEY, f"is {describe(info)}; expected an object of string values")
            for key, value in info.items():
                if not isinstance(value, str):
                    raise file_error(path, f"{METADATA_KEY}[{quote_name(key)}]",
                                     f"is {describe(value)}; expected a string (safetensors metadata values are strings)")
            metadata = dict(info)
            continue
        what = f"tensor {quote_name(name)}"
        if not isinstance(info, dict):
            raise file_error(path, what, f"is {describe(info)}; expected an object with dtype, shape and data_offsets")
        dtype, shape, offsets = (info.get(key, _MISSING) for key in ("dtype", "shape", "data_offsets"))
        if not isinstance(dtype, str):
            raise file_error(path, f"{what} dtype", f"is {describe(dtype)}; expected a dtype string such as \"F32\"")
        if dtype not in ST_TO_NUMPY:
            raise file_error(path, f"{what} dtype", f"{describe(dtype)} is not a safetensors dtype this reader supports; expected one of {', '.join(ST_TO_NUMPY)}")
        if not isinstance(shape, list) or not all(_is_offset(d) for d in shape):
            raise file_error(path, f"{what} shape", f"is {describe(shape)}; expected a list of non-negative integers")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_offset(o) for o in offsets) or offsets[0] > offsets[1]:
            raise file_error(path, f"{what} data_offsets", f"is {describe(offsets)}; expected [begin, end] with 0 <= begin <= end")
        shape, (b, e) = [int(d) for d in shape], (int(offsets[0]), int(offsets[1]))
        if e > len(data):
            raise file_error(path, f"{what} data_offsets",
                             f"[{b}, {e}] runs past the data region ({len(data)} bytes after the header); expected end <= {len(data)}")
        itemsize = np.dtype(ST_TO_NUMPY[dtype]).itemsize
        needed = 0 if 0 in shape else itemsize  # Python integers: exact (no int64 wrap-around), and cut short
        for d in shape:
            needed *= d
            if needed > 2 ** 64:
                break
        if e - b != needed:
            expected = needed if needed <= 2 ** 64 else "more than 2^64"
            raise file_error(path, f"{what} data_offsets",
                             f"[{b}, {e}] span {e - b} bytes; expected {expected} (shape [{list_for_message(shape)}] x {itemsize}-byte {dtype})")
        entries.append((name, dtype, shape, b, e))
    covered, previous = 0, None
    for name, dtype, shape, b, e in sorted(entries, key=lambda t: (t[3], t[4])):
        what = f"tensor {quote_name(name)} data_offsets"
        if b < covered:
            raise file_error(path, what, f"[{b}, {e}] overlaps tensor {quote_name(previous[0])} [{previous[3]}, {previous[4]}]; expected disjoint byte ranges")
        if b > covered:
            where = " (the first tensor starts at 0)" if previous is None else f", where tensor {quote_name(previous[0])} ends"
            raise file_error(path, what, f"[{b}, {e}] leaves a gap: bytes {covered}..{b} of the data region belong to no tensor; "
                                         f"expected it to begin at {covered}{where}")
        covered, previous = e, (name, dtype, shape, b, e)
    if covered != len(data):
        raise file_error(path, f"data region (bytes {8 + n}..{len(blob)})",
                         f"has {len(data) - covered} bytes after the last tensor's data (bytes {covered}..{len(data)} of the data region "
                         f"belong to no tensor); expected the tensors to end at {len(data)}, the end of the file")
    tensors = {}
    for name, dtype, shape, b, e in entries:
        arr = np.frombuffer(data[b:e], dtype=ST_TO_NUMPY[dtype])
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = arr.reshape(shape)
    return tensors, metadata


# ----------------------------------------------------------------------------------------------
# the contract


def hadamard_matrix(block):
    if block < 1 or block & (block - 1):
        raise ValueError(f"hadamard block {block} is not a power of two")
    h = np.ones((1, 1))
    while h.shape[0] < block:
        h = np.block([[h, h], [h, -h]])
    return h / math.sqrt(block)


def rotate(x, block):
    """x . H_blk along the last axis (float64). H_blk is symmetric and orthogonal: its own inverse."""
    d = x.shape[-1]
    if d % block:
        raise ValueError(f"head_dim {d} is not a multiple of the hadamard block {block}")
    xb = np.asarray(x, np.float64).reshape(x.shape[:-1] + (d // block, block))
    return (xb @ hadamard_matrix(block)).reshape(x.shape)


def to_f16(x, what):
    with np.errstate(over="ignore"):
        h = np.asarray(x).astype(np.float16)
    if not np.all(np.isfinite(h)):
        raise ValueError(f"{what} exceeds the float16 range (|x| > 65504): the contract cannot store it")
    return h


def quantize_int4(x):
    """Per-vector (last axis) asymmetric INT4. Returns dict with xhat, q, scale16, mn16 (float64)."""
    x = np.asarray(x, np.float64)
    mn, mx = x.min(axis=-1), x.max(axis=-1)
    scale16 = to_f16((mx - mn) / 15.0, "scale").astype(np.float64)[..., None]
    mn16 = to_f16(mn, "min").astype(np.float64)[..., None]
    safe = np.where(scale16 > 0, scale16, 1.0)
    r = (x - mn16) / safe
    q = np.where(scale16 > 0, np.clip(np.rint(r), 0, 15), 0.0)  # np.rint: round half to even
    return {"x": x, "xhat": q * scale16 + mn16, "q": q, "scale16": scale16, "mn16": mn16,
            "pre_scale": (mx - mn) / 15.0, "pre_mn": mn, "r": r}


def parse_bool(text):
    if text not in ("true", "false"):
        raise ValueError(f"expected 'true' or 'false', got {quote_name(text)}")
    return text == "true"


def parse_finite(text, what):
    """A metadata number (float('nan') and float('inf') parse, but no case can use them)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{what} is {quote_name(text)}; expected a finite number")
    return value


def load_case(path):
    tensors, meta = read_safetensors(path)
    for name in ("q", "k", "v", "context_lens"):
        if name not in tensors:
            raise ValueError(f"{path}: tensor {name!r} missing; file has: {list_for_message(tensors) or '(no tensors)'}")
    with np.errstate(over="ignore"):
        q, k, v = (tensors[n].astype(np.float32) for n in ("q", "k", "v"))
    for name, arr in (("q", q), ("k", k), ("v", v)):
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(f"{path}: tensor {name!r} element {bad.tolist()} is {arr[tuple(bad)]} (as float32); expected finite values")
    lens = tensors["context_lens"].astype(np.int64)
    if q.ndim != 3 or k.ndim != 3 or k.shape != v.shape or q.shape[2] != k.shape[2]:
        raise ValueError(f"{path}: shapes q {q.shape}, k {k.shape}, v {v.shape}; expected [S,Hq,D], [T,Hkv,D]x2")
    if lens.shape != (q.shape[0],) or lens.sum() != k.shape[0] or np.any(lens < 1):
        raise ValueError(f"{path}: context_lens {lens.tolist()} must be [S] positive lengths summing to T={k.shape[0]}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{path}: q heads {q.shape[1]} not a multiple of kv heads {k.shape[1]}")
    method = meta.get("method")
    if method not in METHODS:
        raise ValueError(f"{path}: __metadata__ method {method!r}; expected one of {', '.join(METHODS)}")
    d = q.shape[2]
    case = {
        "q": q, "k": k, "v": v, "lens": lens, "method": method,
        "block": int(meta.get("hadamard_block", str(default_hadamard_block(d)))),
        "rotate_v": parse_bool(meta.get("rotate_v", "false")),
        "scale": parse_finite(meta["scale"], f"{path}: __metadata__ scale") if "scale" in meta else 1.0 / math.sqrt(d),
    }
    if method == "int4-hadamard":
        hadamard_matrix(case["block"])
        if d % case["block"]:
            raise ValueError(f"{path}: head_dim {d} is not a multiple of hadamard_block {case['block']}")
    return case


def quantized_kv(case):
    """The method's K^, V^ (float64) in the domain the kernel attends in, plus quantisation records."""
    k, v, method = case["k"].astype(np.float64), case["v"].astype(np.float64), case["method"]
    rot_k = method == "int4-hadamard"
    rot_v = rot_k and case["rotate_v"]
    if method == "fp16":
        return {"k": to_f16(case["k"], "k").astype(np.float64), "v": to_f16(case["v"], "v").astype(np.float64),
                "kq": None, "vq": None, "rot_k": False, "rot_v": False}
    kq = quantize_int4(rotate(k, case["block"]) if rot_k else k)
    vq = quantize_int4(rotate(v, case["block"]) if rot_v else v)
    return {"k": kq["xhat"], "v": vq["xhat"], "kq": kq, "vq": vq, "rot_k": rot_k, "rot_v": rot_v}


def segments(lens):
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    return [(int(a), int(a + n)) for a, n in zip(starts, lens)]


def attention_probs(qs, k_seg, scale):
    """qs [Hkv, G, D], k_seg [T, Hkv, D] -> logits, probabilities [Hkv, G, T] (float64)."""
    logits = np.einsum("kgd,tkd->kgt", qs, k_seg) * scale
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return logits, p / p.sum(axis=-1, keepdims=True)


def attention(q, k, v, lens, scale):
    """GQA decode attention in float64: out [S, Hq, D]."""
    s_count, hq, d = q.shape
    hkv = k.shape[1]
    out = np.zeros((s_count, hq, d))
    for s, (a, b) in enumerate(segments(lens)):
        qs = np.asarray(q[s], np.float64).reshape(hkv, hq // hkv, d)
        _, p = attention_probs(qs, k[a:b], scale)
        out[s] = np.einsum("kgt,tkd->kgd", p, v[a:b]).reshape(hq, d)
    return out


def reference_output(case, exact=False):
    if exact:
        return attention(case["q"], case["k"], case["v"], case["lens"], case["scale"])
    kv = quantized_kv(case)
    q = rotate(case["q"], case["block"]) if kv["rot_k"] else case["q"]
    out = attention(q, kv["k"], kv["v"], case["lens"], case["scale"])
    return rotate(out, case["block"]) if kv["rot_v"] else out


# ----------------------------------------------------------------------------------------------
# conformance bound (see the docstring)


def rotation_error(x, block, dense=False):
    """Elementwise bound on |f32 rotation - exact rotation| of x. Butterflies (fast Walsh-Hadamard,
    docs/design.md, "Kernel algebra", any order, then a multiply by f32(1/sqrt(B))): (log2 B + 2) u ||x_block||_1 / sqrt(B)
    (each stage rounds a +- b, and the nodes of one stage feeding an output cover the block once).
    dense=True: an f32 matrix product, probabilistic bound LAMBDA sqrt(B) u sum_j |H_ij x_j|."""
    d = x.shape[-1]
    l1 = np.abs(np.asarray(x, np.float64)).reshape(x.shape[:-1] + (d // block, block)).sum(-1, keepdims=True)
    factor = LAMBDA if dense else (math.log2(block) + 2) / math.sqrt(block)
    e = factor * F32_U * l1
    return np.broadcast_to(e, x.shape[:-1] + (d // block, block)).reshape(x.shape)


def rounding_alternatives(rec, x_err):
    """What a conforming f32 implementation may store instead of our x^ for the quantised tensor of
    `rec` (x_err bounds the f32 error of its input). Each token-head picks one (scale16', mn16') among
    the float16 neighbours its f32 pre-images can round to (the same pair as ours away from rounding
    midpoints), then each element a code within the f32 error of (x - mn16')/scale16'.
    Returns (alts, delta, stats): alts is a list of (dense, flip) per (scale16', mn16') choice with
    x^' - x^ = dense + (code change) * scale16', |code change| * scale16' <= flip; delta bounds |x^' - x^|."""
    scale16, mn16, x, q, xhat = rec["scale16"], rec["mn16"], rec["x"], rec["q"], rec["xhat"]
    pre_s, pre_m = rec["pre_scale"][..., None], rec["pre_mn"][..., None]
    e_max = x_err.max(axis=-1, keepdims=True)
    em = SAFETY * e_max  # min of f32 values is exact, so only the input error moves it
    es = SAFETY * (2 * e_max / 15 + 3 * F32_U * np.abs(pre_s))  # subtraction, division, input error
    with np.errstate(over="ignore"):
        s_choices = [(pre_s - es).astype(np.float16).astype(np.float64), (pre_s + es).astype(np.float16).astype(np.float64)]
        m_choices = [(pre_m - em).astype(np.float16).astype(np.float64), (pre_m + em).astype(np.float16).astype(np.float64)]
    token_risk = (s_choices[0] != s_choices[1]) | (m_choices[0] != m_choices[1])
    alts, delta, elem_risk = [], np.zeros_like(x), np.zeros(x.shape, bool)
    for s_alt in s_choices:
        for m_alt in m_choices:
            pos = s_alt > 0
            safe = np.where(pos, s_alt, 1.0)
            r = (x - m_alt) / safe
            margin = SAFETY * ((x_err + 2 * F32_U * (np.abs(x) + np.abs(m_alt))) / safe + 2 * F32_U * np.abs(r))
            q_lo = np.where(pos, np.clip(np.rint(r - margin), 0, 15), 0.0)
            q_hi = np.where(pos, np.clip(np.rint(r + margin), 0, 15), 0.0)
            code_change = np.maximum(np.abs(q_lo - q), np.abs(q_hi - q))
            dense = q * (s_alt - scale16) + (m_alt - mn16)
            flip = code_change * s_alt
            alts.append((dense, flip))
            delta = np.maximum(delta, np.abs(dense) + flip)
            elem_risk |= code_change > 0
    stats = {"elements": int(elem_risk.sum()), "token_heads": int(token_risk.sum())}
    return alts, delta, stats


def conformance_bound(case, dense_rotation=False):
    """Returns (reference out [S,Hq,D], elementwise bound [S,Hq,D], stats). dense_rotation: allow for
    an implementation that rotates by an f32 matrix product instead of butterflies."""
    kv = quantized_kv(case)
    block, scale = case["block"], case["scale"]
    q64 = case["q"].astype(np.float64)
    s_count, hq, d = q64.shape
    hkv = case["k"].shape[1]
    g = hq // hkv
    zeros = np.zeros_like(kv["k"])
    stats = {}
    if kv["kq"] is None:  # fp16: the f32 -> f16 cast of identical inputs is deterministic
        k_alts, dv, mag_k, mag_v = [(zeros, zeros)], zeros, zeros, zeros
    else:
        ek = rotation_error(case["k"], block, dense_rotation) if kv["rot_k"] else zeros
        ev = rotation_error(case["v"], block, dense_rotation) if kv["rot_v"] else zeros
        k_alts, _, k_stats = rounding_alternatives(kv["kq"], ek)
        _, dv, v_stats = rounding_alternatives(kv["vq"], ev)
        stats = {"at_risk_k_elements": k_stats["elements"], "at_risk_k_token_heads": k_stats["token_heads"],
                 "at_risk_v_elements": v_stats["elements"], "at_risk_v_token_heads": v_stats["token_heads"]}
        # f32 dequantisation (q*scale16 + mn16, or the s*(q.k_int) + m*sum(q) algebra) works with these magnitudes
        mag_k = kv["kq"]["q"] * kv["kq"]["scale16"] + np.abs(kv["kq"]["mn16"])
        mag_v = kv["vq"]["q"] * kv["vq"]["scale16"] + np.abs(kv["vq"]["mn16"])
    if kv["rot_k"]:
        qr, eq = rotate(q64, block), rotation_error(q64, block, dense_rotation)
    else:
        qr, eq = q64, np.zeros_like(q64)
    out = np.zeros((s_count, hq, d))
    bound = np.zeros((s_count, hq, d))
    blocks = (hkv, g, d // block, block)
    spread = lambda z: np.broadcast_to(z.reshape(blocks).sum(-1, keepdims=True) / math.sqrt(block), blocks).reshape(z.shape)
    for s, (a, b) in enumerate(segments(case["lens"])):
        t = b - a
        qs, eqs = qr[s].reshape(hkv, g, d), eq[s].reshape(hkv, g, d)
        k_seg, v_seg = kv["k"][a:b], kv["v"][a:b]
        logits, p = attention_probs(qs, k_seg, scale)
        o = np.einsum("kgt,tkd->kgd", p, v_seg)
        aq, ak = np.abs(qs), np.abs(k_seg)
        # eps [Hkv, G, T]: bound on the change of each logit (natural-log units of p's numerator)
        eps = scale * LAMBDA * math.sqrt(d + 4) * F32_U * np.einsum("kgd,tkd->kgt", aq, ak + mag_k[a:b])  # f32 dot
        eps += scale * np.einsum("kgd,tkd->kgt", eqs, ak)  # f32 query rotation
        tie = None
        for dense, flip in k_alts:  # the token-head's choice of scale16'/mn16' and codes
            change = np.abs(np.einsum("kgd,tkd->kgt", qs, dense[a:b]))
            change += np.einsum("kgd,tkd->kgt", aq + eqs, flip[a:b]) + np.einsum("kgd,tkd->kgt", eqs, np.abs(dense[a:b]))
            tie = change if tie is None else np.maximum(tie, change)
        eps += scale * tie
        x = logits - logits.max(axis=-1, keepdims=True)
        eps += 2 * F32_U * (3 + 2 * np.abs(x))  # exp accuracy
        eps += 2 * F32_U * (3 * LAMBDA * math.sqrt(t) - 2 * x.min(axis=-1, keepdims=True))  # online-softmax rescales
        up = np.log(np.sum(p * np.exp(eps), axis=-1, keepdims=True))
        down = -np.log(np.sum(p * np.exp(-eps), axis=-1, keepdims=True))
        dp = p * np.expm1(eps + np.maximum(up, down))  # >= |p' - p|
        pu = p * np.exp(eps + down)  # >= p'
        # sum_t p'_t v'_t - sum_t p_t v_t = sum_t (p'_t - p_t)(v_t - o) + sum_t p'_t (v'_t - v_t), taken in the
        # output domain (after the final rotation when V is rotated) so that |.| is applied after H
        v_out, o_out = (rotate(v_seg, block), rotate(o, block)) if kv["rot_v"] else (v_seg, o)
        err = np.einsum("kgt,tkgd->kgd", dp, np.abs(v_out[:, :, None, :] - o_out[None]))
        inner = np.einsum("kgt,tkd->kgd", pu, dv[a:b] + 2 * F32_U * mag_v[a:b])  # ties, f32 dequantisation
        inner += LAMBDA * math.sqrt(t + 8) * F32_U * np.einsum("kgt,tkd->kgd", pu, np.abs(v_seg) + mag_v[a:b])  # sum
        inner += 4 * F32_U * np.abs(o)  # normalisation and split-K merge
        if kv["rot_v"]:  # errors made before the final rotation pass through |H|; plus that rotation's own
            inner = spread(inner) + rotation_error(o, block, dense_rotation)
        out[s], bound[s] = o_out.reshape(hq, d), (err + inner).reshape(hq, d)
    bound = SAFETY * (bound + F32_U * np.abs(out))
    return out, bound, stats


# ----------------------------------------------------------------------------------------------
# error metrics and subcommands


def errors(got, ref):
    diff = got.astype(np.float64) - ref
    idx = np.unravel_index(int(np.argmax(np.abs(diff))), diff.shape)
    norm = np.linalg.norm(ref)
    cos = float(np.sum(got * ref) / (np.linalg.norm(got) * norm)) if norm > 0 and np.linalg.norm(got) > 0 else 1.0
    return {"rel_l2": float(np.linalg.norm(diff) / norm) if norm > 0 else float(np.linalg.norm(diff)),
            "max_abs": float(np.abs(diff)[idx]), "max_abs_at": [int(i) for i in idx], "cosine": cos}


def compare(case, got, tol_factor=1.0, dense_rotation=False):
    """The compare report. Elements where got equals the reference exactly agree whatever the bound;
    elsewhere a bound that is not finite (nan/inf: the case is beyond what the error model can bound,
    e.g. logits so large that exp(eps) overflows) fails with that reason, never passes."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite results are reported below
        ref, bound, stats = conformance_bound(case, dense_rotation)
        exact = reference_output(case, exact=True)
    report = {"method": case["method"], "shape": list(ref.shape)}
    if got.shape != ref.shape:
        report.update(passed=False, reason=f"got shape {list(got.shape)}, expected {list(ref.shape)}")
        return report
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0]
        report.update(passed=False, reason=f"non-finite value {got[tuple(bad)]} at {bad.tolist()}")
        return report
    if not np.all(np.isfinite(ref)):
        bad = np.argwhere(~np.isfinite(ref))[0]
        report.update(passed=False, reason=f"the reference itself is {ref[tuple(bad)]} at {bad.tolist()} (the case overflows float64); "
                                           "no output can be checked against it")
        return report
    diff = np.abs(got.astype(np.float64) - ref)
    allowed = tol_factor * bound
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / allowed)  # exact agreement: 0 even against a 0 or nan bound
    unbounded = (diff != 0) & ~np.isfinite(allowed)
    worst = np.unravel_index(int(np.argmax(np.where(np.isnan(ratio), np.inf, ratio))), ratio.shape)
    if unbounded.any():
        worst = tuple(int(i) for i in np.argwhere(unbounded)[0])
    report["vs_reference"] = errors(got, ref)
    report["vs_exact"] = errors(got, exact)
    report["reference_vs_exact"] = errors(ref, exact)
    report["tolerance"] = dict(
        kind="elementwise |got - reference| <= bound (tools/saw_int4_reference.py docstring)",
        tol_factor=tol_factor, rotation_model="dense" if dense_rotation else "butterfly", max_ratio=float(ratio[worst]), worst_at=[int(i) for i in worst],
        worst_got=float(got[worst]), worst_reference=float(ref[worst]), worst_bound=float(allowed[worst]),
        bound_rel_l2=float(np.linalg.norm(bound) / max(np.linalg.norm(ref), 1e-300)),
        non_finite_bound_elements=int(np.sum(~np.isfinite(allowed))), exactly_equal_elements=int(np.sum(diff == 0)), **stats)
    if unbounded.any():
        report["passed"] = False
        report["reason"] = (f"the conformance bound is {allowed[worst]} at {list(report['tolerance']['worst_at'])}, where got differs from the "
                            f"reference by {diff[worst]:.3e} ({int(unbounded.sum())} such elements): the case is beyond what the error model "
                            "can bound (e.g. |q.k| * scale so large that its error terms overflow float64); only exact agreement can pass it")
        return report
    report["passed"] = bool(ratio[worst] <= 1.0)
    if not report["passed"]:
        report["reason"] = (f"|got - reference| = {diff[worst]:.3e} at {list(report['tolerance']['worst_at'])} "
                            f"exceeds the bound {allowed[worst]:.3e} ({ratio[worst]:.3g}x)")
    return report


def json_safe(value):
    """value with non-finite floats as the strings "nan", "inf", "-inf", so that the report is strict JSON
    (JSON.parse and most readers refuse NaN / Infinity)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def make_case(args):
    rng = np.random.default_rng(args.seed)
    lens = np.array([int(x) for x in args.context_lens.split(",")], dtype=np.int32)
    d, hq, hkv, t = args.head_dim, args.q_heads, args.kv_heads, int(lens.sum())
    if hq % hkv or np.any(lens < 1):
        raise ValueError("q-heads must be a multiple of kv-heads and context lengths positive")
    k = rng.standard_normal((t, hkv, d))
    for h in range(hkv):  # a few key channels with a large, token-varying bias (as in real LLM keys)
        channels = rng.choice(d, size=min(args.outlier_channels, d), replace=False)
        bias = rng.uniform(0.6, 1.0, size=len(channels)) * args.outlier_magnitude * rng.choice([-1, 1], size=len(channels))
        k[:, h, channels] = bias + 0.15 * args.outlier_magnitude * rng.standard_normal((t, len(channels)))
    v = rng.standard_normal((t, hkv, d))
    q = 1.5 * rng.standard_normal((len(lens), hq, d))
    block = args.hadamard_block if args.hadamard_block is not None else default_hadamard_block(d)
    meta = {"method": args.method, "hadamard_block": str(block), "rotate_v": args.rotate_v, "page_size": str(args.page_size)}
    if args.scale is not None:
        meta["scale"] = repr(float(args.scale))
    parse_bool(args.rotate_v)
    tensors = {"q": q.astype(np.float32), "k": k.astype(np.float32), "v": v.astype(np.float32), "context_lens": lens}
    write_safetensors(args.out, tensors, meta)
    load_case(args.out)  # validates block/head_dim combinations


def cmd_expect(args):
    case = load_case(args.case)
    out = reference_output(case, exact=args.exact)
    meta = {"method": case["method"], "exact": "true" if args.exact else "false"}
    write_safetensors(args.out, {"out": out.astype(np.float32)}, meta)


def cmd_compare(args):
    if not (math.isfinite(args.tol_factor) and args.tol_factor >= 0):
        raise ValueError(f"--tol-factor is {args.tol_factor}; expected a finite number >= 0")
    case = load_case(args.case)
    tensors, _ = read_safetensors(args.got)
    if args.got_tensor not in tensors:
        raise ValueError(f"{args.got}: tensor {quote_name(args.got_tensor)} missing; file has: {list_for_message(tensors) or '(no tensors)'}")
    with np.errstate(over="ignore"):
        got = tensors[args.got_tensor].astype(np.float32)
    report = compare(case, got, args.tol_factor, args.dense_rotation)
    print(json.dumps(json_safe(report), indent=2, allow_nan=False))
    return 0 if report["passed"] else 1


# ----------------------------------------------------------------------------------------------
# selftest: a float32 emulation of a GPU kernel (butterfly rotation, f32 quantisation through
# 1/scale, dequant algebra, online softmax over 16-token chunks) must pass; corruptions must fail.


def fwht_f32(x, block):
    y = np.asarray(x, np.float32).reshape(x.shape[:-1] + (x.shape[-1] // block, block)).copy()
    h = 1
    while h < block:
        y = y.reshape(y.shape[:-1] + (block // (2 * h), 2, h))
        a, b = y[..., 0, :].copy(), y[..., 1, :].copy()
        y[..., 0, :], y[..., 1, :] = a + b, a - b
        y = y.reshape(y.shape[:-3] + (block,))
        h *= 2
    return (y * np.float32(1 / math.sqrt(block))).reshape(x.shape)


def emulate_f32(case, corrupt_nibble=False, skip_rotation=False):
    f = np.float32
    method, block = case["method"], case["block"]
    rot_k = method == "int4-hadamard" and not skip_rotation
    rot_v = rot_k and case["rotate_v"]

    def quant(x):
        mn, mx = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
        s16, m16 = ((mx - mn) / f(15)).astype(np.float16).astype(f), mn.astype(np.float16).astype(f)
        inv = np.where(s16 > 0, f(1) / np.where(s16 > 0, s16, f(1)), f(0))
        return np.clip(np.rint((x - m16) * inv), 0, 15).astype(f), s16, m16

    if method == "fp16":
        kc = (case["k"].astype(np.float16).astype(f), None, None)
        vc = (case["v"].astype(np.float16).astype(f), None, None)
    else:
        kc = quant(fwht_f32(case["k"], block) if rot_k else case["k"])
        vc = quant(fwht_f32(case["v"], block) if rot_v else case["v"])
    if corrupt_nibble:  # one code off by one on the most attended token of the longest sequence, kv head 0
        sq = int(np.argmax(case["lens"]))
        a, b = segments(case["lens"])[sq]
        _, p = attention_probs(case["q"][sq, :1].astype(np.float64)[None], case["k"][a:b, :1], case["scale"])
        t = a + int(np.argmax(p[0, 0]))
        qr = fwht_f32(case["q"][sq, 0], block) if rot_k else case["q"][sq, 0]
        i = int(np.argmax(np.abs(qr)))
        codes = kc[0].copy()
        codes[t, 0, i] = codes[t, 0, i] + 1 if codes[t, 0, i] < 15 else 14
        kc = (codes,) + kc[1:]
    q = fwht_f32(case["q"], block) if rot_k else case["q"].astype(f)
    s_count, hq, d = q.shape
    hkv, g, scale = case["k"].shape[1], hq // case["k"].shape[1], f(case["scale"])
    out = np.zeros((s_count, hq, d), f)
    for s, (a, b) in enumerate(segments(case["lens"])):
        qs = q[s].reshape(hkv, g, d)
        if kc[1] is None:
            logits = np.einsum("kgd,tkd->kgt", qs, kc[0][a:b]) * scale
        else:
            dots = np.einsum("kgd,tkd->kgt", qs, kc[0][a:b])
            logits = (dots * kc[1][a:b, :, 0].T[:, None, :] + qs.sum(-1)[..., None] * kc[2][a:b, :, 0].T[:, None, :]) * scale
        m = np.full((hkv, g, 1), -np.inf, f)
        den, acc = np.zeros((hkv, g, 1), f), np.zeros((hkv, g, d), f)
        for c in range(0, b - a, 16):  # online softmax
            e = min(a + c + 16, b)
            lc = logits[..., c:e - a]
            m_new = np.maximum(m, lc.max(-1, keepdims=True))
            alpha = np.exp(m - m_new).astype(f)
            pc = np.exp(lc - m_new).astype(f)
            vcodes = vc[0][a + c:e]
            if vc[1] is None:
                part = np.einsum("kgt,tkd->kgd", pc, vcodes)
            else:
                ps = pc * vc[1][a + c:e, :, 0].T[:, None, :]
                pm = (pc * vc[2][a + c:e, :, 0].T[:, None, :]).sum(-1, keepdims=True)
                part = np.einsum("kgt,tkd->kgd", ps, vcodes) + pm
            acc, den, m = acc * alpha + part, den * alpha + pc.sum(-1, keepdims=True), m_new
        out[s] = (acc / den).reshape(hq, d)
    return fwht_f32(out, block) if rot_v else out


def selftest(quick):
    import os
    import tempfile
    grid = [("fp16", 64, 16, False, 8, 2, "1,16,33"), ("int4", 128, 128, False, 8, 2, "5,17,33"),
            ("int4-hadamard", 128, 128, False, 8, 2, "5,17,33"), ("int4-hadamard", 128, 128, True, 4, 4, "1,9,40"),
            ("int4-hadamard", 64, 16, True, 8, 1, "7,64"), ("int4-hadamard", 256, 64, False, 16, 2, "3,100")]
    if not quick:
        grid += [("int4-hadamard", 128, 128, False, 32, 8, "300,1000"), ("int4", 256, 16, True, 8, 8, "513"),
                 ("fp16", 128, 128, False, 8, 2, "700,1"), ("int4-hadamard", 128, 32, True, 8, 2, "2048")]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed, (method, d, block, rot_v, hq, hkv, lens) in enumerate(grid):
            path = os.path.join(tmp, "case.safetensors")
            ns = argparse.Namespace(out=path, method=method, hadamard_block=block, rotate_v="true" if rot_v else "false",
                                    page_size=16, head_dim=d, q_heads=hq, kv_heads=hkv, context_lens=lens, seed=seed,
                                    outlier_channels=4, outlier_magnitude=16.0, scale=None)
            make_case(ns)
            case = load_case(path)
            checks = [("f32 emulation", emulate_f32(case), True),
                      ("one nibble off by one", emulate_f32(case, corrupt_nibble=True), False),
                      ("exact attention", reference_output(case, exact=True).astype(np.float32), False)]
            if method == "int4-hadamard":
                checks.append(("no rotation", emulate_f32(case, skip_rotation=True), False))
            if method == "fp16":
                checks = [c for c in checks if c[0] != "one nibble off by one"]
            for name, got, should_pass in checks:
                r = compare(case, got)
                ok = r["passed"] == should_pass
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {method:14s} D={d:3d} B={block:3d} rot_v={rot_v!s:5s} Hq={hq:2d} "
                      f"Hkv={hkv} lens={lens:9s} {name:22s} max_ratio={r['tolerance']['max_ratio']:.3g} "
                      f"rel_l2={r['vs_reference']['rel_l2']:.2e} bound_rel={r['tolerance']['bound_rel_l2']:.1e} "
                      f"ref_vs_exact={r['reference_vs_exact']['rel_l2']:.2e}")
    print("selftest", "FAILED" if failures else "passed")
    return 1 if failures else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mc = sub.add_parser("make-case", help="write a random case file")
    mc.add_argument("--out", required=True)
    mc.add_argument("--method", required=True, choices=METHODS)
    mc.add_argument("--hadamard-block", type=int, default=None, help="default: the largest power of two <= 128 dividing head_dim")
    mc.add_argument("--rotate-v", default="false", choices=("true", "false"))
    mc.add_argument("--page-size", type=int, default=16)
    mc.add_argument("--head-dim", type=int, default=128)
    mc.add_argument("--q-heads", type=int, default=8)
    mc.add_argument("--kv-heads", type=int, default=2)
    mc.add_argument("--context-lens", default="5,17,33")
    mc.add_argument("--seed", type=int, default=0)
    mc.add_argument("--outlier-channels", type=int, default=4)
    mc.add_argument("--outlier-magnitude", type=float, default=16.0)
    mc.add_argument("--scale", type=float, default=None, help="attention scale, default 1/sqrt(head_dim)")
    ex = sub.add_parser("expect", help="write the reference output")
    ex.add_argument("--case", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--exact", action="store_true", help="unquantised float64 attention instead")
    cp = sub.add_parser("compare", help="check an output against the reference")
    cp.add_argument("--case", required=True)
    cp.add_argument("--got", required=True)
    cp.add_argument("--got-tensor", default="out")
    cp.add_argument("--tol-factor", type=float, default=1.0, help="multiply the conformance bound (default 1)")
    cp.add_argument("--dense-rotation", action="store_true",
                    help="the implementation rotates by an f32 matrix product, not butterflies (looser bound)")
    st = sub.add_parser("selftest", help="check the reference and its tolerance")
    st.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "make-case":
            make_case(args)
        elif args.cmd == "expect":
            cmd_expect(args)
        elif args.cmd == "compare":
            return cmd_compare(args)
        else:
            return selftest(args.quick)
    except (ValueError, KeyError, OSError) as err:
        print(clip(one_line(f"saw_int4_reference.py {args.cmd}: {err}"), 2 * MESSAGE_CHARS), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
