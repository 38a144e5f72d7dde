"""Hugging Face transformers caches (mqkv.hf) and cross-engine snapshots (llama.cpp <-> transformers),
on the real SmolLM2-135M GGUF loaded in both engines. Needs scripts/setup-hf.sh (torch,
transformers, gguf, accelerate) and scripts/setup-engine.sh (llama-cpp-python, the GGUF)."""
from __future__ import annotations

import copy
import os
import pathlib
import sys

import numpy as np
import pytest

import mqkv

ROOT = pathlib.Path(__file__).resolve().parents[2]
if os.environ.get("MQKV_SKIP_HF") == "1":
    pytest.skip("MQKV_SKIP_HF=1: transformers tests skipped", allow_module_level=True)
torch = pytest.importorskip("torch", reason="torch is not installed (scripts/setup-hf.sh)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (scripts/setup-hf.sh)")
import mqkv.hf  # noqa: E402

TEXT = ROOT / "data" / "texts" / "pride-and-prejudice-ch1.txt"
LOSSY = ("affine_seven_level_3bit_g64_meta4", "turbo3")


sys.path.insert(0, str(ROOT / "python"))


def kl(ref, got):
    import mqkv_engine as eng
    return eng.agreement(ref, got)[0]


@pytest.fixture(scope="module")
def hf():
    if os.environ.get("MQKV_SKIP_ENGINE") == "1":
        pytest.skip("MQKV_SKIP_ENGINE=1: the SmolLM2 GGUF and llama.cpp are not set up")
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup-engine.sh)")
    sys.path.insert(0, str(ROOT / "python"))
    import mqkv_engine as eng
    import mqkv.llama  # noqa: F401
    gguf = eng.default_model()
    if not os.path.exists(gguf):
        pytest.fail(f"{gguf} is missing: run scripts/setup-engine.sh")
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    model.eval()
    llm = eng.load(gguf, n_ctx=512)
    toks = llm.tokenize(TEXT.read_text(encoding="utf-8").encode(), add_bos=True)[:240]
    prefix, cont = toks[:200], toks[200:]

    def run(ids, cache=None):
        with torch.no_grad():
            out = model(torch.tensor([ids]), cache=cache, use_cache=True)
        return out.logits[0].float().numpy(), out.cache

    _, cache = run(prefix)
    ref, _ = run(cont, copy.deepcopy(cache))
    return dict(eng=eng, gguf=gguf, model=model, llm=llm, prefix=prefix, cont=cont, run=run, cache=cache, ref=ref)


def test_lossless_round_trip_is_bit_identical(hf, tmp_path):
    p = tmp_path / "hf.mqkv"
    mqkv.hf.save_cache(hf["cache"], str(p), config=hf["model"].config, tokens=hf["prefix"])
    with mqkv.open(p) as s:
        m = s.model
        assert (m.architecture, m.n_layer, m.n_head_kv, m.head_dim_k, m.rope_type, m.k_rope) == \
            ("llama", 30, 3, 64, "neox", "post")
        assert m.source_engine == "transformers" and m.tokens.tolist() == hf["prefix"]
        assert s.tensors[0].codec == "f32" and s.tensors[0].shape == (200, 3, 64)
    cache = mqkv.hf.load_cache(str(p), config=hf["model"].config, dtype=hf["model"].dtype)
    assert cache.get_seq_length() == 200
    got, _ = hf["run"](hf["cont"], cache)
    assert np.array_equal(got, hf["ref"])


def test_generate_continues_from_a_loaded_cache(hf, tmp_path):
    """model.generate from a restored lossless cache gives the tokens it gives from its own."""
    model, prefix = hf["model"], hf["prefix"]
    p = tmp_path / "g.mqkv"
    mqkv.hf.save_cache(hf["cache"], str(p), config=model.config)
    ids = torch.tensor([prefix + hf["cont"][:1]])
    with torch.no_grad():
        own = model.generate(ids, cache=copy.deepcopy(hf["cache"]), max_new_tokens=8, do_sample=False)
        got = model.generate(ids, cache=mqkv.hf.load_cache(str(p), config=model.config),
                             max_new_tokens=8, do_sample=False)
    assert got.shape == (1, len(prefix) + 9) and torch.equal(got, own)


@pytest.mark.parametrize("codec", LOSSY)
def test_lossy_round_trip_is_close(hf, tmp_path, codec):
    p = tmp_path / "lossy.mqkv"
    mqkv.hf.save_cache(hf["cache"], str(p), config=hf["model"].config, codec=codec)
    got, _ = hf["run"](hf["cont"], mqkv.hf.load_cache(str(p), config=hf["model"].config))
    d = kl(hf["ref"], got)
    assert 0 < d < 0.3, d  # 0.088 (3-bit main preset) and 0.042 (turbo3) measured
    assert np.mean(got.argmax(1) == hf["ref"].argmax(1)) >= 0.7


