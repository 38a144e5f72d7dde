"""llama.cpp in memory (mqkv.llama): save a sequence, restore it into a fresh context, continue.
Needs the engine venv (scripts/setup-engine.sh: pinned llama-cpp-python and the SmolLM2 GGUF)."""
from __future__ import annotations

import os
import pathlib
import sys

import numpy as np
import pytest

import mqkv

ROOT = pathlib.Path(__file__).resolve().parents[2]
if os.environ.get("MQKV_SKIP_ENGINE") == "1":
    pytest.skip("MQKV_SKIP_ENGINE=1: llama.cpp tests skipped", allow_module_level=True)
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup-engine.sh)")
sys.path.insert(0, str(ROOT / "python"))
import mqkv_engine as eng  # noqa: E402
import mqkv.llama  # noqa: E402

TEXT = ROOT / "data" / "texts" / "pride-and-prejudice-ch1.txt"


@pytest.fixture(scope="module")
def run():
    model = eng.default_model()
    if not os.path.exists(model):
        pytest.fail(f"{model} is missing: run scripts/setup-engine.sh")
    llm = eng.load(model, n_ctx=512)
    toks = llm.tokenize(TEXT.read_text(encoding="utf-8").encode(), add_bos=True)[:240]
    prefix, cont = toks[:200], toks[200:]
    eng.evaluate(llm, prefix)
    ref = eng.evaluate(llm, cont)  # continuing in the same context: the reference logits
    return model, prefix, cont, ref


def fresh(model):
    return eng.load(model, n_ctx=512)


def kl(ref, got):
    return eng.agreement(ref, got)[0]


def test_lossless_round_trip_is_bit_identical(run, tmp_path):
    model, prefix, cont, ref = run
    src = fresh(model)
    eng.evaluate(src, prefix)
    path = tmp_path / "p.mqkv"
    mqkv.llama.save(src, str(path))
    with mqkv.open(path) as s:
        m = s.model
        assert m.architecture == "llama" and m.n_head_kv == 3 and m.head_dim_k == 64 and m.k_rope == "post"
        assert m.tokens.tolist() == prefix and s.tensors[0].codec == "f16"
    dst = fresh(model)
    assert mqkv.llama.load(dst, str(path)) == prefix
    assert np.array_equal(eng.evaluate(dst, cont), ref)


def test_keys_before_rope_round_trip(run, tmp_path):
    # The 2.3-bit point of the frontier (K stored before RoPE, format 1.4): mqkv.llama.save takes
    # the RoPE type and base from the model, which a llama.cpp state file does not record.
    model, prefix, cont, ref = run
    src = fresh(model)
    eng.evaluate(src, prefix)
    path = tmp_path / "pre.mqkv"
    mqkv.llama.save(src, str(path), k_codec="affine:levels=6,group=128,meta=8,axis=channel,entropy=rans,sinks=1,prerope=1",
                    v_codec="affine:levels=5,group=64,meta=4,rotate=hadamard,entropy=rans,sinks=1")
    with mqkv.open(str(path)) as snap:
        k = [t for t in snap.tensors if t.kind == "k"]
        assert k and all("prerope=1" in t.codec for t in k)
        assert snap.model.rope_type == "norm" and snap.model.rope_base > 0
        snap_base = snap.model.rope_base
    dst = fresh(model)
    mqkv.llama.load(dst, str(path))
    got = eng.evaluate(dst, cont)
    d = kl(ref, got)
    assert 0 < d < 0.5, d
    # From a llama.cpp sequence file (no RoPE facts in it): refused without them, kept with them.
    seq, again = tmp_path / "seq.bin", tmp_path / "again.mqkv"
    mqkv.convert(str(path), str(seq), dst_format="llama-seq")
    pre_k = "affine:levels=6,group=128,meta=8,axis=channel,entropy=rans,sinks=1,prerope=1"
    with pytest.raises(mqkv.Error, match="RoPE"):
        mqkv.convert(str(seq), str(again), k_codec=pre_k, v_codec="f16")
    assert not again.exists()
    mqkv.convert(str(seq), str(again), k_codec=pre_k, v_codec="f16", rope_type="norm", rope_base=snap_base)


