"""verify() is mqverify --json; quantize() is the real writer and reader; CodecSpec is the parser."""
from __future__ import annotations

import json

import numpy as np
import pytest

import mqkv


def test_verify_is_mqverify_json(sample, tmp_path, tool):
    lossy = tmp_path / "s3.mqkv"
    mqkv.convert(str(sample), str(lossy), codec="affine_seven_level_3bit_g64_meta4")
    ours = mqkv.verify(str(lossy), reference=str(sample))
    theirs = json.loads(tool("mqverify", "--json", lossy, "--reference", sample).stdout)
    assert ours == theirs
    assert ours["checksums_ok"] and ours["accounting_ok"] and ours["backends_ok"]
    assert 0.8 < ours["fidelity"]["attention"]["mean_output_cosine"] < 1.0  # 0.896 measured
    plain = mqkv.verify(str(sample), positions=[0.5, 1.0], backends="scalar")
    assert plain["fidelity"] is None and [b["backend"] for b in plain["backends"]] == ["scalar"]


def test_quantize_is_what_a_file_stores(tmp_path, rows):
    a = rows(t=200, h=3, d=64, dtype=np.float32)
    codec = "affine:bits=2,group=64,meta=8,sinks=4"
    q = mqkv.quantize(a, codec)
    p = tmp_path / "q.mqkv"
    with mqkv.Writer(p) as w:
        w.add(0, "k", a, codec=codec)
    with mqkv.open(p) as s:
        assert q.stored_bytes == s.tensors[0].stored_bytes
        assert np.array_equal(q.array, s.decode(0, "k", dtype="float32"))
    assert q.array.shape == a.shape and q.array.dtype == np.float32
    assert q.bits_per_value == pytest.approx(8 * q.stored_bytes / a.size)
    assert q.info["codec"] == str(mqkv.CodecSpec(codec))
    assert sum(q.info["breakdown"].values()) == q.stored_bytes
    # a 2-D input is one head; the output keeps the input's shape
    q2 = mqkv.quantize(a[:, 0, :], "turbo3", dtype="float16")
    assert q2.array.shape == (200, 64) and q2.array.dtype == np.float16
    # the real bits are below fp16's 16 and above the 3 code bits
    assert 3.0 < q2.bits_per_value < 16.0


def test_codec_spec():
    s = mqkv.CodecSpec.parse("affine_seven_level_3bit_g64_meta4")
    assert s.codec == "affine" and s.bits == 3 and s.group == 64 and s.meta_bits == 4
    assert mqkv.CodecSpec.parse(str(s)) == s
    assert "turbo3" in mqkv.presets() and "affine_seven_level_3bit_g64_meta4" in mqkv.CodecSpec.presets()
    assert str(mqkv.CodecSpec("f16")) == "f16"
    fit = mqkv.CodecSpec.parse("codebook:bits=2,levels=-1/-0.3/0.3/1,fit=lloyd")
    assert fit.fit == "lloyd" and s.fit == "none" and str(fit).endswith(",fit=lloyd")
    assert mqkv.active_simd_arch() in mqkv.simd_archs()


def test_rate_control_meets_its_target(sample, tmp_path):
    out = tmp_path / "rate.mqkv"
    summary = mqkv.convert(str(sample), str(out), k_codec="affine:group=64,meta=4,axis=channel,entropy=rans",
                           v_codec="affine:group=64,meta=4,rotate=hadamard,entropy=rans", target_bits=2.6,
                           rate_queries="proxy")
    assert summary["k_codec"].startswith("rate-controlled affine:")
    report = mqkv.verify(str(out))
    assert report["total"]["actual_bits_per_dim"] <= 2.6
    with mqkv.open(out) as s:
        meta = s.model.metadata
        assert meta["mqkv.rate_control"].startswith("target_bits=2.6;distortion=attention;queries=proxy-key;")
        assert len({t.codec for t in s.tensors if t.kind != "q"}) > 2  # level counts chosen per tensor
    with pytest.raises(ValueError, match="entropy=rans"):
        mqkv.convert(str(sample), str(tmp_path / "bad.mqkv"), codec="affine:bits=3,group=64", target_bits=2.6)
    assert not (tmp_path / "bad.mqkv").exists()
