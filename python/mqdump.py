#!/usr/bin/env python3
"""mqdump: run a GGUF model on a text with llama.cpp and write its KV cache as a snapshot.

    scripts/setup-engine.sh      # prints nothing on stdout; fills ${MQKV_CACHE:-~/.cache/mqkv}
    ${MQKV_CACHE:-~/.cache/mqkv}/venv/bin/python python/mqdump.py --text data/texts/pride-and-prejudice-ch1.txt --tokens 512 \
        --out /tmp/p.mqkv --codec f16 --zstd 3 --queries 8

Output by --to (default from the extension):
  llama-seq / llama-session   the engine's own state file (llama_state_seq_save_file / _save_file)
  anything mqconvert writes   the sequence's state taken in memory (mqkv.llama.kvset: the
                              model's facts from the GGUF, the captured queries as Q tensors) and
                              written by the mqkv package in the requested format/codec.
Queries: --queries N captures the post-RoPE attention queries (Qcur) of N evenly spaced token
positions (always including the last) through llama.cpp's cb_eval and stores them as Q tensors.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mqkv_engine as eng  # noqa: E402

try:
    import mqkv.llama  # an installed package (pip install .)
except ImportError:  # else the build tree's (scripts/build.sh -DMQKV_BUILD_PYTHON=ON)
    sys.path.insert(0, os.environ.get("MQKV_PYTHONPATH", os.path.join(HERE, "..", "build", "python")))
    try:
        import mqkv.llama
    except ImportError as e:
        raise SystemExit(f"mqdump: the mqkv package is not importable ({e}): pip install . or build with "
                         "-DMQKV_BUILD_PYTHON=ON (scripts/test.sh does), or set MQKV_PYTHONPATH")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=eng.default_model(), help="GGUF model (default: SmolLM2-135M from setup-engine.sh)")
    ap.add_argument("--text", required=True, help="UTF-8 text file")
    ap.add_argument("--tokens", type=int, default=512, help="evaluate the first N tokens (BOS included)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--to", default=None, help="output format (llama-seq, llama-session, mqkv, safetensors, npz, ...)")
    ap.add_argument("--codec", default="f16", help="mqkv codec spec for K and V")
    ap.add_argument("--zstd", type=int, default=0, help="mqkv: zstd level (0 = none)")
    ap.add_argument("--cache-type", default="f16", choices=sorted(eng.GGML_TYPES), help="llama.cpp cache type")
    ap.add_argument("--no-flash-attn", action="store_true", help="transposed V cache (v_trans 1)")
    ap.add_argument("--queries", type=int, default=0, help="capture queries at N positions")
    ap.add_argument("--positions", default="", help="capture queries at these fractions of the prefix instead "
                    "(e.g. 0.25,0.5,0.75,1: p = clamp(floor(f*n + 0.5) - 1, 0, n - 1), the rule of spec/MEASURE.md)")
    args = ap.parse_args()

    to = args.to
    if to is None:
        ext = os.path.splitext(args.out)[1].lstrip(".")
        to = {"mqkv": "mqkv", "safetensors": "safetensors", "npz": "npz", "npy": "npy", "session": "llama-session"}.get(ext, "llama-seq")

    text = open(args.text, encoding="utf-8").read()
    capture = None
    probe = eng.load(args.model, n_ctx=64)
    tokens = probe.tokenize(text.encode(), add_bos=True)[: args.tokens]
    del probe
    if len(tokens) < args.tokens:
        print(f"mqdump: {args.text} gives only {len(tokens)} tokens", file=sys.stderr)
    if args.positions:
        n = len(tokens)
        fr = [float(x) for x in args.positions.split(",") if x.strip()]
        if not fr or any(not 0.0 < f <= 1.0 for f in fr):
            raise SystemExit(f"mqdump: --positions {args.positions!r}: expected fractions in (0, 1]")
        capture = eng.QueryCapture(sorted({min(max(math.floor(f * n + 0.5) - 1, 0), n - 1) for f in fr}))
    elif args.queries > 0:
        n = len(tokens)
        k = min(args.queries, n)
        capture = eng.QueryCapture(sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)}))
    llm = eng.load(args.model, n_ctx=max(512, len(tokens) + 16), flash_attn=not args.no_flash_attn,
                   cache_type=args.cache_type, capture=capture)
    eng.evaluate(llm, tokens)
    facts = mqkv.llama.model_facts(llm)

    if to == "llama-session":
        eng.save_session(llm, args.out, tokens)
        return 0
    if to == "llama-seq":
        eng.save_seq(llm, args.out, tokens)
        return 0
    # Everything else: the engine's sequence state, in memory, through the mqkv package (no files
    # in between, no subprocess); the model's facts from the GGUF; the captured queries as Q tensors.
    kv = mqkv.llama.kvset(llm, tokens=tokens, queries=capture)
    kv.write(args.out, to, args.codec if to == "mqkv" else "", args.codec if to == "mqkv" else "",
             args.zstd if to == "mqkv" else 0)
    nq = sum(len(v) for v in capture.rows.values()) if capture else 0
    print(f"mqdump: {len(tokens)} tokens, {facts.n_layer} layers x {facts.n_head_kv} KV heads x {facts.head_dim_k}"
          f" ({facts.architecture}), {nq} query rows -> {args.out} ({to})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
