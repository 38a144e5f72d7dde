#!/usr/bin/env python3
"""Cross-engine snapshots and transformers caches, measured (issue 22's figures).

    PYTHONPATH=build/python ${MQKV_CACHE:-~/.cache/mqkv}/venv/bin/python bench/python/cross_engine.py

For each shipped text: the first --prefix tokens are evaluated in transformers (SmolLM2-135M from
the same GGUF, dequantized to f32 by transformers) and in llama.cpp (Q4_1 weights, f16 cache);
then --cont continuation tokens are evaluated teacher-forced from a restored cache and compared
(mean KL in nats/token and top-1 agreement) with the same engine continuing from its own cache:
  transformers -> transformers   lossless and two lossy codecs (mqkv.hf.save_cache / load_cache)
  llama.cpp -> llama.cpp         the same codecs (mqkv.llama.save / load), beside
  llama.cpp -> transformers      lossless snapshot, K re-paired norm -> neox (and, for contrast,
                                 loaded without re-pairing)
  transformers -> llama.cpp      lossless f32 snapshot, K re-paired neox -> norm, written as f16
  engines' own                   transformers' own continuation against llama.cpp's (how far
                                 the two engines' arithmetic alone puts them apart)
Prints a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile

import numpy as np
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import mqkv_engine as eng  # noqa: E402
import mqkv  # noqa: E402
import mqkv.hf  # noqa: E402
import mqkv.llama  # noqa: E402

CODECS = ("affine_seven_level_3bit_g64_meta4", "turbo3")
TEXTS = ("pride-and-prejudice-ch1.txt", "declaration-of-independence.txt")


def kl(ref: np.ndarray, got: np.ndarray) -> float:
    return eng.agreement(ref, got)[0]


def top1(ref: np.ndarray, got: np.ndarray) -> float:
    return eng.agreement(ref, got)[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", type=int, default=512)
    ap.add_argument("--cont", type=int, default=64)
    args = ap.parse_args()
    gguf = eng.default_model()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    model.eval()
    cfg = model.config

    def hf_run(ids, cache=None):
        with torch.no_grad():
            out = model(torch.tensor([ids]), cache=cache, use_cache=True)
        return out.logits[0].float().numpy(), out.cache

    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        for name in TEXTS:
            text = open(os.path.join(ROOT, "data", "texts", name), encoding="utf-8").read()
            llm = eng.load(gguf, n_ctx=args.prefix + args.cont + 16)
            toks = llm.tokenize(text.encode(), add_bos=True)[: args.prefix + args.cont]
            prefix, cont = toks[: args.prefix], toks[args.prefix:]
            _, hc = hf_run(prefix)
            hf_ref, _ = hf_run(cont, copy.deepcopy(hc))
            eng.evaluate(llm, prefix)
            ll_path = os.path.join(tmp, "ll.mqkv")
            mqkv.llama.save(llm, ll_path)
            ll_ref = eng.evaluate(llm, cont)

            def add(what, codec, ref, got, size):
                rows.append((name, what, codec, kl(ref, got), top1(ref, got), size))

            for codec in (None,) + CODECS:
                p = os.path.join(tmp, "hf.mqkv")
                mqkv.hf.save_cache(hc, p, config=cfg, tokens=prefix, codec=codec)
                got, _ = hf_run(cont, mqkv.hf.load_cache(p, config=cfg))
                add("transformers -> transformers", codec or "lossless (f32)", hf_ref, got, os.path.getsize(p))
                if codec is None:
                    dst = eng.load(gguf, n_ctx=args.prefix + args.cont + 16)
                    mqkv.llama.load(dst, p)
                    add("transformers -> llama.cpp", "lossless (f32, written as f16)", ll_ref,
                        eng.evaluate(dst, cont), os.path.getsize(p))
            for codec in CODECS:
                src = eng.load(gguf, n_ctx=args.prefix + args.cont + 16)
                eng.evaluate(src, prefix)
                p = os.path.join(tmp, "llc.mqkv")
                mqkv.llama.save(src, p, codec=codec)
                dst = eng.load(gguf, n_ctx=args.prefix + args.cont + 16)
                mqkv.llama.load(dst, p)
                add("llama.cpp -> llama.cpp", codec, ll_ref, eng.evaluate(dst, cont), os.path.getsize(p))
            got, _ = hf_run(cont, mqkv.hf.load_cache(ll_path, config=cfg))
            add("llama.cpp -> transformers", "lossless (f16)", hf_ref, got, os.path.getsize(ll_path))
            got, _ = hf_run(cont, mqkv.hf.load_cache(ll_path, config=cfg, rope_type="norm"))
            add("llama.cpp -> transformers, K not re-paired", "lossless (f16)", hf_ref, got, os.path.getsize(ll_path))
            add("engines' own continuations (transformers vs llama.cpp)", "-", ll_ref, hf_ref, 0)
    print(f"SmolLM2-135M-Instruct (Q4_1 GGUF in both engines), {args.prefix}-token prefix, {args.cont} continuation "
          f"tokens teacher-forced; transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{mqkv.llama.PINNED}\n")
    print("| text | snapshot path | codec | KL (nats/token) | top-1 | file bytes |")
    print("|---|---|---|---:|---:|---:|")
    for name, what, codec, d, t, size in rows:
        print(f"| {name.split('-')[0]} | {what} | {codec} | {d:.2e} | {t:.3f} | {size:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
