#!/usr/bin/env python3
"""mqkv's own part of a restore, without llama.cpp: mqkv.llama.restore_bytes (open the snapshot,
verify its block checksums, decode every layer into llama_state_seq_set_data's bytes) into one
StateBuffer kept across runs. Median and minimum of N runs.

    PYTHONPATH=build/python ${MQKV_CACHE:-~/.cache/mqkv}/venv/bin/python bench/python/restore_bytes.py FILE.mqkv [--threads T] [-n N]

FILE: e.g. the 3-bit file bench/python/restore.py --keep DIR leaves in DIR (3bit.mqkv).
"""
from __future__ import annotations

import argparse
import statistics
import time

import mqkv.llama as ml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--threads", type=int, default=0, help="decode threads (0: all cores)")
    ap.add_argument("-n", type=int, default=40)
    args = ap.parse_args()
    buf = ml.StateBuffer()
    ts = []
    for _ in range(args.n):
        t0 = time.perf_counter()
        blob, _ = ml.restore_bytes(args.file, llama_type_k="f16", llama_type_v="f16", threads=args.threads, buffer=buf)
        ts.append(time.perf_counter() - t0)
    print(f"threads={args.threads}: median {statistics.median(ts) * 1e3:.1f} ms, min {min(ts) * 1e3:.1f} ms, "
          f"{blob.size:,} bytes of state")


if __name__ == "__main__":
    main()
