#!/usr/bin/env python3
"""Restore time of a KV snapshot into a llama.cpp context, in memory (issue 21's benchmark).

    PYTHONPATH=build/python ${MQKV_CACHE:-~/.cache/mqkv}/venv/bin/python bench/python/restore.py --tokens 4096

Evaluates the first N tokens of a shipped text once, saves the sequence three ways (llama.cpp's own
f16 sequence file; mqkv lossless; mqkv 3-bit main preset), then times, warm (files in the page
cache) and cold (evicted with posix_fadvise(DONTNEED) after an fsync):
  llama.cpp   llama_state_seq_load_file of its own file
  mqkv        mqkv.llama.load (read + decode + llama_state_seq_set_data)
Median of --repeat runs each. Prints a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import mqkv_engine as eng  # noqa: E402
import mqkv.llama  # noqa: E402


def evict(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--text", default=os.path.join(ROOT, "data", "texts", "pride-and-prejudice-ch1.txt"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    text = open(args.text, encoding="utf-8").read()
    llm = eng.load(eng.default_model(), n_ctx=args.tokens + 64)
    toks = llm.tokenize(text.encode(), add_bos=True)
    while len(toks) < args.tokens:  # repeat the text for long prefixes
        toks += llm.tokenize(text.encode(), add_bos=False)
    toks = toks[: args.tokens]
    t0 = time.perf_counter()
    eng.evaluate(llm, toks)
    t_eval = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        seq = os.path.join(tmp, "seq.bin")
        eng.save_seq(llm, seq, toks)
        files = {"llama.cpp f16 sequence file": seq}
        for name, codec in (("mqkv lossless (f16)", None), ("mqkv 3-bit main preset", "affine_seven_level_3bit_g64_meta4")):
            p = os.path.join(tmp, name.split()[1] + ".mqkv")
            mqkv.llama.save(llm, p, codec=codec)
            files[name] = p
        rows = []
        for name, path in files.items():
            for state in ("warm", "cold"):
                ts = []
                for _ in range(args.repeat):
                    if state == "cold":
                        evict(path)
                    else:
                        open(path, "rb").read()
                    t0 = time.perf_counter()
                    if path == seq:
                        got = eng.restore_seq(llm, path)
                    else:
                        got = mqkv.llama.load(llm, path)
                    ts.append(time.perf_counter() - t0)
                    assert len(got) == len(toks)
                rows.append((name, os.path.getsize(path), state, statistics.median(ts)))
    print(f"Restore into a llama.cpp context, SmolLM2-135M, {args.tokens} tokens (evaluating them: {t_eval:.1f} s), "
          f"median of {args.repeat}\n")
    print("| snapshot | bytes | page cache | restore |")
    print("|---|---:|---|---:|")
    for name, size, state, t in rows:
        print(f"| {name} | {size:,} | {state} | {t * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
