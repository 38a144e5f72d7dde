"""Raw blocks come back as read-only views of the mapped file: no copy, no allocation."""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import mqkv


@pytest.fixture
def raw_file(tmp_path, rows):
    p = tmp_path / "raw.mqkv"
    k = rows(t=4096, h=4, d=128)  # 4 MiB of f16
    with mqkv.Writer(p) as w:
        w.add(0, "k", k, codec="f16")
        w.add(0, "v", k.astype(np.float32), codec="f32")
    return p, k


def test_raw_f16_is_a_view_into_the_file(raw_file):
    p, k = raw_file
    with mqkv.open(p) as s:
        a = s.decode(0, "k")
        b = s.decode(0, "k", rows=slice(100, 200))
        assert a.dtype == np.float16 and np.array_equal(a, k)
        assert not a.flags.writeable and s.is_view(a)
        assert np.shares_memory(a[100:200], b)          # both point into the same mapping
        with pytest.raises(ValueError):
            a[0, 0, 0] = 1.0
        c = s.decode(0, "k", copy=True)
        assert c.flags.writeable and not np.shares_memory(a, c) and np.array_equal(a, c)
        # asking another dtype decodes (a copy)
        assert s.decode(0, "k", dtype="float32").flags.writeable


def test_view_allocates_nothing(raw_file):
    p, _ = raw_file
    with mqkv.open(p) as s:
        s.decode(0, "k", rows=slice(0, 1))  # first access checks the block (header, checksum)
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            a = s.decode(0, "k")
            b = s.decode(0, "v")
            now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert a.nbytes + b.nbytes == 4096 * 4 * 128 * 6
        assert peak - base < 64 * 1024, f"a zero-copy decode allocated {peak - base} bytes"
        # the probe does see an allocation of that size
        tracemalloc.start()
        try:
            c = np.empty_like(a)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak >= c.nbytes


def test_view_outlives_close(raw_file):
    p, k = raw_file
    s = mqkv.open(p)
    a = s.decode(0, "k")
    s.close()
    del s
    gc.collect()
    assert np.array_equal(a, k)  # the array keeps the file mapped


def test_dlpack_without_copy(raw_file):
    p, k = raw_file
    with mqkv.open(p) as s:
        a = s.decode(0, "v")
        d = np.from_dlpack(a)
        assert np.shares_memory(a, d) and np.array_equal(d, k.astype(np.float32))
        assert hasattr(a, "__dlpack__") and a.__dlpack_device__() == (1, 0)  # kDLCPU


def test_compressed_and_split_blocks_are_copies(tmp_path, rows):
    k = rows(t=256)
    z = tmp_path / "z.mqkv"
    with mqkv.Writer(z, zstd=3) as w:
        w.add(0, "k", np.round(k), codec="f16")  # few distinct values: zstd saves bytes and is kept
    with mqkv.open(z) as s:
        assert s.decode(0, "k").flags.writeable              # zstd: decoded copy
    p = tmp_path / "split.mqkv"
    with mqkv.Writer(p, max_block_tokens=64) as w:
        w.add(0, "v", k, codec="f16")
    with mqkv.open(p) as s:
        assert not s.decode(0, "v", rows=slice(64, 128)).flags.writeable  # inside one block: view
        whole = s.decode(0, "v")                               # spans 4 blocks: a copy
        assert whole.flags.writeable and np.array_equal(whole, k)
