#!/usr/bin/env python3
"""Restore time of a KV snapshot into a llama.cpp context, in memory (issue 21's benchmark).

    PYTHONPATH=build/python ${MQKV_CACHE:-~/.cache/mqkv}/venv/bin/python bench/python/restore.py --tokens 8192

Evaluates the first N tokens of a shipped text once (repeated when shorter), saves the sequence
three ways (llama.cpp's own f16 sequence file; mqkv lossless; mqkv 3-bit main preset), then times,
warm (files in the page cache) and cold (evicted with posix_fadvise(DONTNEED) after an fsync):
  llama.cpp        llama_state_seq_load_file of its own file
  set_data floor   llama_state_seq_set_data of the same f16 state already in memory (what any
                   restore through llama.cpp's public API pays at least)
  mqkv             mqkv.llama.load (open + decode into the state + llama_state_seq_set_data), with a
                   fresh state buffer each time and with one StateBuffer kept across restores
Median of --repeat runs each. Prints a Markdown table on stdout. --keep DIR keeps the evaluated
files there and reuses them on the next run (no second evaluation).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import mqkv_engine as eng  # noqa: E402
import mqkv.llama  # noqa: E402

PRESET = "affine_seven_level_3bit_g64_meta4"


def evict(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run(args: argparse.Namespace, tmp: str) -> int:
    text = open(args.text, encoding="utf-8").read()
    llm = eng.load(eng.default_model(), n_ctx=args.tokens + 64)
    toks = llm.tokenize(text.encode(), add_bos=True)
    while len(toks) < args.tokens:  # repeat the text for long prefixes
        toks += llm.tokenize(text.encode(), add_bos=False)
    toks = toks[: args.tokens]
    seq = os.path.join(tmp, "seq.bin")
    files = {"llama.cpp f16 sequence file": seq,
             "mqkv lossless (f16)": os.path.join(tmp, "lossless.mqkv"),
             "mqkv 3-bit main preset": os.path.join(tmp, "3bit.mqkv")}
    stamp = os.path.join(tmp, "done.json")
    want = {"tokens": args.tokens, "text": os.path.basename(args.text)}
    t_eval = None
    if not (os.path.exists(stamp) and json.load(open(stamp)) == want):
        t0 = time.perf_counter()
        eng.evaluate(llm, toks)
        t_eval = time.perf_counter() - t0
        eng.save_seq(llm, seq, toks)
        mqkv.llama.save(llm, files["mqkv lossless (f16)"])
        mqkv.llama.save(llm, files["mqkv 3-bit main preset"], codec=PRESET)
        json.dump(want, open(stamp, "w"))

    llc = eng.llc
    eng.restore_seq(llm, seq)
    floor_state = mqkv.llama.state_bytes(llm, 0)  # what llama_state_seq_get_data gives back
    floor_buf = (ctypes.c_uint8 * len(floor_state)).from_buffer_copy(floor_state)

    # Every method starts the same way: sequence 0 removed (llama_memory_seq_rm, as mqkv.llama.load
    # does), no full clear of the cache's memory (llama_memory_clear(data=true) zeroes all of it).
    def load_file(path: str) -> list[int]:
        llc.llama_memory_seq_rm(llc.llama_get_memory(llm.ctx), 0, -1, -1)
        cap = llm.n_ctx() + 16
        buf = (llc.llama_token * cap)()
        n_out = ctypes.c_size_t(0)
        if llc.llama_state_seq_load_file(llm.ctx, path.encode(), 0, buf, cap, ctypes.byref(n_out)) == 0:
            raise RuntimeError(f"llama.cpp refused the state file {path}")
        return list(buf[: n_out.value])

    def set_data_floor(_path: str) -> list[int]:
        llc.llama_memory_seq_rm(llc.llama_get_memory(llm.ctx), 0, -1, -1)
        if llc.llama_state_seq_set_data(llm.ctx, floor_buf, len(floor_state), 0) == 0:
            raise RuntimeError("llama.cpp refused the in-memory state")
        return toks

    buffer = mqkv.llama.StateBuffer()
    methods = [("llama.cpp f16 sequence file", "llama_state_seq_load_file", seq, load_file),
               ("f16 state in memory", "llama_state_seq_set_data only (floor)", seq, set_data_floor)]
    for name in ("mqkv 3-bit main preset", "mqkv lossless (f16)"):
        p = files[name]
        methods.append((name, "mqkv.llama.load, fresh buffer", p, lambda q: mqkv.llama.load(llm, q)))
        methods.append((name, "mqkv.llama.load, StateBuffer kept", p, lambda q: mqkv.llama.load(llm, q, buffer=buffer)))
    methods.append(("mqkv 3-bit main preset", "mqkv.llama.load, StateBuffer kept, 1 thread", files["mqkv 3-bit main preset"],
                    lambda q: mqkv.llama.load(llm, q, buffer=buffer, threads=1)))
    rows = []
    for name, how, path, fn in methods:
        for state in ("warm", "cold"):
            if how.endswith("(floor)") and state == "cold":
                continue
            ts = []
            for _ in range(args.repeat + 1):  # the first run warms the buffer and the code
                if state == "cold":
                    evict(path)
                else:
                    open(path, "rb").read()
                t0 = time.perf_counter()
                got = fn(path)
                ts.append(time.perf_counter() - t0)
                assert len(got) == len(toks)
            rows.append((name, how, os.path.getsize(path), state, statistics.median(ts[1:])))
    ev = f"evaluating them: {t_eval:.1f} s" if t_eval is not None else "evaluated in an earlier run (--keep)"
    print(f"Restore into a llama.cpp context, SmolLM2-135M, {args.tokens} tokens ({ev}), "
          f"median of {args.repeat} after one untimed run\n")
    print("| snapshot | restore | bytes | page cache | time |")
    print("|---|---|---:|---|---:|")
    for name, how, size, state, t in rows:
        print(f"| {name} | {how} | {size:,} | {state} | {t * 1000:.1f} ms |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--text", default=os.path.join(ROOT, "data", "texts", "pride-and-prejudice-ch1.txt"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", help="keep the evaluated files in this folder and reuse them")
    args = ap.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        return run(args, args.keep)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        return run(args, tmp)


if __name__ == "__main__":
    sys.exit(main())
