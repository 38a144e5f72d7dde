#!/usr/bin/env python3
"""The tools' speed and peak memory on issue 20's 512 MiB snapshot (32 layers x K,V x 4096 tokens
x 8 heads x 128 dims, f16 = 512 MiB), in /dev/shm (no disk), against `cp` of the same file.

    PYTHONPATH=build/python ${MQKV_CACHE:-~/.cache/mqkv}/venv/bin/python bench/tools/tools_speed.py [--tools build/tools]

Rows: mqconvert safetensors (f16) -> mqkv lossless and -> the 3-bit main preset; mqkv 3-bit ->
safetensors (f16, the recorded source dtype); mqverify of the 3-bit file by --threads (default
--compare sample: every block decoded by SIMD to f16, its first and last 64 rows also by the
scalar reference, to f32 and f16, and compared; --compare all: every row compared). GB/s are of f16 data (input for
encodes, output for decodes and verification). Values are synthetic (normal, per-channel scales
like real keys; speed does not depend on them). Peak RSS from wait4. Prints Markdown on stdout.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

PRESET = "affine_seven_level_3bit_g64_meta4"


def run(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    t = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.read().decode()}")
    return t, ru.ru_maxrss * 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", default="build/tools")
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    d = args.dir
    p = {k: os.path.join(d, f"mqkv-bench-{k}") for k in ("src.mqkv", "big.safetensors", "l.mqkv", "q.mqkv", "back.safetensors", "cp")}
    layers, tokens, heads, dim = 32, 4096, 8, 128
    f16_bytes = layers * 2 * tokens * heads * dim * 2
    tool = lambda name: os.path.join(args.tools, name)  # noqa: E731
    # The input is made in a child process, so that this one stays small: a child's peak RSS as
    # wait4 reports it starts at its parent's RSS at fork (Linux keeps the high-water mark across exec).
    make = f"""
import numpy as np, mqkv
rng = np.random.default_rng(1)
m = mqkv.Model()
m.architecture, m.n_layer, m.n_head, m.n_head_kv, m.head_dim_k, m.head_dim_v = "llama", {layers}, 32, {heads}, {dim}, {dim}
with mqkv.Writer({p["src.mqkv"]!r}, model=m, fsync=False) as w:
    for layer in range({layers}):
        for kind in ("k", "v"):
            scale = rng.gamma(2.0, 0.5, size=(1, {heads}, {dim})).astype(np.float32)
            a = (rng.standard_normal(({tokens}, {heads}, {dim}), dtype=np.float32) * scale).astype(np.float16)
            w.add(layer, kind, a, "f16")
mqkv.convert({p["src.mqkv"]!r}, {p["big.safetensors"]!r})
print(mqkv.active_simd_arch())
"""
    try:
        simd = subprocess.run([sys.executable, "-c", make], check=True, capture_output=True, text=True).stdout.strip()
        os.remove(p["src.mqkv"])
        cases = [
            ("cp big.safetensors (reference)", ["cp", p["big.safetensors"], p["cp"]]),
            ("mqconvert f16 safetensors -> mqkv lossless f16", [tool("mqconvert"), p["big.safetensors"], p["l.mqkv"]]),
            ("mqconvert f16 safetensors -> mqkv 3-bit preset", [tool("mqconvert"), p["big.safetensors"], p["q.mqkv"], "--codec", PRESET]),
            ("mqconvert mqkv 3-bit -> f16 safetensors", [tool("mqconvert"), p["q.mqkv"], p["back.safetensors"]]),
            ("mqverify mqkv 3-bit, --threads 1", [tool("mqverify"), p["q.mqkv"], "--threads", "1"]),
            ("mqverify mqkv 3-bit, --threads 2", [tool("mqverify"), p["q.mqkv"], "--threads", "2"]),
            ("mqverify mqkv 3-bit --compare all, --threads 2",
             [tool("mqverify"), p["q.mqkv"], "--compare", "all", "--threads", "2"]),
        ]
        rows = []
        for name, cmd in cases:
            runs = [run(cmd) for _ in range(args.repeat)]
            t = statistics.median(r[0] for r in runs)
            rows.append((name, t, max(r[1] for r in runs)))
        print(f"{f16_bytes:,} bytes of f16 ({layers} layers x K,V x {tokens} x {heads} x {dim}), {d}, "
              f"median of {args.repeat}, {os.cpu_count()} cores, SIMD {simd}; "
              f"3-bit file {os.path.getsize(p['q.mqkv']):,} bytes\n")
        print("| command | wall | GB/s of f16 | x cp | peak RSS |")
        print("|---|---:|---:|---:|---:|")
        cp = rows[0][1]
        for name, t, rss in rows:
            print(f"| {name} | {t:.2f} s | {f16_bytes / t / 1e9:.2f} | {t / cp:.1f} | {rss / 1e6:.0f} MB |")
    finally:
        for f in p.values():
            if os.path.exists(f):
                os.remove(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
