"""llama.cpp (through llama-cpp-python) in memory: save a sequence's KV cache as an mqkv snapshot
and restore one into a context, with no intermediate files and no subprocess.

    import llama_cpp, mqkv.llama
    llm = llama_cpp.Llama(model_path=..., n_ctx=4096, flash_attn=True)
    llm.eval(tokens)
    mqkv.llama.save(llm, "prefix.mqkv", codec="affine_seven_level_3bit_g64_meta4")
    ...
    mqkv.llama.load(llm, "prefix.mqkv")     # the context now holds the prefix; llm.eval() continues

The bytes go through llama_state_seq_get_data / llama_state_seq_set_data (the sequence-state
layout of spec/LLAMA.md for the pinned llama.cpp, mqkv.llama.PINNED). The model's facts (head
split, RoPE type and base) come from the GGUF metadata llama-cpp-python exposes. llama_cpp is
imported only when these functions run; the rest of mqkv does not need it.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import _mqkv as _ext
from ._errors import InvalidArgument

#: The llama.cpp this build's state layout is pinned to.
PINNED: str = _ext.LLAMA_PINNED


def _llc():
    import llama_cpp.llama_cpp as llc  # noqa: PLC0415 (optional dependency)
    return llc


@dataclass
class ModelFacts:
    """What the GGUF says about the attention layout (a llama.cpp state does not record it)."""

    architecture: str
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    rope_type: str      #: "norm" (adjacent pairs), "neox" (halves) or "other"
    rope_base: float
    extra: dict = field(default_factory=dict)


def model_facts(llm: Any) -> ModelFacts:
    """The attention facts of a llama_cpp.Llama's model, from its GGUF metadata."""
    llc = _llc()
    md = llm.metadata
    arch = md.get("general.architecture", "")
    g = lambda k, d=None: md.get(f"{arch}.{k}", d)  # noqa: E731
    n_embd = int(g("embedding_length"))
    n_head = int(g("attention.head_count"))
    n_head_kv = int(g("attention.head_count_kv", n_head))
    hd_k = int(g("attention.key_length", n_embd // n_head))
    hd_v = int(g("attention.value_length", n_embd // n_head))
    rope = {0: "norm", 2: "neox"}.get(llc.llama_model_rope_type(llm.model), "other")
    return ModelFacts(arch, int(g("block_count")), n_head, n_head_kv, hd_k, hd_v, rope,
                      float(g("rope.freq_base", 10000.0)),
                      {"general.name": md.get("general.name", ""), "n_embd": str(n_embd)})


def _annotate(kv: Any, facts: ModelFacts, tokens: Sequence[int]) -> None:
    m = kv.model
    m.architecture = facts.architecture
    m.n_layer, m.n_head, m.n_head_kv = facts.n_layer, facts.n_head, facts.n_head_kv
    m.head_dim_k, m.head_dim_v = facts.head_dim_k, facts.head_dim_v
    m.rope_type, m.rope_base, m.k_rope = facts.rope_type, float(facts.rope_base), "post"
    m.tokens = [int(t) for t in tokens]
    meta = m.metadata
    meta["llama.head_split"] = "given"
    meta["gguf.general.name"] = facts.extra.get("general.name", "")
    m.metadata = meta
    kv.model = m


def state_bytes(llm: Any, seq_id: int = 0) -> bytes:
    """llama_state_seq_get_data of one sequence (the engine's own bytes)."""
    llc = _llc()
    n = llc.llama_state_seq_get_size(llm.ctx, seq_id)
    if n == 0:
        raise InvalidArgument(f"llama.cpp has no state for sequence {seq_id}")
    buf = (ctypes.c_uint8 * n)()
    got = llc.llama_state_seq_get_data(llm.ctx, buf, n, seq_id)
    if got == 0 or got > n:
        raise InvalidArgument(f"llama_state_seq_get_data returned {got} of {n} bytes for sequence {seq_id}")
    return ctypes.string_at(buf, got)


def kvset(llm: Any, *, seq_id: int = 0, tokens: Sequence[int] | None = None, queries: Any = None) -> Any:
    """The sequence's cache as an in-memory KvSet (fp32) with the model's facts: what save() writes.
    tokens: the cached prefix (default: the Llama's evaluated tokens, right for seq_id 0).
    queries: a QueryCapture whose rows become Q tensors (reference queries for mqkv.verify)."""
    facts = model_facts(llm)
    blob = state_bytes(llm, seq_id)
    kv = _ext.KvSet.from_llama_state(blob, "llama-seq-state", facts.head_dim_k, facts.head_dim_v,
                                     f"<llama sequence {seq_id}>")
    if tokens is None:
        tokens = list(llm.input_ids[: llm.n_tokens])
    _annotate(kv, facts, tokens)
    if queries is not None:
        for layer in sorted(queries.rows):
            pos = sorted(queries.rows[layer])
            q = np.ascontiguousarray(np.stack([queries.rows[layer][p] for p in pos]), dtype=np.float32)
            kv.add(layer, "q", q, pos, "f32")
    return kv


def save(llm: Any, path: str, *, codec: str | None = None, k_codec: str | None = None, v_codec: str | None = None,
         seq_id: int = 0, tokens: Sequence[int] | None = None, zstd: int = 0, max_block_tokens: int = 0,
         queries: Any = None, threads: int = 0, fsync: bool = True) -> None:
    """Writes sequence `seq_id` of a llama_cpp.Llama as an mqkv snapshot (atomically).
    codec (or k_codec / v_codec): a spec string or preset; default lossless (f16 for an f16 cache).
    Other formats: the extension of `path` (.safetensors, .npz, ...) picks one, as in convert()."""
    kv = kvset(llm, seq_id=seq_id, tokens=tokens, queries=queries)
    kv.write(str(path), "", k_codec or codec or "", v_codec or codec or "", zstd, max_block_tokens, "", "", "",
             threads, fsync)


# ggml type ids (ggml.h) of the cache types the state writer produces.
_GGML_TYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 8: "q8_0", 30: "bf16"}


def _context_type(llm: Any, which: str) -> str:
    """The context's own K or V cache type (what llama_state_seq_set_data must be given), "" when unknown."""
    t = getattr(getattr(llm, "context_params", None), which, None)
    return _GGML_TYPE_NAMES.get(int(t), "") if t is not None else ""


class StateBuffer:
    """A buffer kept across restores into a context (`load(..., buffer=b)`): the state is written
    into the same pages every time instead of a fresh allocation, whose first-touch page faults
    cost about as much as decoding a 3-bit snapshot. It grows to the largest state restored and
    holds that memory until dropped (`array` is the backing uint8 array)."""

    def __init__(self) -> None:
        self.array: np.ndarray = np.empty(0, dtype=np.uint8)


def restore_bytes(path: str, *, llama_type_k: str = "", llama_type_v: str = "", threads: int = 0,
                  buffer: StateBuffer | None = None, rope_type: str = "") -> tuple[np.ndarray, list[int]]:
    """An mqkv snapshot as llama_state_seq_set_data's bytes (a uint8 array) and its tokens. Rows the
    state holds as f16 are decoded to f16 straight into it (no fp32 copy of the snapshot), the
    layers on `threads` threads (0: all cores). With a StateBuffer the bytes are a view of its
    array, valid until the next restore into it. The cache element types default to the ones the
    snapshot recorded from llama.cpp, else f16. rope_type: the target model's K pairing ("norm" or
    "neox"); a snapshot paired the other way (one saved from transformers, say) has K's head dims
    re-paired (spec/INTEROP.md "Cross-engine K layout"); empty: as stored."""
    arr, n, toks = _ext.llama_state_from_snapshot(str(path), "llama-seq-state", llama_type_k, llama_type_v, threads,
                                                  buffer.array if buffer is not None else None, rope_type)
    if buffer is not None:
        buffer.array = arr
    return arr[:n], [int(t) for t in toks]


def load(llm: Any, path: str, *, seq_id: int = 0, llama_type_k: str = "", llama_type_v: str = "", threads: int = 0,
         buffer: StateBuffer | None = None) -> list[int]:
    """Replaces sequence `seq_id` of the context with the snapshot's cache and returns its tokens.
    For seq_id 0 the Llama's own token bookkeeping is set too, so llm.eval(next_tokens) continues
    from the restored prefix. The context must be the same model with room for the tokens. The
    cache element types default to the context's own (llama_type_k / _v override them); K saved
    by another engine with the other RoPE pairing (transformers) is re-paired for this one.
    threads: decode threads (0: all cores); buffer: a StateBuffer to reuse across restores."""
    llc = _llc()
    rope = {0: "norm", 2: "neox"}.get(llc.llama_model_rope_type(llm.model), "")
    llama_type_k = llama_type_k or _context_type(llm, "type_k")
    llama_type_v = llama_type_v or _context_type(llm, "type_v")
    blob, toks = restore_bytes(path, llama_type_k=llama_type_k, llama_type_v=llama_type_v, threads=threads,
                               buffer=buffer, rope_type=rope)
    if len(toks) > llm.n_ctx():
        raise InvalidArgument(f"{path}: {len(toks)} tokens do not fit the context's {llm.n_ctx()}")
    mem = llc.llama_get_memory(llm.ctx)
    llc.llama_memory_seq_rm(mem, seq_id, -1, -1)
    ptr = blob.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
    if llc.llama_state_seq_set_data(llm.ctx, ptr, blob.size, seq_id) == 0:
        raise InvalidArgument(f"{path}: llama.cpp refused the restored state (another model or context size?)")
    if seq_id == 0:
        llm.reset()
        llm.input_ids[: len(toks)] = toks
        llm.n_tokens = len(toks)
    return toks
