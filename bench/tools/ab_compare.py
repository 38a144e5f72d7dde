#!/usr/bin/env python3
"""Compares two builds of bench_mqkv in one sitting: runs them alternately (A, B, A, B, ...) on
one pinned CPU with the same filter and reports, per benchmark, the median GB/s of each and B/A.

    bench/tools/ab_compare.py A/bench_mqkv B/bench_mqkv --filter REGEX [--rounds 5] [--min-time 0.2]

Used for issue 18 (the kernels moved onto xsimd::batch): x86 speed must stay within 5% of the
previous code on every goal row of bench/RESULTS.md. Prints a Markdown table on stdout.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile


def run(binary, flt, min_time, cpu):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [binary, f"--benchmark_filter={flt}", f"--benchmark_min_time={min_time}",
           f"--benchmark_out={out}", "--benchmark_out_format=json"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu)] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        data = json.load(f)
    os.unlink(out)
    return {b["name"]: b["bytes_per_second"] / 1e9 for b in data["benchmarks"] if "bytes_per_second" in b}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--filter", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", default="0.2")
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--names", default="A,B", help="column names for the two builds")
    args = ap.parse_args()
    na, nb = args.names.split(",")
    res = {"a": {}, "b": {}}
    for r in range(args.rounds):
        for key, binary in (("a", args.a), ("b", args.b)):
            for name, v in run(binary, args.filter, args.min_time, args.cpu).items():
                res[key].setdefault(name, []).append(v)
        print(f"ab_compare: round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"| benchmark | {na} GB/s (median of {args.rounds}) | {nb} GB/s | {nb}/{na} |")
    print("|---|---:|---:|---:|")
    worst = None
    for name in res["a"]:
        if name not in res["b"]:
            continue
        a = statistics.median(res["a"][name])
        b = statistics.median(res["b"][name])
        ratio = b / a
        if name.startswith(("decode", "encode")) and (worst is None or ratio < worst[1]):
            worst = (name, ratio)
        print(f"| {name} | {a:.2f} | {b:.2f} | {ratio:.3f} |")
    if worst:
        print(f"\nLowest {nb}/{na} among the codec rows: {worst[1]:.3f} ({worst[0]})")


if __name__ == "__main__":
    main()
