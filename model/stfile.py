"""A small safetensors writer and reader (numpy + stdlib; no `safetensors` package needed).

Format (https://github.com/huggingface/safetensors):

    bytes [0, 8)        u64 little-endian N: the header's length
    bytes [8, 8 + N)    UTF-8 JSON {name: {"dtype", "shape", "data_offsets": [begin, end]},
                        "__metadata__": {str: str}}, padded with spaces so the data starts 8-aligned
    bytes [8 + N, ...)  the data region: each tensor's little-endian bytes, C order; data_offsets are
                        relative to the region's start

The writer lays the tensors out in the order given, each starting where the previous ends (no gaps),
as the project's readers (src/io/safetensors.ts, tools/saw_int4_reference.py) require.
"""
import json
import struct

import numpy as np

DTYPES = {  # numpy dtype name -> safetensors dtype
    'float64': 'F64', 'float32': 'F32', 'float16': 'F16',
    'int64': 'I64', 'int32': 'I32', 'int16': 'I16', 'int8': 'I8',
    'uint32': 'U32', 'uint16': 'U16', 'uint8': 'U8', 'bool': 'BOOL',
}
NUMPY = {v: k for k, v in DTYPES.items()}
ALIGN = 8


def encode(tensors, metadata=None):
    """The bytes of a safetensors file holding `tensors` ([(name, numpy array)] or a dict, in order)."""
    items = list(tensors.items()) if isinstance(tensors, dict) else list(tensors)
    header = {}
    blobs = []
    offset = 0
    for name, arr in items:
        if not isinstance(name, str) or not name or name == '__metadata__' or name in header:
            raise ValueError('safetensors: bad or repeated tensor name %r' % (name,))
        arr = np.asarray(arr)
        code = DTYPES.get(arr.dtype.name)
        if code is None:
            raise ValueError('safetensors: tensor %r has dtype %s, not one of %s' % (name, arr.dtype, sorted(DTYPES)))
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder('<')).tobytes()
        header[name] = {'dtype': code, 'shape': [int(n) for n in arr.shape], 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError('safetensors: metadata keys and values must be strings')
        header['__metadata__'] = dict(metadata)
    text = json.dumps(header, separators=(',', ':'), ensure_ascii=True).encode('utf-8')
    text += b' ' * ((-(8 + len(text))) % ALIGN)
    return b''.join([struct.pack('<Q', len(text)), text] + blobs)


def write(path, tensors, metadata=None):
    """Writes the file; returns its size in bytes."""
    data = encode(tensors, metadata)
    with open(path, 'wb') as f:
        f.write(data)
    return len(data)


def decode(data):
    """(tensors {name: numpy array} in header order, metadata) of safetensors bytes; checks that the
    data_offsets tile the data region exactly (sorted by offset: from 0, no gap, no overlap, to its end)."""
    if len(data) < 8:
        raise ValueError('safetensors: %d bytes, shorter than the 8-byte header length' % len(data))
    (n,) = struct.unpack('<Q', data[:8])
    if 8 + n > len(data):
        raise ValueError('safetensors: header length %d runs past the end (%d bytes)' % (n, len(data)))
    header = json.loads(data[8:8 + n].decode('utf-8'))
    metadata = header.pop('__metadata__', {}) or {}
    region = memoryview(data)[8 + n:]
    spans = []
    tensors = {}
    for name, info in header.items():
        dtype = np.dtype(NUMPY[info['dtype']]).newbyteorder('<')
        shape = tuple(info['shape'])
        begin, end = info['data_offsets']
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if end - begin != count * dtype.itemsize:
            raise ValueError('safetensors: %r spans %d bytes, expected %d' % (name, end - begin, count * dtype.itemsize))
        spans.append((begin, end, name))
        tensors[name] = np.frombuffer(region[begin:end], dtype=dtype).reshape(shape)
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise ValueError('safetensors: %r starts at %d, expected %d (gap or overlap)' % (name, begin, pos))
        pos = end
    if pos != len(region):
        raise ValueError('safetensors: tensors end at %d, data region is %d bytes' % (pos, len(region)))
    return tensors, metadata


def read(path):
    with open(path, 'rb') as f:
        return decode(f.read())


def write_kv_layer(path, k, v, q=None, context_lens=None, metadata=None, dtype='float32'):
    """One layer's K/V in the accuracy lab's format (src/accuracy/kv-file.ts, layout t_hkv_d):
    k, v float [T, Hkv, D] (sequence 0's tokens, then sequence 1's, ...), optional q float [S, Hq, D]
    (one decode query per sequence, post-RoPE), optional context_lens I32 [S] summing to T."""
    k = np.asarray(k)
    v = np.asarray(v)
    if k.ndim != 3 or v.shape != k.shape:
        raise ValueError('kv: k and v must be [T, Hkv, D] of one shape, got %s and %s' % (k.shape, v.shape))
    t, hkv, d = k.shape
    lens = np.asarray([t] if context_lens is None else context_lens, dtype=np.int32)
    if lens.ndim != 1 or (lens < 1).any() or int(lens.sum()) != t:
        raise ValueError('kv: context_lens %s must be ≥ 1 each and sum to T = %d' % (lens.tolist(), t))
    for name, x in (('k', k), ('v', v)) + ((('q', q),) if q is not None else ()):
        x = np.asarray(x, dtype=np.float64)
        if not np.isfinite(x).all() or (np.abs(x) > 65504).any():
            raise ValueError('kv: %s has values that are not finite or beyond the float16 range' % name)
    tensors = [('k', k.astype(dtype)), ('v', v.astype(dtype))]
    if q is not None:
        q = np.asarray(q)
        if q.ndim != 3 or q.shape[0] != len(lens) or q.shape[2] != d or q.shape[1] % hkv:
            raise ValueError('kv: q must be [S=%d, Hq (a multiple of %d), D=%d], got %s' % (len(lens), hkv, d, q.shape))
        tensors.append(('q', q.astype(np.float32)))
    tensors.append(('context_lens', lens))
    meta = {'layout': 't_hkv_d'}
    meta.update(metadata or {})
    return write(path, tensors, meta)