def test_restore_through_a_kept_buffer(run, tmp_path):
    """A StateBuffer is filled in place on every restore (no new array once it is large enough),
    gives the same bytes as a fresh restore on any thread count, and the continuation stays
    bit-identical; a buffer too small for the state is replaced by a larger one."""
    model, prefix, cont, ref = run
    src = fresh(model)
    eng.evaluate(src, prefix)
    path = tmp_path / "b.mqkv"
    mqkv.llama.save(src, str(path))
    small = tmp_path / "small.mqkv"
    mqkv.llama.save(src, str(small), codec="affine_seven_level_3bit_g64_meta4")
    fresh_bytes, toks = mqkv.llama.restore_bytes(str(path), threads=1)
    assert toks == prefix
    buf = mqkv.llama.StateBuffer()
    buf.array = np.zeros(10, dtype=np.uint8)  # too small: replaced
    got, _ = mqkv.llama.restore_bytes(str(path), buffer=buf)
    assert buf.array.size == fresh_bytes.size and np.array_equal(got, fresh_bytes)
    kept = buf.array
    kept[:] = 0xA5  # every byte is written again
    got, _ = mqkv.llama.restore_bytes(str(path), buffer=buf, threads=3)
    assert buf.array is kept and np.shares_memory(got, kept) and np.array_equal(got, fresh_bytes)
    dst = fresh(model)
    assert mqkv.llama.load(dst, str(small), buffer=buf) == prefix  # a smaller state: a prefix of the same buffer
    assert buf.array is kept
    assert mqkv.llama.load(dst, str(path), buffer=buf) == prefix
    assert np.array_equal(eng.evaluate(dst, cont), ref)


def test_lossy_round_trip_is_close(run, tmp_path):
    model, prefix, cont, ref = run
    src = fresh(model)
    eng.evaluate(src, prefix)
    path = tmp_path / "p3.mqkv"
    mqkv.llama.save(src, str(path), codec="affine_seven_level_3bit_g64_meta4")
    dst = fresh(model)
    mqkv.llama.load(dst, str(path))
    got = eng.evaluate(dst, cont)
    d = kl(ref, got)
    assert 0 < d < 0.5, d
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.6  # 0.70 measured (40 tokens)


def test_saved_bytes_match_the_engine_file_path(run, tmp_path, tool):
    """In memory and through llama.cpp's own sequence file + mqconvert give the same snapshot K/V."""
    model, prefix, _, _ = run
    src = fresh(model)
    eng.evaluate(src, prefix)
    mem = tmp_path / "mem.mqkv"
    mqkv.llama.save(src, str(mem))
    seq = tmp_path / "seq.bin"
    eng.save_seq(src, str(seq), prefix)
    viafile = tmp_path / "file.mqkv"
    tool("mqconvert", "-q", seq, viafile, "--head-dim-k", "64")
    with mqkv.open(mem) as a, mqkv.open(viafile) as b:
        assert len(a.tensors) == len(b.tensors)
        for t in a.tensors:
            assert np.array_equal(a.decode(t.layer, t.kind), b.decode(t.layer, t.kind))


def test_refuses_a_state_of_another_shape(run, tmp_path, rows):
    model, _, _, _ = run
    p = tmp_path / "wrong.mqkv"
    m = mqkv.Model()
    m.tokens = list(range(16))
    with mqkv.Writer(p, model=m) as w:
        w.add(0, "k", rows(t=16, h=1, d=8))
        w.add(0, "v", rows(t=16, h=1, d=8))
    with pytest.raises(mqkv.Error):
        mqkv.llama.load(fresh(model), str(p))


def test_readme_example(run, tmp_path, monkeypatch):
    """The README's llama.cpp example runs as written (gguf and prompt_tokens in scope)."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from test_readme import all_blocks
    code = [b for b in all_blocks() if "import llama_cpp" in b]
    assert len(code) == 1
    model, prefix, cont, ref = run
    monkeypatch.chdir(tmp_path)
    ns = {"gguf": model, "prompt_tokens": prefix}
    exec(compile(code[0], "README.md llama.cpp block", "exec"), ns)
    assert ns["fresh"].n_tokens == len(prefix)
    assert mqkv.open("prefix.mqkv").model.tokens.tolist() == prefix
