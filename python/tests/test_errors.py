"""Errors: Python exceptions mapped from the library's status codes, naming the file and offset."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import mqkv


def test_hierarchy():
    assert issubclass(mqkv.ChecksumMismatch, mqkv.FormatError) and issubclass(mqkv.FormatError, mqkv.Error)
    assert issubclass(mqkv.InvalidArgument, ValueError) and issubclass(mqkv.OutOfRange, IndexError)
    assert issubclass(mqkv.IoError, OSError)


def test_missing_file(tmp_path):
    with pytest.raises(mqkv.IoError) as e:
        mqkv.open(tmp_path / "nope.mqkv")
    assert e.value.code == "io_error" and e.value.file == str(tmp_path / "nope.mqkv")
    assert str(tmp_path / "nope.mqkv") in str(e.value)


def test_not_a_snapshot(tmp_path):
    p = tmp_path / "junk.mqkv"
    p.write_bytes(b"not an mqkv file at all" * 10)
    with pytest.raises(mqkv.FormatError) as e:
        mqkv.open(p)
    assert e.value.file == str(p) and e.value.offset is not None


def test_corrupt_block_is_a_checksum_error(tmp_path, rows):
    p = tmp_path / "c.mqkv"
    with mqkv.Writer(p) as w:
        w.add(0, "k", rows(), codec="f16")
        w.add(0, "v", rows(), codec="affine:bits=2,group=64")
    b = bytearray(p.read_bytes())
    b[64 + 128 + 100] ^= 0x10  # inside the first block's payload
    p.write_bytes(bytes(b))
    with mqkv.open(p) as s:  # lazy: opening reads only header, footer and index
        with pytest.raises(mqkv.ChecksumMismatch) as e:
            s.decode(0, "k")
        assert e.value.code == "checksum_mismatch" and e.value.file == str(p)
        s.decode(0, "v")  # the other block is fine
    with pytest.raises(mqkv.ChecksumMismatch):
        mqkv.open(p, verify=True)
    report = mqkv.verify(str(p))
    assert not report["checksums_ok"] and len(report["checksum_errors"]) == 1


def test_bad_arguments(tmp_path, rows):
    p = tmp_path / "a.mqkv"
    with mqkv.Writer(p) as w:
        w.add(0, "k", rows())
        with pytest.raises(mqkv.InvalidArgument, match="codec"):
            w.add(0, "v", rows(), codec="affine:bits=99")
        with pytest.raises(mqkv.InvalidArgument, match="group_size=7"):
            w.add(0, "v", rows(), codec="affine:bits=3,group=7")
        with pytest.raises(mqkv.InvalidArgument, match="kind"):
            w.add(0, "x", rows())
        with pytest.raises(mqkv.InvalidArgument):
            w.add(1, "k", np.zeros((4, 64), dtype=np.int32))
        w.add(0, "v", rows())
    with mqkv.open(p) as s:
        with pytest.raises(mqkv.OutOfRange):
            s.decode(3, "k")
        with pytest.raises(mqkv.InvalidArgument, match="dtype"):
            s.decode(0, "k", dtype="int8")
        with pytest.raises(mqkv.InvalidArgument, match="step"):
            s.decode(0, "k", rows=slice(0, 10, 2))
    with pytest.raises(mqkv.InvalidArgument, match="closed"):
        s.decode(0, "k")
    with pytest.raises(mqkv.InvalidArgument):
        mqkv.CodecSpec.parse("nonsense")


def test_threads_decode_concurrently(tmp_path, rows):
    """Several Python threads decode one snapshot at once (the GIL is released): same results."""
    p = tmp_path / "t.mqkv"
    with mqkv.Writer(p) as w:
        for layer in range(4):
            w.add(layer, "k", rows(t=512, seed=layer), codec="hadamard_affine_four_level_2bit_g64_meta8")
            w.add(layer, "v", rows(t=512, seed=9 + layer), codec="affine_seven_level_3bit_g64_meta4")
    with mqkv.open(p) as s:
        want = {(t.layer, t.kind): s.decode(t.layer, t.kind, dtype="float32") for t in s.tensors}
        errors, results = [], {}

        def work(i):
            try:
                for _ in range(5):
                    for (layer, kind), w in want.items():
                        got = s.decode(layer, kind, dtype="float32")
                        if not np.array_equal(got, w):
                            errors.append((i, layer, kind))
                results[i] = True
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors and len(results) == 4


def test_decode_threads_give_the_same_rows(tmp_path, rows):
    """decode(threads=N) splits the rows over N threads (0: all cores): the same array for every N,
    for row ranges inside and across blocks; a negative count is refused."""
    p = tmp_path / "m.mqkv"
    with mqkv.Writer(p, max_block_tokens=300) as w:
        w.add(0, "k", rows(t=1000, seed=3), codec="affine_seven_level_3bit_g64_meta4")
        w.add(0, "v", rows(t=1000, seed=4), codec="turbo3")
    with mqkv.open(p) as s:
        for kind in ("k", "v"):
            for r in (None, slice(5, 990), slice(100, 260)):
                for dtype in ("float16", "float32"):
                    want = s.decode(0, kind, rows=r, dtype=dtype)
                    for n in (0, 2, 3, 16):
                        assert np.array_equal(s.decode(0, kind, rows=r, dtype=dtype, threads=n), want), (kind, r, dtype, n)
        with pytest.raises(mqkv.InvalidArgument, match="threads"):
            s.decode(0, "k", threads=-1)


def test_unavailable_simd_choice_is_a_python_warning(tmp_path):
    """MQKV_SIMD naming an ISA this machine lacks: the package raises a RuntimeWarning at import
    (the library itself prints nothing) and decodes with the best available ISA."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, MQKV_SIMD="avx1024")
    code = "import warnings, mqkv; print(mqkv.active_simd_arch())"
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning: MQKV_SIMD=avx1024 is not available on this machine" in r.stderr
    assert r.stderr.count("MQKV_SIMD=avx1024") == 1 and r.stdout.strip() in mqkv.simd_archs()
