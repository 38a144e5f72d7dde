"""Reading and writing: round trips, model facts, agreement with the C++ tools' output."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import mqkv

LOSSY = "affine_seven_level_3bit_g64_meta4"


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dt = {"F16": np.float16, "F32": np.float32, "I32": np.int32, "BF16": np.uint16}[t["dtype"]]
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype=dt).reshape(t["shape"])
    return out


def write_two_layers(path, rows, codec_v=LOSSY):
    m = mqkv.Model()
    m.architecture, m.n_layer, m.n_head, m.n_head_kv, m.head_dim_k, m.head_dim_v = "llama", 2, 9, 3, 64, 64
    m.rope_type, m.rope_base, m.k_rope = "norm", 100000.0, "post"
    m.tokens = list(range(1, 97))
    m.metadata = {"purpose": "test"}
    arrays = {}
    with mqkv.Writer(path, model=m) as w:
        for layer in range(2):
            k, v = rows(seed=2 * layer), rows(seed=2 * layer + 1)
            w.add(layer, "k", k)
            w.add(layer, "v", v, codec=codec_v)
            arrays[(layer, "k")], arrays[(layer, "v")] = k, v
    return m, arrays


def test_model_facts_and_tensors_round_trip(tmp_path, rows):
    p = tmp_path / "a.mqkv"
    m, arrays = write_two_layers(p, rows)
    with mqkv.open(p) as s:
        got = s.model
        assert got.architecture == "llama" and got.n_head_kv == 3 and got.rope_base == 100000.0 and got.k_rope == "post"
        assert got.tokens.dtype == np.int32 and got.tokens.tolist() == list(range(1, 97))
        assert got.metadata == {"purpose": "test"}
        assert [(t.layer, t.kind) for t in s.tensors] == [(0, "k"), (0, "v"), (1, "k"), (1, "v")]
        t = s.find(1, "k")
        assert t.shape == (96, 3, 64) and t.codec == "f16" and t.source_dtype == "f16"
        assert t.stored_bytes >= 96 * 3 * 64 * 2 + 128
        assert s.find(5, "k") is None
        # f16 in, f16 codec: exactly the input, in its own dtype by default
        k = s.decode(1, "k")
        assert k.dtype == np.float16 and np.array_equal(k, arrays[(1, "k")])
        # lossy V decodes to its source dtype (f16) by default
        v = s.decode(0, "v")
        assert v.dtype == np.float16 and v.shape == (96, 3, 64)
        assert not np.array_equal(v, arrays[(0, "v")])
        rel = np.sum((v.astype(np.float64) - arrays[(0, "v")]) ** 2) / np.sum(arrays[(0, "v")].astype(np.float64) ** 2)
        assert rel < 0.1  # 0.051 measured


def test_row_ranges_match_the_whole(tmp_path, rows):
    p = tmp_path / "a.mqkv"
    write_two_layers(p, rows)
    with mqkv.open(p) as s:
        whole = s.decode(0, "v", dtype="float32")
        for sl in (slice(0, 10), slice(17, 64), slice(-5, None), slice(None, 1), slice(40, 40)):
            assert np.array_equal(s.decode(0, "v", rows=sl, dtype="float32"), whole[sl])


def test_dtypes_agree(tmp_path, rows):
    p = tmp_path / "a.mqkv"
    write_two_layers(p, rows)
    with mqkv.open(p) as s:
        f32 = s.decode(0, "v", dtype="float32")
        f16 = s.decode(0, "v", dtype=np.float16)
        bf16 = s.decode(0, "v", dtype="bfloat16")
        assert f16.dtype == np.float16 and bf16.dtype == np.uint16  # numpy has no bfloat16: bits
        assert np.array_equal(f16, f32.astype(np.float16))
        # bf16 bits: round to nearest even of the f32 value
        u = f32.view(np.uint32).astype(np.uint64)
        want = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        assert np.array_equal(bf16, want)


def test_backends_are_bit_identical(tmp_path, rows):
    p = tmp_path / "a.mqkv"
    write_two_layers(p, rows)
    with mqkv.open(p) as s:
        a = s.decode(1, "v", dtype="float32", backend="scalar")
        b = s.decode(1, "v", dtype="float32", backend="simd")
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_writer_matches_mqconvert_bytes(tmp_path, rows, tool):
    """The same tensors written by mqkv.Writer and by mqconvert (from a safetensors of them) give the
    same decoded values; mqkv.convert and mqconvert give byte-identical files."""
    p = tmp_path / "a.mqkv"
    write_two_layers(p, rows, codec_v="f16")
    st = tmp_path / "a.safetensors"
    tool("mqconvert", "-q", p, st)
    ours, theirs = tmp_path / "ours.mqkv", tmp_path / "theirs.mqkv"
    mqkv.convert(str(st), str(ours), codec=LOSSY, zstd=3)
    tool("mqconvert", "-q", st, theirs, "--codec", LOSSY, "--zstd", "3")
    assert ours.read_bytes() == theirs.read_bytes()
    back = tmp_path / "back.safetensors"
    tool("mqconvert", "-q", theirs, back)
    ref = read_safetensors(back)
    with mqkv.open(ours) as s:
        for t in s.tensors:
            assert np.array_equal(s.decode(t.layer, t.kind, dtype="float16"), ref[f"layers.{t.layer}.{t.kind}"])


def test_convert_summary_and_options(tmp_path, rows):
    p = tmp_path / "a.mqkv"
    write_two_layers(p, rows)
    out = tmp_path / "b.mqkv"
    sm = mqkv.convert(str(p), str(out), k_codec="f16", v_codec="turbo3", tokens=(8, 40), threads=2)
    assert sm["tokens"] == 32 and sm["layers"] == 2 and sm["dst_format"] == "mqkv"
    assert sm["v_codec"].startswith("codebook:bits=3")
    with mqkv.open(out) as s:
        assert s.model.tokens.tolist() == list(range(9, 41))
    with pytest.raises(mqkv.InvalidArgument, match="--dtype applies to safetensors"):
        mqkv.convert(str(p), str(tmp_path / "c.mqkv"), dtype="f16")
    with pytest.raises(mqkv.InvalidArgument, match="codec"):
        mqkv.convert(str(p), str(tmp_path / "c.mqkv"), codec="affine:bits=99")
    assert not (tmp_path / "c.mqkv").exists()


def test_query_tensors_need_positions(tmp_path, rows):
    p = tmp_path / "q.mqkv"
    with mqkv.Writer(p) as w:
        w.add(0, "k", rows(t=16))
        w.add(0, "v", rows(t=16))
        w.add(0, "q", rows(t=2, h=9), positions=[3, 15], codec="f32")
    with mqkv.open(p) as s:
        assert s.find(0, "q").shape == (2, 9, 64)
        assert s.find(0, "q").positions == (3, 15)
        assert s.find(0, "k").positions == ()


def test_an_abandoned_writer_leaves_the_old_file(tmp_path, rows):
    p = tmp_path / "keep.mqkv"
    write_two_layers(p, rows)
    before = p.read_bytes()
    with pytest.raises(RuntimeError):
        with mqkv.Writer(p) as w:
            w.add(0, "k", rows())
            raise RuntimeError("caller failed half-way")
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.mqkv"]  # no temporary file left behind