def test_llama_cpp_snapshot_continues_in_transformers(hf, tmp_path):
    """llama.cpp's K is paired norm (its GGUF permuted the K projection): load_cache re-pairs it;
    the continuation is as close to transformers' own as the two engines' arithmetic allows, far
    closer than a lossy codec, and far from what the unpermuted K gives."""
    eng, llm = hf["eng"], hf["llm"]
    llm.reset()
    eng.evaluate(llm, hf["prefix"])
    p = tmp_path / "ll.mqkv"
    mqkv.llama.save(llm, str(p))
    assert mqkv.open(p).model.rope_type == "norm"
    got, _ = hf["run"](hf["cont"], mqkv.hf.load_cache(str(p), config=hf["model"].config))
    d = kl(hf["ref"], got)
    assert d < 0.01, d  # 6e-4 measured; the 3-bit preset: 0.088
    wrong, _ = hf["run"](hf["cont"], mqkv.hf.load_cache(str(p), config=hf["model"].config, rope_type="norm"))
    assert kl(hf["ref"], wrong) > 100 * d


def test_transformers_snapshot_restores_into_llama_cpp(hf, tmp_path):
    eng, llm = hf["eng"], hf["llm"]
    llm.reset()
    eng.evaluate(llm, hf["prefix"])
    own = eng.evaluate(llm, hf["cont"])  # llama.cpp continuing from its own cache
    p = tmp_path / "hf.mqkv"
    mqkv.hf.save_cache(hf["cache"], str(p), config=hf["model"].config, tokens=hf["prefix"])
    dst = eng.load(hf["gguf"], n_ctx=512)
    assert mqkv.llama.load(dst, str(p)) == hf["prefix"]  # f32 K/V written as the context's f16, K re-paired
    got = eng.evaluate(dst, hf["cont"])
    d = kl(own, got)
    assert d < 0.02, d  # 2.9e-3 measured (the two engines' own logits differ by 2.3e-3)
    assert np.mean(got.argmax(1) == own.argmax(1)) >= 0.85


def test_repair_is_a_permutation_and_its_own_inverse():
    x = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)
    n = mqkv.hf.repair_rope_dims(x, "norm")
    assert n[0, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert np.array_equal(mqkv.hf.repair_rope_dims(n, "neox"), x)
    t = torch.from_numpy(x)
    assert torch.equal(mqkv.hf.repair_rope_dims(t, "norm"), torch.from_numpy(n))
    with pytest.raises(mqkv.InvalidArgument):
        mqkv.hf.repair_rope_dims(np.zeros((2, 5), np.float32), "norm")
    with pytest.raises(mqkv.InvalidArgument):
        mqkv.hf.repair_rope_dims(x, "mrope")


def test_bad_inputs_are_errors(tmp_path):
    with pytest.raises(mqkv.InvalidArgument, match="no .layers"):
        mqkv.hf.save_cache(object(), str(tmp_path / "x.mqkv"), config=None)
    assert not (tmp_path / "x.mqkv").exists()
    cfg = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   hidden_size=64, intermediate_size=64, vocab_size=32)
    cache = transformers.DynamicCache(config=cfg)
    for i in range(2):
        cache.update(torch.randn(1, 2, 5, 16), torch.randn(1, 2, 5 if i == 0 else 4, 16), i)
    target = tmp_path / "keep.mqkv"
    target.write_bytes(b"old")
    with pytest.raises(mqkv.InvalidArgument, match="holds 4 tokens"):
        mqkv.hf.save_cache(cache, str(target), config=cfg)
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["keep.mqkv"]
    ok = transformers.DynamicCache(config=cfg)
    for i in range(2):
        ok.update(torch.randn(1, 2, 5, 16, dtype=torch.bfloat16), torch.randn(1, 2, 5, 16, dtype=torch.bfloat16), i)
    mqkv.hf.save_cache(ok, str(target), config=cfg)
    back = mqkv.hf.load_cache(str(target), config=cfg, dtype=torch.bfloat16)
    assert torch.equal(back.layers[1].keys, ok.layers[1].keys)  # bf16 stored raw: exact
    bare = tmp_path / "bare.mqkv"  # no config: the facts the tensors give
    mqkv.hf.save_cache(ok, str(bare))
    m = mqkv.open(bare).model
    assert (m.n_layer, m.n_head_kv, m.head_dim_k, m.rope_type, m.architecture) == (2, 2, 16, "neox", "")
    small = transformers.LlamaConfig(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                     hidden_size=64, intermediate_size=64, vocab_size=32)
    with pytest.raises(mqkv.InvalidArgument, match="the model has 3"):
        mqkv.hf.load_cache(str(target), config=small)


def test_readme_example(hf, tmp_path, monkeypatch):
    """The README's transformers example runs as written, with the model and a llama.cpp context
    holding the same prefix in scope."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from test_readme import all_blocks
    code = [b for b in all_blocks() if "mqkv.hf" in b]
    assert len(code) == 1
    eng, llm = hf["eng"], hf["llm"]
    llm.reset()
    eng.evaluate(llm, hf["prefix"])
    monkeypatch.chdir(tmp_path)
    ns = {"mqkv": mqkv, "model": hf["model"], "llm": llm, "input_ids": torch.tensor([hf["prefix"]]),
          "next_ids": torch.tensor([hf["cont"]])}
    exec(compile(code[0], "README.md transformers block", "exec"), ns)
    assert ns["cache"].get_seq_length() == len(hf["prefix"])
    assert mqkv.open("hf.mqkv").model.tokens.tolist() == hf["prefix"]
