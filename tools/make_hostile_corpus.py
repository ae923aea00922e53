#!/usr/bin/env python3
"""Hostile (and tricky but valid) tensor files for test/hostile-files.test.ts.

  write --dir D    writes the corpus: D/*.safetensors, D/*.npy and D/manifest.json, which says for each
                   file what it tries ("about") and what the readers must do with it: "refuse" with a
                   message containing the fragment "ts" (src/io, TensorFileError) and "py"
                   (tools/saw_int4_reference.py read_safetensors, ValueError), or "accept". Standard
                   library only, deterministic: the committed test/fixtures/hostile is exactly what
                   `write` makes (the test regenerates it and compares the bytes).
  check PATH...    reads every .safetensors file given (or found in a given directory) with
                   tools/saw_int4_reference.py read_safetensors and prints one JSON object
                   {file name: {"outcome": "accepted" | "refused" | "crashed", "message": ...}}; "crashed"
                   is any exception other than ValueError (needs numpy). Exit 0 unless a file crashed.

.npy files are read by the TypeScript reader only (the Python tool reads safetensors); they carry no
"py" fragment. Every file is a few KB at most; the 10^5-deep and 10^6-name regressions are built in
memory by the test instead.
"""
import argparse
import json
import os
import struct
import sys

# ----------------------------------------------------------------------------------------------
# building blocks


def st(header, data=b"", declared=None):
    """A safetensors file: u64 header length (or `declared`), the header (text or bytes), the data."""
    raw = header.encode("utf-8") if isinstance(header, str) else header
    return struct.pack("<Q", len(raw) if declared is None else declared) + raw + data


