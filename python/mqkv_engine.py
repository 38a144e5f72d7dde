"""llama.cpp (through llama-cpp-python) as a KV-cache source for mqkv.

Shared by python/mqdump.py and tests/e2e/roundtrip.py. Run with the venv that
scripts/setup-engine.sh creates (pinned llama-cpp-python 0.3.36, CPU build).
"""
from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess

import numpy as np
import llama_cpp
import llama_cpp.llama_cpp as llc

GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8, "bf16": 30}


def cache_dir() -> str:
    return os.environ.get("MQKV_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mqkv"))


def default_model() -> str:
    return os.path.join(cache_dir(), "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


# --- capturing attention queries through cb_eval --------------------------------------------
class _GgmlTensor(ctypes.Structure):
    """struct ggml_tensor of the pinned ggml (ggml/include/ggml.h): only read, never allocated."""


_GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * 4),
    ("nb", ctypes.c_size_t * 4),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * 16),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(_GgmlTensor) * 10),
    ("view_src", ctypes.c_void_p),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * 64),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


class QueryCapture:
    """Records post-RoPE queries ("Qcur-<layer>" nodes whose src[1] is "inp_pos") of chosen
    token positions while the model evaluates. Rows: [position][n_head][head_dim] fp32."""

    def __init__(self, positions):
        self.want = set(int(p) for p in positions)
        self.seen = {}  # layer -> tokens already passed
        self.rows = {}  # layer -> {position: array[n_head, head_dim]}
        self.callback = llc.ggml_backend_sched_eval_callback(self._cb)

    def _cb(self, t_ptr, ask, user_data):
        t = ctypes.cast(t_ptr, ctypes.POINTER(_GgmlTensor)).contents
        name = t.name.decode("ascii", "replace")
        if not name.startswith("Qcur-"):
            return False
        src1 = t.src[1]
        if not src1 or src1.contents.name.decode("ascii", "replace") != "inp_pos":
            return False
        if ask:
            return True
        if t.type != 0:  # f32 only
            return True
        layer = int(name.split("-")[1])
        hd, nh, nt = t.ne[0], t.ne[1], t.ne[2]
        base = self.seen.get(layer, 0)
        self.seen[layer] = base + nt
        for i in range(nt):
            pos = base + i
            if pos not in self.want:
                continue
            rows = np.empty((nh, hd), dtype=np.float32)
            for h in range(nh):
                addr = t.data + i * t.nb[2] + h * t.nb[1]
                rows[h] = np.ctypeslib.as_array((ctypes.c_float * hd).from_address(addr))
            self.rows.setdefault(layer, {})[pos] = rows
        return True


# --- the engine -------------------------------------------------------------------------------
def _mqkv_llama():
    """The package's llama.cpp module: an installed mqkv, else the build tree's (build/python)."""
    try:
        import mqkv.llama as ml
    except ImportError:
        import sys
        sys.path.insert(0, os.environ.get("MQKV_PYTHONPATH", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                          "..", "build", "python")))
        import mqkv.llama as ml
    return ml


def model_facts(llm: llama_cpp.Llama):
    """The model's attention facts from its GGUF metadata (one home: mqkv.llama.model_facts)."""
    return _mqkv_llama().model_facts(llm)


def load(model_path: str, *, n_ctx: int = 2048, flash_attn: bool = True, cache_type: str = "f16",
         n_threads: int = 2, capture: QueryCapture | None = None) -> llama_cpp.Llama:
    """A context with logits for every evaluated token. flash_attn=True gives V rows
    (v_trans 0), False the transposed V; quantized caches need flash attention."""
    orig = llc.llama_context_default_params
    if capture is not None:
        def patched():
            p = orig()
            p.cb_eval = capture.callback
            p.cb_eval_user_data = None
            return p
        llc.llama_context_default_params = patched
    try:
        return llama_cpp.Llama(model_path=model_path, n_ctx=n_ctx, n_batch=512, n_ubatch=512,
                               n_threads=n_threads, n_threads_batch=n_threads, flash_attn=flash_attn,
                               type_k=GGML_TYPES[cache_type], type_v=GGML_TYPES[cache_type],
                               logits_all=True, verbose=False, seed=0)
    finally:
        llc.llama_context_default_params = orig


