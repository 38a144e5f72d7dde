"""Hugging Face transformers caches as mqkv snapshots, and back.

    import mqkv.hf
    out = model(input_ids, use_cache=True)
    mqkv.hf.save_cache(out.cache, "prefix.mqkv", config=model.config, tokens=input_ids[0])
    cache = mqkv.hf.load_cache("prefix.mqkv", config=model.config, dtype=model.dtype)
    model(next_ids, cache=cache)                      # continues from the restored prefix

A cache's layers (`cache.layers[i].keys` / `.values`, [batch, kv_heads, tokens, head_dim], K after
RoPE) become the snapshot's K/V tensors [tokens, kv_heads, head_dim] of one batch row. The model
facts come from the config; `rope_type` records how K's head dims are paired under RoPE:
transformers' rotate-half models are "neox" (halves), a snapshot taken from llama.cpp's llama
architecture is "norm" (adjacent pairs, because the GGUF conversion permuted the Q/K projection
rows). load_cache re-pairs K when the file's pairing is not the model's, so a snapshot dumped from
llama.cpp continues in transformers and one saved here restores into llama.cpp (mqkv.llama.load
does the inverse); spec/INTEROP.md "Cross-engine K layout" gives the permutation. torch and
transformers are imported only when these functions run.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import Model, Writer
from . import open as _open
from ._errors import InvalidArgument

__all__ = ["save_cache", "load_cache", "model_from_config", "repair_rope_dims"]

#: The K pairing of transformers' rotate-half RoPE (Llama, Mistral, Qwen2, SmolLM, ...).
HF_ROPE_TYPE = "neox"

_LOSSLESS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def _cfg(config: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default


def model_from_config(config: Any, *, tokens: Sequence[int] | None = None, rope_type: str = HF_ROPE_TYPE) -> Model:
    """The snapshot's model facts for a transformers config (a PretrainedConfig or anything with
    its attribute names): architecture (model_type), layers, heads, head dim, RoPE base."""
    import transformers

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    text = text if text is not None else object()  # no config: only what save_cache reads off the tensors
    m = Model()
    m.architecture = str(_cfg(text, "model_type", default=""))
    m.n_layer = int(_cfg(text, "num_hidden_layers", default=0))
    m.n_head = int(_cfg(text, "num_attention_heads", default=0))
    m.n_head_kv = int(_cfg(text, "num_key_value_heads", default=m.n_head))
    hidden = int(_cfg(text, "hidden_size", default=0))
    hd = int(_cfg(text, "head_dim", default=hidden // m.n_head if m.n_head else 0))
    m.head_dim_k = m.head_dim_v = hd
    rope = _cfg(text, "rope_parameters", default=None) or {}
    base = rope.get("rope_theta") if isinstance(rope, dict) else None
    m.rope_base = float(base if base is not None else _cfg(text, "rope_theta", default=0.0))
    m.rope_type = rope_type
    m.k_rope = "post"
    m.source_engine = "transformers"
    m.source_engine_version = transformers.__version__
    m.source_format = "hf-cache"
    if tokens is not None:
        m.tokens = [int(t) for t in tokens]
    return m


def repair_rope_dims(x: Any, to: str) -> Any:
    """K (any array or tensor [..., head_dim]) re-paired for RoPE: to="norm" maps halves to
    adjacent pairs (norm[2j+i] = neox[i*d/2 + j]), to="neox" the inverse. A new contiguous array."""
    d = x.shape[-1]
    if d % 2:
        raise InvalidArgument(f"an odd head_dim ({d}) cannot be re-paired for RoPE")
    lead = tuple(x.shape[:-1])
    if to == "norm":
        y = x.reshape(*lead, 2, d // 2).swapaxes(-1, -2)
    elif to == "neox":
        y = x.reshape(*lead, d // 2, 2).swapaxes(-1, -2)
    else:
        raise InvalidArgument(f"rope pairing must be 'norm' or 'neox', not {to!r}")
    return y.reshape(*lead, d).copy() if isinstance(y, np.ndarray) else y.contiguous().reshape(*lead, d)


def _layers(cache: Any) -> list[Any]:
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise InvalidArgument(f"{type(cache).__name__} has no .layers: pass a transformers Cache (DynamicCache)")
    return list(layers)


def save_cache(cache: Any, path: str, *, config: Any = None, codec: str | None = None, k_codec: str | None = None,
               v_codec: str | None = None, tokens: Sequence[int] | None = None, batch: int = 0, zstd: int = 0,
               max_block_tokens: int = 0, fsync: bool = True, rope_type: str = HF_ROPE_TYPE) -> None:
    """Writes one batch row of a transformers cache as an mqkv snapshot (atomically, like Writer).
    codec (or k_codec / v_codec): a spec string or preset; default lossless (the cache's own float
    type: f32, f16 or bf16). tokens: the cached prefix's token ids (recorded; optional). config:
    the model's (model.config), for the architecture, query heads and RoPE base; without it only
    the layer count, KV heads and head dim are recorded, read off the tensors.
    rope_type: the model's K pairing (transformers' rotate-half models: "neox")."""
    layers = _layers(cache)
    n = None
    model = model_from_config(config, tokens=tokens, rope_type=rope_type)
    if layers and getattr(layers[0], "keys", None) is not None and layers[0].keys.dim() == 4:
        k0 = layers[0].keys
        model.n_layer = model.n_layer or len(layers)
        model.n_head_kv = model.n_head_kv or int(k0.shape[1])
        model.head_dim_k = model.head_dim_k or int(k0.shape[3])
        model.head_dim_v = model.head_dim_v or int(layers[0].values.shape[3])
    with Writer(str(path), model, zstd=zstd, max_block_tokens=max_block_tokens, fsync=fsync) as w:
        for i, layer in enumerate(layers):
            for kind, t, c in (("k", layer.keys, k_codec or codec), ("v", layer.values, v_codec or codec)):
                if t is None or t.dim() != 4:
                    raise InvalidArgument(f"layer {i} {kind}: expected [batch, heads, tokens, head_dim], got "
                                          f"{None if t is None else tuple(t.shape)} (sliding-window or quantized "
                                          "layers are not supported)")
                if not 0 <= batch < t.shape[0]:
                    raise InvalidArgument(f"batch {batch} outside the cache's {t.shape[0]} rows")
                if n is None:
                    n = t.shape[2]
                elif t.shape[2] != n:
                    raise InvalidArgument(f"layer {i} {kind} holds {t.shape[2]} tokens, layer 0 holds {n}")
                dt = str(t.dtype).removeprefix("torch.")
                if dt not in _LOSSLESS:
                    raise InvalidArgument(f"layer {i} {kind}: cache dtype {dt} is not float32/float16/bfloat16")
                rows = t[batch].detach().to("cpu").permute(1, 0, 2)
                arr = (rows.float() if dt == "bfloat16" else rows).contiguous().numpy()  # numpy has no bfloat16
                w.add(i, kind, arr, c or _LOSSLESS[dt], source_dtype=_LOSSLESS[dt])


def load_cache(path: str, *, config: Any = None, dtype: Any = None, device: Any = "cpu",
               rope_type: str = HF_ROPE_TYPE) -> Any:
    """A DynamicCache holding the snapshot's K/V (batch 1) that model(...) / model.generate(...)
    continue from. dtype: the model's (model.dtype); default float32. K saved with another RoPE
    pairing than `rope_type` (a llama.cpp snapshot: "norm") is re-paired for the model."""
    import torch
    from transformers import DynamicCache

    dtype = torch.float32 if dtype is None else dtype
    cache = DynamicCache(config=config) if config is not None else DynamicCache()
    with _open(str(path)) as snap:
        m = snap.model
        want = int(_cfg(config.get_text_config() if hasattr(config, "get_text_config") else config,
                        "num_hidden_layers", default=m.n_layer)) if config is not None else m.n_layer
        layers = sorted({t.layer for t in snap.tensors if t.kind != "q"})
        if layers != list(range(want)):
            raise InvalidArgument(f"{path}: holds layers {layers[:3]}...{layers[-3:] if layers else ''} "
                                  f"({len(layers)}), the model has {want}")
        repair = m.rope_type in ("norm", "neox") and rope_type in ("norm", "neox") and m.rope_type != rope_type
        for i in layers:
            k = snap.decode(i, "k", dtype="float32")
            v = snap.decode(i, "v", dtype="float32")
            if repair:
                k = repair_rope_dims(k, rope_type)
            kt = torch.from_numpy(np.require(k, requirements=["C", "W"])).permute(1, 0, 2).unsqueeze(0).to(device=device, dtype=dtype)
            vt = torch.from_numpy(np.require(v, requirements=["C", "W"])).permute(1, 0, 2).unsqueeze(0).to(device=device, dtype=dtype)
            cache.update(kt.contiguous(), vt.contiguous(), i)
    return cache