def js(obj):
    """Compact JSON, as the official writer (key order as given)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def tensor(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def f32(begin, count):
    """An F32 tensor of `count` elements at `begin`."""
    return tensor("F32", [count], begin, begin + 4 * count)


def npy(header, data=b"", version=1, declared=None, pad=True):
    """A .npy file: magic, version, header length (or `declared`), the header (latin-1 text or bytes,
    padded as numpy pads: spaces and '\\n' to a multiple of 64), the data."""
    raw = header.encode("latin-1") if isinstance(header, str) else header
    pre = 10 if version == 1 else 12
    if pad:
        total = -(-(pre + len(raw) + 1) // 64) * 64
        raw = raw + b" " * (total - pre - len(raw) - 1) + b"\n"
    n = len(raw) if declared is None else declared
    length = struct.pack("<H", n) if version == 1 else struct.pack("<I", n)
    return b"\x93NUMPY" + bytes([version, 0]) + length + raw + data


def npy_dict(descr="'<f4'", fortran="False", shape="(2,)"):
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


ZEROS8 = bytes(8)
OK = f32(0, 2)  # an F32 [2] tensor over the 8 bytes ZEROS8
NESTED_100 = "[" * 100 + "]" * 100

# ----------------------------------------------------------------------------------------------
# the corpus: (file name, bytes, about, expected); expected is "accept" or (ts fragment, py fragment)

DEEP = "more than 64 levels deep"
NOT_JSON = "is not valid JSON"
DUPLICATE_NAME = "appears more than once in the header"
DUPLICATE_KEY = "more than once; expected each key once"
BAD_SHAPE = "expected a list of non-negative integers"
BAD_OFFSETS = "expected [begin, end] with 0 <= begin <= end"


def safetensors_cases():
    long_name = "n" * 3000
    control_name = "a\nb\r\x00\u2028c"
    yield "empty.safetensors", b"", "a file of 0 bytes", ("only 0 bytes", "only 0 bytes")
    yield "short.safetensors", b"\x02\x00\x00\x00\x00", "5 bytes, shorter than the u64 header length", ("only 5 bytes", "only 5 bytes")
    yield "header_length_huge.safetensors", st("{}", declared=2 ** 64 - 1), "header length 2^64 - 1", ("expected at most 100000000",) * 2
    yield "header_length_past_end.safetensors", st("{}", declared=1000), "header length 1000, 2 bytes follow", ("but only 2 bytes follow",) * 2
    yield "header_empty.safetensors", st(""), "header of 0 bytes", (NOT_JSON,) * 2
    yield "header_not_utf8.safetensors", st(b"{\xff\xfe}"), "header bytes that are not UTF-8", ("not valid UTF-8",) * 2
    yield "header_bom.safetensors", st("\ufeff{}"), "a UTF-8 byte-order mark before the JSON", (NOT_JSON,) * 2
    yield "header_truncated_json.safetensors", st('{"a": '), "JSON cut short", (NOT_JSON,) * 2
    yield "header_trailing_garbage.safetensors", st("{} x"), "text after the JSON object", (NOT_JSON,) * 2
    yield "header_nul_padding.safetensors", st("{}\0\0\0\0\0\0"), "header padded with NUL bytes (the format pads with spaces)", (NOT_JSON,) * 2
    yield "header_nan.safetensors", st('{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,0]}}'), "NaN (not JSON) in a shape", (NOT_JSON,) * 2
    yield "header_infinity.safetensors", st('{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,Infinity]}}'), "Infinity in data_offsets", (NOT_JSON,) * 2
    yield "header_array.safetensors", st("[1,2]"), "a JSON array instead of an object", ("is an array; expected a JSON object",) * 2
    yield "header_string.safetensors", st('"x"'), "a JSON string instead of an object", ('is "x"; expected a JSON object',) * 2
    yield "deep_arrays_2000.safetensors", st('{"a":' + "[" * 2000 + "]" * 2000 + "}"), "arrays nested 2000 deep", (DEEP,) * 2
    yield "deep_objects_1100.safetensors", st('{"":' * 1100 + "0" + "}" * 1100), "objects nested 1100 deep", (DEEP,) * 2
    yield "deep_65.safetensors", st(js({"a": {**tensor("F32", [0], 0, 0), "extra": 0}}).replace('"extra":0', '"extra":' + "[" * 63 + "]" * 63)), \
        "65 levels (one past the limit) in an extra key of a tensor", (DEEP,) * 2
    yield "deep_in_metadata.safetensors", st('{"__metadata__":{"x":' + NESTED_100 + "}}"), "arrays nested 100 deep in __metadata__", (DEEP,) * 2
    yield "unterminated_string_deep.safetensors", st('{"a":"' + "[" * 3000), "an unterminated string full of brackets", (NOT_JSON,) * 2
    # duplicates: JSON parsers keep the last of two equal keys
    yield "duplicate_name_other_bytes.safetensors", st('{"a":' + js(f32(0, 2)) + ',"a":' + js(f32(8, 2)) + "}", bytes(16)), \
        "tensor 'a' twice, at different bytes", (DUPLICATE_NAME,) * 2
    yield "duplicate_name_same_bytes.safetensors", st('{"a":' + js(OK) + ',"a":' + js(OK) + "}", ZEROS8), \
        "tensor 'a' twice, the same entry", (DUPLICATE_NAME,) * 2
    yield "duplicate_name_escaped.safetensors", st('{"a":' + js(f32(0, 2)) + ',"\\u0061":' + js(f32(8, 2)) + "}", bytes(16)), \
        "tensor 'a' twice, once spelled \\u0061", (DUPLICATE_NAME,) * 2
    yield "duplicate_metadata.safetensors", st('{"__metadata__":{"method":"fp16"},"__metadata__":{"method":"int4"}}'), \
        "__metadata__ twice", (DUPLICATE_NAME,) * 2
    yield "duplicate_metadata_key.safetensors", st('{"__metadata__":{"method":"fp16","method":"int4"}}'), \
        "__metadata__ with the key 'method' twice", (DUPLICATE_KEY,) * 2
    yield "duplicate_data_offsets.safetensors", st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"data_offsets":[8,16]}}', bytes(16)), \
        "a tensor with two data_offsets", (DUPLICATE_KEY,) * 2
    # entries
    yield "tensor_not_object.safetensors", st('{"a":5}'), "a tensor entry that is a number", ("expected an object with dtype, shape and data_offsets",) * 2
    yield "tensor_null.safetensors", st('{"a":null}'), "a tensor entry that is null", ("is null; expected an object",) * 2
    yield "dtype_missing.safetensors", st('{"a":{"shape":[0],"data_offsets":[0,0]}}'), "no dtype", ("is nothing; expected a dtype string",) * 2
    yield "dtype_number.safetensors", st(js({"a": {**OK, "dtype": 3}}), ZEROS8), "dtype 3", ("is 3; expected a dtype string",) * 2
    yield "dtype_unknown.safetensors", st(js({"a": {**OK, "dtype": "X99"}}), ZEROS8), 'dtype "X99"', ('"X99" is not a safetensors dtype',) * 2
    yield "dtype_unsupported.safetensors", st(js({"a": {**OK, "dtype": "F8_E4M3"}}), ZEROS8), 'dtype "F8_E4M3" (a real dtype not read here)', ('"F8_E4M3"',) * 2
    yield "dtype_long.safetensors", st(js({"a": {**OK, "dtype": "X" * 3000}}), ZEROS8), "a dtype of 3000 characters", ('"XXXXXXXX',) * 2
    for name, shape, about in [("negative", [2, -3], "a negative axis"), ("fraction", [2.5], "an axis 2.5"), ("bool", [True], "an axis true"),
                               ("string", "6", "a string"), ("null", None, "null"), ("nested", [[2]], "a nested list"),
                               ("unsafe", [2 ** 53 + 1], "an axis 2^53 + 1 (not exact in a double)")]:
        yield f"shape_{name}.safetensors", st(js({"a": {**OK, "shape": shape}}), ZEROS8), f"a shape with {about}", (BAD_SHAPE,) * 2
    yield "shape_overflow.safetensors", st(js({"a": tensor("F32", [2 ** 32, 2 ** 32], 0, 0)})), \
        "shape [2^32, 2^32] at [0, 0] (2^64 elements wrap to 0 in int64)", ("span 0 bytes; expected",) * 2
    yield "shape_rank_200.safetensors", st(js({"a": tensor("F32", [2] * 200, 0, 8)}), ZEROS8), "a shape of 200 axes of 2", ("span 8 bytes; expected",) * 2
    for name, offsets, about in [("missing", None, "missing"), ("string", "x", '"x"'), ("three", [0, 8, 16], "[0, 8, 16]"),
                                 ("reversed", [8, 0], "[8, 0]"), ("negative", [-8, 0], "[-8, 0]"), ("fraction", [0, 7.5], "[0, 7.5]"),
                                 ("huge", [0, 2 ** 64], "[0, 2^64]"), ("bool", [False, 8], "[false, 8]")]:
        entry = {k: v for k, v in OK.items() if k != "data_offsets" or offsets is not None}
        if offsets is not None:
            entry["data_offsets"] = offsets
        yield f"offsets_{name}.safetensors", st(js({"a": entry}), ZEROS8), f"data_offsets {about}", (BAD_OFFSETS,) * 2
    yield "offsets_past_end.safetensors", st(js({"a": f32(4, 2)}), ZEROS8), "data_offsets [4, 12] of an 8-byte data region", ("runs past the data region",) * 2
    yield "offsets_span_mismatch.safetensors", st(js({"a": tensor("F32", [2, 3], 0, 20)}), bytes(20)), "20 bytes for shape [2, 3] F32", \
        ("span 20 bytes; expected 24",) * 2
    yield "overlap.safetensors", st(js({"a": f32(0, 4), "b": f32(12, 2)}), bytes(20)), "b [12, 20] overlaps a [0, 16]", ("overlaps tensor 'a'",) * 2
    yield "overlap_same_range.safetensors", st(js({"a": OK, "b": OK}), ZEROS8), "a and b share the bytes [0, 8]", ("overlaps tensor",) * 2
    yield "overlap_empty_inside.safetensors", st(js({"a": f32(0, 6), "e": f32(4, 0)}), bytes(24)), "an empty tensor at [4, 4] inside a [0, 24]", \
        ("overlaps tensor 'a'",) * 2
    yield "gap_middle.safetensors", st(js({"a": f32(0, 2), "b": f32(12, 2)}), bytes(20)), "bytes 8..12 belong to no tensor", ("leaves a gap: bytes 8..12",) * 2
    yield "gap_start.safetensors", st(js({"a": f32(4, 2)}), bytes(12)), "bytes 0..4 belong to no tensor", ("leaves a gap: bytes 0..4",) * 2
    yield "trailing_bytes.safetensors", st(js({"a": OK}), bytes(12)), "4 bytes after the last tensor", ("has 4 bytes after the last tensor",) * 2
    yield "data_without_tensors.safetensors", st("{}", ZEROS8), "8 data bytes and no tensor", ("has 8 bytes after the last tensor",) * 2
    # metadata
    yield "metadata_array.safetensors", st('{"__metadata__":[1]}'), "__metadata__ an array", ("expected an object of string values",) * 2
    yield "metadata_null.safetensors", st('{"__metadata__":null}'), "__metadata__ null", ("expected an object of string values",) * 2
    yield "metadata_number_value.safetensors", st('{"__metadata__":{"n":3}}'), "a metadata value 3", ("is 3; expected a string",) * 2
    yield "metadata_object_value.safetensors", st('{"__metadata__":{"n":{"x":"y"}}}'), "a metadata value that is an object", ("expected a string",) * 2
    # messages stay short and on one line
    yield "name_long.safetensors", st(js({long_name: {**OK, "dtype": "X99"}}), ZEROS8), "a tensor name of 3000 characters (bad dtype)", \
        ("more characters", "more characters")
    yield "name_control.safetensors", st(js({control_name: {**OK, "dtype": "X99"}}), ZEROS8), "a tensor name with \\n, \\r, NUL, U+2028 (bad dtype)", \
        ("'a\\nb\\r", "'a\\nb\\r")
    yield "names_long_overlap.safetensors", st(js({long_name + "1": OK, long_name + "2": OK}), ZEROS8), "two 3001-character names that overlap", \
        ("overlaps tensor", "overlaps tensor")


def safetensors_valid():
    """Tricky files both readers must accept."""
    note = '[[[{{{"}}]]' * 40
    yield "valid_brackets_in_strings.safetensors", st(js({"__metadata__": {"note": note, "[{": "}]"}, "a[{\"": OK}), ZEROS8), \
        "brackets and escaped quotes inside strings (no nesting, no duplicates)"
    yield "valid_escaped_names.safetensors", st('{"a":' + js(f32(0, 1)) + ',"\\u0062":' + js(f32(4, 1)) + ',"\\u00e9\\"":' + js(f32(8, 0)) + "}", ZEROS8), \
        "names a, \\u0062 (b) and \\u00e9\\\" (distinct keys)"
    yield "valid_zero_size_boundaries.safetensors", st(js({"y": f32(8, 0), "a": OK, "z": f32(0, 0), "x": f32(8, 0)}), ZEROS8), \
        "empty tensors at both ends, listed out of offset order"
    yield "valid_unaligned.safetensors", st(js({"b": f32(1, 2), "u": tensor("U8", [1], 0, 1)}), bytes(9)), "an F32 tensor at the odd offset 1"
    yield "valid_depth_64.safetensors", st(js({"a": {**tensor("F32", [0], 0, 0), "extra": 0}}).replace('"extra":0', '"extra":' + "[" * 62 + "]" * 62)), \
        "exactly 64 levels of nesting (an extra key of a tensor, ignored)"
    yield "valid_float_integers.safetensors", st('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8.0]}}', ZEROS8), \
        "integers written 2.0 and 8.0 (JSON numbers)"
    yield "valid_no_tensors.safetensors", st('{"__metadata__":{}}    '), "only empty metadata, padded with spaces"


def npy_cases():
    f4x2 = bytes(8)
    yield "npy_empty.npy", b"", "a file of 0 bytes", "not a .npy file"
    yield "npy_bad_magic.npy", b"PK\x03\x04 not numpy", "a zip file", "not a .npy file"
    yield "npy_magic_only.npy", b"\x93NUMPY", "magic and nothing else", "only 6 bytes"
    yield "npy_version_9.npy", b"\x93NUMPY\x09\x00" + npy(npy_dict(), f4x2)[8:], "version 9.0", "is 9.0; expected 1.0, 2.0 or 3.0"
    yield "npy_header_length_past_end.npy", npy(npy_dict(), f4x2, declared=5000), "header length 5000 in a small file", "says 5000 header bytes but only"
    yield "npy_v1_header_length_max.npy", npy(npy_dict(), f4x2, declared=0xFFFF), "v1 header length 65535", "expected at most 10000"
    yield "npy_v2_header_length_huge.npy", npy(npy_dict(), f4x2, version=2, declared=0xFFFFFFFF), "v2 header length 2^32 - 1", "expected at most 10000"
    yield "npy_header_empty.npy", npy(b"", pad=False), "a header of 0 bytes", "end of header"
    yield "npy_header_not_dict.npy", npy("[1, 2]"), "a list instead of a dict", "not a dict"
    yield "npy_deep_tuple.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 4000 + ")" * 4000 + "}"), \
        "a shape of tuples nested 4000 deep", DEEP
    yield "npy_deep_dict.npy", npy("{'a': " * 100 + "1" + "}" * 100), "dicts nested 100 deep", DEEP
    yield "npy_duplicate_descr.npy", npy("{'descr': '<f4', 'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4x2), \
        "the key 'descr' twice", "has the key 'descr' more than once"
    yield "npy_missing_key.npy", npy("{'descr': '<f4', 'shape': (2,)}", f4x2), "no fortran_order", "expected exactly descr, fortran_order, shape"
    yield "npy_many_keys.npy", npy("{" + ", ".join(f"'k{i}': 0" for i in range(300)) + "}"), "300 keys", "… and 292 more"
    yield "npy_dict_key_not_string.npy", npy("{1: 2}"), "a dict key 1", "dict key 1 is not a string"
    yield "npy_unterminated_string.npy", npy("{'descr': '<f4"), "a string cut short", "unterminated string"
    yield "npy_unknown_name.npy", npy(npy_dict(fortran="Maybe"), f4x2), "fortran_order Maybe", "unknown name 'Maybe'"
    yield "npy_long_name.npy", npy(npy_dict(fortran="M" * 5000), f4x2), "an unknown name of 5000 letters", "more characters"
    yield "npy_descr_structured.npy", npy(npy_dict(descr="[('a', '<f4')]"), f4x2), "a structured dtype", "structured dtype"
    yield "npy_descr_unsupported.npy", npy(npy_dict(descr="'<c8'"), f4x2), "descr '<c8'", "'<c8' is not supported"
    yield "npy_descr_long.npy", npy(npy_dict(descr="'" + "x" * 3000 + "'"), f4x2), "a descr of 3000 characters", "more characters"
    yield "npy_descr_control.npy", npy(npy_dict(descr="'<f4\n\r\x00'"), f4x2), "a descr with \\n, \\r, NUL", "'<f4\\n\\r\\u0000'"
    yield "npy_big_endian.npy", npy(npy_dict(descr="'>f4'"), f4x2), "big-endian", "is big-endian"
    yield "npy_fortran.npy", npy(npy_dict(fortran="True", shape="(2, 1)"), f4x2), "Fortran order", "fortran_order: is True"
    yield "npy_fortran_not_bool.npy", npy(npy_dict(fortran="'yes'"), f4x2), "fortran_order 'yes'", "is 'yes'; expected True or False"
    yield "npy_shape_negative.npy", npy(npy_dict(shape="(2, -3)"), f4x2), "a negative axis", "expected a tuple of non-negative integers"
    yield "npy_shape_not_tuple.npy", npy(npy_dict(shape="6"), f4x2), "shape 6", "expected a tuple of non-negative integers"
    yield "npy_shape_huge_number.npy", npy(npy_dict(shape="(99999999999999999999,)"), f4x2), "an axis 10^20", "expected a tuple of non-negative integers"
    yield "npy_shape_overflow.npy", npy(npy_dict(shape="(1099511627776, 1099511627776, 1099511627776)")), "shape (2^40, 2^40, 2^40)", "truncated"
    yield "npy_truncated.npy", npy(npy_dict(), f4x2[:5]), "5 of 8 data bytes", "truncated"
    yield "npy_trailing.npy", npy(npy_dict(), f4x2 + b"\0"), "a byte after the data", "has trailing bytes"
    yield "npy_v3_not_utf8.npy", npy(b"{'descr': '<f4\xff', 'fortran_order': False, 'shape': (2,), }", f4x2, version=3), "v3 header not UTF-8", "not valid UTF-8"


# ----------------------------------------------------------------------------------------------


def cmd_write(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    files = {}

    def put(name, data, entry):
        if name in files:
            raise SystemExit(f"make_hostile_corpus.py: {name} twice")
        if len(data) > 16 * 1024:
            raise SystemExit(f"make_hostile_corpus.py: {name} is {len(data)} bytes; keep corpus files small")
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        files[name] = entry

    for name, data, about, (ts, py) in safetensors_cases():
        put(name, data, {"about": about, "expect": "refuse", "ts": ts, "py": py})
    for name, data, about in safetensors_valid():
        put(name, data, {"about": about, "expect": "accept"})
    for name, data, about, ts in npy_cases():
        put(name, data, {"about": about, "expect": "refuse", "ts": ts})
    manifest = {
        "note": "Written by tools/make_hostile_corpus.py write; do not edit by hand. .npy files are read by the TypeScript reader only.",
        "files": dict(sorted(files.items())),
    }
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=True)
        f.write("\n")


def cmd_check(paths):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from saw_int4_reference import read_safetensors  # noqa: E402 (needs numpy)

    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".safetensors"))
        else:
            files.append(path)
    results, crashed = {}, 0
    for path in files:
        try:
            tensors, _ = read_safetensors(path)
            results[os.path.basename(path)] = {"outcome": "accepted", "tensors": len(tensors)}
        except ValueError as err:
            results[os.path.basename(path)] = {"outcome": "refused", "message": str(err)}
        except Exception as err:  # noqa: BLE001 (a crash is what this looks for)
            crashed += 1
            results[os.path.basename(path)] = {"outcome": "crashed", "message": f"{type(err).__name__}: {str(err)[:500]}"}
    print(json.dumps(results, indent=1, ensure_ascii=True))
    return 1 if crashed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write the corpus")
    w.add_argument("--dir", required=True)
    c = sub.add_parser("check", help="read safetensors files with tools/saw_int4_reference.py")
    c.add_argument("paths", nargs="+")
    args = ap.parse_args()
    if args.cmd == "write":
        cmd_write(args.dir)
        return 0
    return cmd_check(args.paths)


if __name__ == "__main__":
    sys.exit(main())