def evaluate(llm: llama_cpp.Llama, tokens) -> np.ndarray:
    """Evaluates tokens after what the context holds; returns their logits [len, n_vocab]."""
    n0 = llm.n_tokens
    llm.eval(list(tokens))
    return np.array(llm.scores[n0:n0 + len(tokens)], dtype=np.float32, copy=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities of logits, in float64."""
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def agreement(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(mean KL(ref || got) in nats per row, top-1 agreement) of two logit arrays [rows, vocab]:
    how close `got` continues to the reference run."""
    lr, lg = log_softmax(ref), log_softmax(got)
    return float((np.exp(lr) * (lr - lg)).sum(axis=-1).mean()), float((ref.argmax(-1) == got.argmax(-1)).mean())


def save_seq(llm: llama_cpp.Llama, path: str, tokens) -> int:
    arr = (llc.llama_token * len(tokens))(*tokens)
    n = llc.llama_state_seq_save_file(llm.ctx, path.encode(), 0, arr, len(tokens))
    if n == 0:
        raise RuntimeError(f"llama_state_seq_save_file({path}) failed")
    return n


def save_session(llm: llama_cpp.Llama, path: str, tokens) -> None:
    arr = (llc.llama_token * len(tokens))(*tokens)
    if not llc.llama_state_save_file(llm.ctx, path.encode(), arr, len(tokens)):
        raise RuntimeError(f"llama_state_save_file({path}) failed")


def restore_seq(llm: llama_cpp.Llama, path: str) -> list[int]:
    """Empties the context and loads a sequence state file; returns its tokens."""
    llm.reset()
    llc.llama_memory_clear(llc.llama_get_memory(llm.ctx), True)
    cap = llm.n_ctx() + 16
    buf = (llc.llama_token * cap)()
    n_out = ctypes.c_size_t(0)
    n = llc.llama_state_seq_load_file(llm.ctx, path.encode(), 0, buf, cap, ctypes.byref(n_out))
    if n == 0:
        raise RuntimeError(f"llama.cpp refused the state file {path}")
    tokens = list(buf[: n_out.value])
    llm.input_ids[: len(tokens)] = tokens
    llm.n_tokens = len(tokens)
    return tokens


# --- mqconvert and safetensors ------------------------------------------------------------------
def run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p.stdout


def annotate_safetensors(path: str, facts, queries: QueryCapture | None) -> None:
    """Rewrites an mqkv-convention safetensors file (spec/INTEROP.md) in place with the model's
    true head split and facts, and appends the captured queries as layers.N.q / q_positions."""
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        body = bytearray(f.read())
    meta = header.pop("__metadata__", {})
    for name, t in header.items():
        if name.startswith("layers.") and name.split(".")[2] in ("k", "v"):
            n_tok = t["shape"][0]
            hd = facts.head_dim_k if name.endswith(".k") else facts.head_dim_v
            width = t["shape"][1] * t["shape"][2]
            if width != facts.n_head_kv * hd:
                raise RuntimeError(f"{name}: row of {width} is not {facts.n_head_kv} x {hd}")
            t["shape"] = [n_tok, facts.n_head_kv, hd]
    meta.update({
        "mqkv.architecture": facts.architecture, "mqkv.n_layer": str(facts.n_layer),
        "mqkv.n_head": str(facts.n_head), "mqkv.n_head_kv": str(facts.n_head_kv),
        "mqkv.head_dim_k": str(facts.head_dim_k), "mqkv.head_dim_v": str(facts.head_dim_v),
        "mqkv.rope_type": facts.rope_type, "mqkv.rope_base": repr(float(facts.rope_base)),
        "mqkv.k_rope": "post", "meta.llama.head_split": "given",
        "meta.gguf.general.name": facts.extra.get("general.name", ""),
    })
    if queries is not None:
        for layer in sorted(queries.rows):
            pos = sorted(queries.rows[layer])
            q = np.stack([queries.rows[layer][p] for p in pos]).astype("<f4")
            for name, arr, dt in ((f"layers.{layer}.q", q, "F32"),
                                  (f"layers.{layer}.q_positions", np.array(pos, dtype="<i4"), "I32")):
                off = len(body)
                body += arr.tobytes()
                header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, len(body)]}
    header["__metadata__"] = meta
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        f.write(body)
    os.replace(tmp, path)
