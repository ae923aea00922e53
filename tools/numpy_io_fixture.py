#!/usr/bin/env python3
"""numpy side of test/io.test.ts: proves that src/io/npy.ts and src/io/safetensors.ts agree with numpy.

  write --dir D   writes .npy files with numpy (np.save / np.lib.format, versions 1.0, 2.0, 3.0, plus
                  files the TS reader must refuse) and a .safetensors file with many dtypes (through
                  the codec of tools/saw_int4_reference.py), and D/manifest.json describing the
                  expected decoded content: {"npy": {file: entry}, "npy_refused": {file: why},
                  "safetensors": {file: {"metadata": {...}, "tensors": {name: entry}}}} where entry is
                  {"dtype", "shape", "values" (flat, as float32/int32 values)}.
  check --dir D   reads D/ts_manifest.json (same layout, written by the TS test next to its files) and
                  checks every listed file with np.load / a strict safetensors reader: dtype, shape and
                  bit-exact values. Exit 0 when all match, 1 otherwise (with the first mismatch).

Non-finite values are written in the manifests as the strings "nan", "inf", "-inf"; negative zero as
-0.0 here and as the string "-0" by the TS side (JSON.stringify(-0) is "0"); both sides read both.
Needs numpy only (Debian: apt-get install python3-numpy); run with /usr/bin/python3.
"""
import argparse
import io
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from saw_int4_reference import read_safetensors, write_safetensors  # noqa: E402


