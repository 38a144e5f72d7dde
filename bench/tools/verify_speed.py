#!/usr/bin/env python3
"""mqverify's speed on issue 20's 512 MiB snapshot shape (32 layers x K,V x 4096 tokens x 8 heads x
128 dims; 512 MiB as f16), main 3-bit preset, in /dev/shm, by thread count and backend selection.

    PYTHONPATH=build/python ${MQKV_CACHE:-~/.cache/mqkv}/venv/bin/python bench/tools/verify_speed.py [--tools build/tools]

GB/s are of decoded f16 output (512 MiB / wall time), the issue's unit. Every run decodes each
block with the scalar reference to f32 and to f16, and with each other selected backend again.
The values are synthetic (normal, with per-channel scales like real keys): decode speed does not
depend on them. Prints a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import mqkv

PRESET = "affine_seven_level_3bit_g64_meta4"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", default="build/tools")
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = os.path.join(args.dir, "mqkv-verify-speed.mqkv")
    layers, tokens, heads, dim = 32, 4096, 8, 128
    f16_bytes = layers * 2 * tokens * heads * dim * 2
    rng = np.random.default_rng(1)
    try:
        m = mqkv.Model()
        m.architecture, m.n_layer, m.n_head, m.n_head_kv, m.head_dim_k, m.head_dim_v = "llama", layers, 32, heads, dim, dim
        with mqkv.Writer(path, model=m, fsync=False) as w:
            for layer in range(layers):
                for kind in ("k", "v"):
                    scale = rng.gamma(2.0, 0.5, size=(1, heads, dim)).astype(np.float32)
                    a = (rng.standard_normal((tokens, heads, dim), dtype=np.float32) * scale).astype(np.float16)
                    w.add(layer, kind, a, PRESET)
        size = os.path.getsize(path)
        rows = []
        for backend in ("all", "scalar"):
            for threads in (1, 2):
                ts = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    subprocess.run([os.path.join(args.tools, "mqverify"), path, "--backend", backend, "--threads", str(threads)],
                                   check=True, stdout=subprocess.DEVNULL)
                    ts.append(time.perf_counter() - t0)
                t = statistics.median(ts)
                rows.append((backend, threads, t, f16_bytes / t / 1e9))
        print(f"mqverify, {size:,}-byte file ({PRESET}) = {f16_bytes:,} bytes of f16, {args.dir}, "
              f"median of {args.repeat}, SIMD {mqkv.active_simd_arch()}\n")
        print("| --backend | --threads | wall | GB/s of f16 output |")
        print("|---|---:|---:|---:|")
        for backend, threads, t, gbs in rows:
            print(f"| {backend} | {threads} | {t:.2f} s | {gbs:.2f} |")
    finally:
        if os.path.exists(path):
            os.remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