def encode(values):
    out = []
    for v in np.asarray(values).ravel().tolist():
        if isinstance(v, float) and not np.isfinite(v):
            out.append("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))
        else:
            out.append(v)
    return out


def decode(values, dtype):
    return np.array([float(v) if isinstance(v, str) else v for v in values], dtype=dtype)


def entry(dtype, arr, as_dtype):
    """Manifest entry: file dtype, shape, and the values the TS reader must produce (f32 / i32)."""
    return {"dtype": dtype, "shape": list(arr.shape), "values": encode(np.asarray(arr).astype(as_dtype))}


def raw_npy(header_dict, data, version=(1, 0)):
    """A .npy file with a hand-written header (for forms numpy itself never writes)."""
    header = header_dict.encode("latin1")
    pre = 10 if version[0] == 1 else 12
    total = -(-(pre + len(header) + 1) // 64) * 64
    header = header + b" " * (total - pre - len(header) - 1) + b"\n"
    length = struct.pack("<H", len(header)) if version[0] == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes(version) + length + header + data


def cmd_write(out_dir):
    rng = np.random.default_rng(1234)
    manifest = {"npy": {}, "npy_refused": {}, "safetensors": {}}

    def save(name, arr, as_dtype, version=None):
        path = os.path.join(out_dir, name)
        with open(path, "wb") as f:
            if version is None:
                np.save(f, arr, allow_pickle=False)
            else:
                np.lib.format.write_array(f, arr, version=version, allow_pickle=False)
        manifest["npy"][name] = entry(arr.dtype.str, arr, as_dtype)

    f4 = np.array([[0.0, -0.0, 1.5], [-2.25, 3.4028235e38, 1e-45]], dtype=np.float32)
    save("f4.npy", f4, np.float32)
    save("f4_special.npy", np.array([np.nan, np.inf, -np.inf, 1.1754944e-38], dtype=np.float32), np.float32)
    save("f2.npy", np.array([0.5, -0.0, 65504, 6e-8, np.inf, np.nan, 0.1, -1.0009765625], dtype=np.float16), np.float32)
    with np.errstate(over="ignore"):
        save("f8.npy", np.array([[0.1, -1e300], [1e-50, 1 / 3]], dtype=np.float64), np.float32)
    save("i4.npy", np.array([[-2147483648, 2147483647], [0, -1], [7, 123456]], dtype=np.int32), np.int32)
    save("i8.npy", np.array([-2147483648, 2147483647, -5, 0], dtype=np.int64), np.int32)
    save("i2.npy", np.array([-32768, 32767, 3], dtype=np.int16), np.int32)
    save("u1.npy", np.array([0, 1, 128, 255], dtype=np.uint8), np.int32)
    save("i1.npy", np.array([-128, 0, 127], dtype=np.int8), np.int32)
    save("u2.npy", np.array([0, 65535], dtype=np.uint16), np.int32)
    save("b1.npy", np.array([True, False, True]), np.int32)
    save("scalar.npy", np.array(3.5, dtype=np.float32), np.float32)
    save("empty.npy", np.zeros((0, 3), dtype=np.float32), np.float32)
    save("random3d.npy", rng.standard_normal((3, 4, 5)).astype(np.float32), np.float32)
    save("v2.npy", np.arange(6, dtype=np.float32).reshape(2, 3) / 7, np.float32, version=(2, 0))
    save("v3.npy", np.arange(-3, 3, dtype=np.int32), np.int32, version=(3, 0))

    native = np.array([1.25, -8.5], dtype=np.float32)
    with open(os.path.join(out_dir, "native_order.npy"), "wb") as f:
        f.write(raw_npy("{'descr': '=f4', 'fortran_order': False, 'shape': (2,), }", native.astype("<f4").tobytes()))
    manifest["npy"]["native_order.npy"] = entry("<f4", native, np.float32)

    refused = {
        "big_endian.npy": np.arange(4, dtype=np.float32).astype(">f4"),
        "fortran.npy": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "i8_overflow.npy": np.array([1, 2 ** 40], dtype=np.int64),
        "complex.npy": np.array([1 + 2j], dtype=np.complex64),
    }
    for name, arr in refused.items():
        np.save(os.path.join(out_dir, name), arr, allow_pickle=False)
        manifest["npy_refused"][name] = name.split(".")[0]
    buf = io.BytesIO()
    np.save(buf, f4, allow_pickle=False)
    with open(os.path.join(out_dir, "truncated.npy"), "wb") as f:
        f.write(buf.getvalue()[:-4])
    manifest["npy_refused"]["truncated.npy"] = "truncated"

    bf16_bits = np.array([0x3F80, 0xC020, 0x4049, 0x8000], dtype=np.uint16)  # 1.0, -2.5, 3.140625, -0.0
    tensors = {
        "f32": f4,
        "f16": np.array([1.0, -2.0, 65504, 2 ** -24, -np.inf], dtype=np.float16),
        "bf16": ("BF16", bf16_bits),
        "f64": np.array([0.1, 2.0 / 3.0], dtype=np.float64),
        "i32": np.array([[-2147483648, 2147483647], [1, -1]], dtype=np.int32),
        "i64": np.array([-2147483648, 5, 2147483647], dtype=np.int64),
        "i16": np.array([-32768, 32767], dtype=np.int16),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "u8": np.array([0, 7, 255], dtype=np.uint8),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "random": rng.standard_normal((2, 3, 8)).astype(np.float32),
    }
    metadata = {"method": "int4-hadamard", "note": "caf\u00e9 \u2713"}
    write_safetensors(os.path.join(out_dir, "mixed.safetensors"), tensors, metadata)
    expected = {}
    for name, value in tensors.items():
        if isinstance(value, tuple):
            dtype, bits = value
            expected[name] = entry(dtype, bits, np.uint16)
            expected[name]["values"] = encode((bits.astype(np.uint32) << 16).view(np.float32))
        else:
            dtype = {"float32": "F32", "float16": "F16", "float64": "F64", "int32": "I32", "int64": "I64",
                     "int16": "I16", "int8": "I8", "uint8": "U8"}[value.dtype.name]
            expected[name] = entry(dtype, value, np.float32 if dtype.startswith("F") else np.int32)
    manifest["safetensors"]["mixed.safetensors"] = {"metadata": metadata, "tensors": expected}
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, allow_nan=False)


def values_equal(got, want):
    if got.shape != want.shape:
        return False
    if got.dtype.kind == "f":
        nan_ok = np.array_equal(np.isnan(got), np.isnan(want))
        fin = ~np.isnan(want)
        return bool(nan_ok and np.array_equal(got[fin], want[fin]) and np.array_equal(np.signbit(got[fin]), np.signbit(want[fin])))
    return bool(np.array_equal(got, want))


def cmd_check(in_dir):
    with open(os.path.join(in_dir, "ts_manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    problems, checked = [], 0
    for name, want in manifest.get("npy", {}).items():
        arr = np.load(os.path.join(in_dir, name), allow_pickle=False)
        if arr.dtype != np.dtype(want["dtype"]) or list(arr.shape) != want["shape"]:
            problems.append(f"{name}: numpy reads {arr.dtype.str} {list(arr.shape)}, TS meant {want['dtype']} {want['shape']}")
        elif not values_equal(arr.ravel(), decode(want["values"], arr.dtype)):
            problems.append(f"{name}: values differ: numpy reads {encode(arr)[:8]}..., TS meant {want['values'][:8]}...")
        checked += 1
    st_dtypes = {"F32": np.float32, "I32": np.int32, "F16": np.float16}
    for name, want in manifest.get("safetensors", {}).items():
        path = os.path.join(in_dir, name)
        try:
            tensors, metadata = read_safetensors(path)
        except ValueError as err:
            problems.append(f"{name}: strict reader refuses it: {err}")
            continue
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
        if (8 + header_len) % 8:
            problems.append(f"{name}: data region starts at {8 + header_len}, not 8-byte aligned")
        if metadata != want.get("metadata", {}):
            problems.append(f"{name}: metadata {metadata} != {want.get('metadata', {})}")
        if set(tensors) != set(want["tensors"]):
            problems.append(f"{name}: tensors {sorted(tensors)} != {sorted(want['tensors'])}")
        for tname, t in want["tensors"].items():
            if tname not in tensors:
                problems.append(f"{name}: tensor {tname!r} missing")
                continue
            arr = tensors[tname]
            if arr.dtype != np.dtype(st_dtypes[t["dtype"]]) or list(arr.shape) != t["shape"]:
                problems.append(f"{name}/{tname}: numpy reads {arr.dtype} {list(arr.shape)}, TS meant {t['dtype']} {t['shape']}")
            elif not values_equal(arr.ravel().astype(np.float32 if t["dtype"] == "F16" else arr.dtype),
                                  decode(t["values"], np.float32 if t["dtype"] == "F16" else arr.dtype)):
                problems.append(f"{name}/{tname}: values differ: numpy reads {encode(arr)[:8]}..., TS meant {t['values'][:8]}...")
            checked += 1
    if problems:
        print("numpy_io_fixture check FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"numpy_io_fixture check: {checked} arrays match")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=("write", "check"))
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    if args.cmd == "write":
        cmd_write(args.dir)
        return 0
    return cmd_check(args.dir)


if __name__ == "__main__":
    sys.exit(main())
